// The client's end of the region socket: creates memory regions (sealed
// memfds mapped in this process), hands them to the server, and names them
// in Puts and Gets by handle.
#ifndef SEQKV_TRANSPORT_REGION_CLIENT_H_
#define SEQKV_TRANSPORT_REGION_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace seqkv::transport {

// A region this process created and registered: the server maps the same
// pages. Thread-safe to share; unmapped here when the last reference goes
// (the server keeps its mapping until the connection unregisters it or
// closes).
class SharedRegion {
 public:
  ~SharedRegion();
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;

  std::span<std::byte> bytes() const { return {base_, size_}; }
  uint64_t size() const { return size_; }
  // The handle a RegionSlice names it by.
  const std::string& handle() const { return handle_; }
  // The memfd (owned by the region), e.g. to register it elsewhere.
  int fd() const { return fd_; }

 private:
  friend class RegionConnection;
  SharedRegion(int fd, std::byte* base, uint64_t size)
      : fd_(fd), base_(base), size_(size) {}
  const int fd_;
  std::byte* const base_;
  const uint64_t size_;
  std::string handle_;
};

// One connection to the server's region socket; its regions stay
// registered until it is destroyed. Thread-safe.
class RegionConnection {
 public:
  // `authorization` as the gRPC header ("Bearer <key>", or empty).
  static absl::StatusOr<std::unique_ptr<RegionConnection>> Connect(
      const std::string& path, std::string authorization);
  ~RegionConnection();
  RegionConnection(const RegionConnection&) = delete;
  RegionConnection& operator=(const RegionConnection&) = delete;

  // A new memfd of `bytes`, sealed against shrinking, mapped here with its
  // pages populated, and registered. The server's status on refusal.
  absl::StatusOr<std::shared_ptr<SharedRegion>> CreateRegion(size_t bytes);
  // Asks the server to unmap `region`; it can no longer be named.
  absl::Status Unregister(const SharedRegion& region);

  // The tenant the server registered this connection's regions to (empty
  // before the first region).
  std::string tenant() const;

 private:
  RegionConnection(int fd, std::string authorization)
      : fd_(fd), authorization_(std::move(authorization)) {}

  const int fd_;
  const std::string authorization_;
  mutable absl::Mutex mutex_;  // one request and its answer at a time
  std::string tenant_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace seqkv::transport

#endif  // SEQKV_TRANSPORT_REGION_CLIENT_H_
