// Which memory regions are registered, whose they are, and the checks a
// call naming one passes: the region exists, belongs to the caller's
// tenant, and holds the bytes named.
#ifndef SEQKV_TRANSPORT_REGION_REGISTRY_H_
#define SEQKV_TRANSPORT_REGION_REGISTRY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "transport/mapped_region.h"
#include "transport/region_metrics.h"

namespace seqkv::transport {

// Bytes of a region handle: random, so that a handle cannot be guessed.
inline constexpr size_t kRegionHandleBytes = 16;

struct RegistryOptions {
  // Regions one tenant may hold at once (over all its connections).
  uint32_t max_regions_per_tenant = 16;
  // The largest region, in bytes.
  uint64_t max_region_bytes = uint64_t{64} << 30;
};

// A resolved slice: the bytes, and the region they lie in, held so that
// it stays mapped while the call uses them.
struct RegionView {
  std::shared_ptr<const MappedRegion> region;
  std::span<std::byte> bytes;
};

// Thread-safe.
class RegionRegistry {
 public:
  explicit RegionRegistry(RegistryOptions options) : options_(options) {}

  // Maps `fd` (taking ownership) for `owner` and returns its handle.
  // RESOURCE_EXHAUSTED when the tenant holds max_regions_per_tenant;
  // MappedRegion::Map's errors otherwise.
  absl::StatusOr<std::shared_ptr<const MappedRegion>> Register(
      int fd, RegionOwner owner, std::string& handle);

  // Unregisters one region of `connection`; NOT_FOUND unless that
  // connection registered it.
  absl::Status Unregister(uint64_t connection, std::string_view handle);
  // Unregisters every region of `connection` (it closed). Returns how many.
  size_t DropConnection(uint64_t connection);

  // Bytes [offset, offset + length) of region `handle` for a call of
  // `tenant`. NOT_FOUND for a handle that is not registered (never was, or
  // its connection closed); PERMISSION_DENIED for another tenant's region;
  // OUT_OF_RANGE for bytes outside it.
  absl::StatusOr<RegionView> Resolve(std::string_view tenant,
                                     std::string_view handle, uint64_t offset,
                                     uint64_t length) const;

  size_t regions() const;
  uint64_t mapped_bytes() const;
  // Regions and their mapped bytes per tenant holding any.
  struct TenantRegions {
    size_t regions = 0;
    uint64_t mapped_bytes = 0;
  };
  std::map<std::string, TenantRegions> PerTenant() const;
  const RegistryOptions& options() const { return options_; }

  // What calls moved through regions and what they were refused; the
  // calls resolving slices (and ResolveSlice) record into it.
  RegionMetrics& metrics() const { return metrics_; }

 private:
  const RegistryOptions options_;
  mutable RegionMetrics metrics_;
  mutable absl::Mutex mutex_;
  std::map<std::string, std::shared_ptr<MappedRegion>, std::less<>> regions_
      ABSL_GUARDED_BY(mutex_);
  std::map<std::string, uint32_t, std::less<>> per_tenant_
      ABSL_GUARDED_BY(mutex_);
};

// A handle in hex, for messages.
std::string HandleHex(std::string_view handle);

}  // namespace seqkv::transport

#endif  // SEQKV_TRANSPORT_REGION_REGISTRY_H_
