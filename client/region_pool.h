// The client's shared memory regions for calls that bring their own bytes
// (Client::Put of a KvCache, Client::GetInto): scratch regions, registered
// once and reused call after call.
#ifndef SEQKV_CLIENT_REGION_POOL_H_
#define SEQKV_CLIENT_REGION_POOL_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "transport/region_client.h"

namespace seqkv {

// Thread-safe: each concurrent call takes a scratch region of its own.
class RegionPool {
 public:
  explicit RegionPool(std::unique_ptr<transport::RegionConnection> connection)
      : connection_(std::move(connection)) {}

  transport::RegionConnection& connection() { return *connection_; }

  // A region of at least `bytes` for one call; give it back with Release.
  // The server's status when it refuses a new region (e.g. the tenant's
  // limit): callers then send their bytes in messages.
  absl::StatusOr<std::shared_ptr<transport::SharedRegion>> Acquire(
      size_t bytes);
  void Release(std::shared_ptr<transport::SharedRegion> region);

 private:
  static constexpr size_t kMaxIdle = 2;
  std::unique_ptr<transport::RegionConnection> connection_;
  absl::Mutex mutex_;
  std::vector<std::shared_ptr<transport::SharedRegion>> idle_
      ABSL_GUARDED_BY(mutex_);
};

}  // namespace seqkv

#endif  // SEQKV_CLIENT_REGION_POOL_H_
