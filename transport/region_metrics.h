// Counters of the same-host data plane: the bytes Puts and Gets moved
// through regions, and the slices refused, by kind.
#ifndef SEQKV_TRANSPORT_REGION_METRICS_H_
#define SEQKV_TRANSPORT_REGION_METRICS_H_

#include <atomic>
#include <cstdint>

#include "absl/status/status.h"

namespace seqkv::transport {

// Why a call's slice was refused or its region failed it.
enum class RegionError {
  kBounds = 0,     // bytes outside the region, or a Get that does not fit
  kOwnership = 1,  // another tenant's region
  kGone = 2,       // not registered (any more), or unregistered mid-call
  kBadHandle = 3,  // not a handle at all (wrong size)
};
inline constexpr int kRegionErrorKinds = 4;
// "bounds", "ownership", "region_gone", "bad_handle": the label values of
// /metrics and the keys of /v1/stats.
const char* RegionErrorName(RegionError kind);

// Thread-safe: relaxed atomics, read without a consistent snapshot.
class RegionMetrics {
 public:
  struct Counters {
    uint64_t put_calls = 0;
    uint64_t put_bytes = 0;
    uint64_t get_calls = 0;
    uint64_t get_bytes = 0;
    uint64_t errors[kRegionErrorKinds] = {};
  };

  // A Put acknowledged that read `bytes` from regions (over all its
  // slices).
  void RecordPut(uint64_t bytes);
  // A Get written into a region and acknowledged.
  void RecordGet(uint64_t bytes);
  void RecordError(RegionError kind);
  // The kind of a slice resolution's failure by its code (OUT_OF_RANGE,
  // PERMISSION_DENIED, NOT_FOUND, INVALID_ARGUMENT); other codes are not
  // the client's slice's fault and are not counted.
  void RecordResolveError(const absl::Status& status);

  Counters counters() const;

 private:
  std::atomic<uint64_t> put_calls_{0};
  std::atomic<uint64_t> put_bytes_{0};
  std::atomic<uint64_t> get_calls_{0};
  std::atomic<uint64_t> get_bytes_{0};
  std::atomic<uint64_t> errors_[kRegionErrorKinds] = {};
};

}  // namespace seqkv::transport

#endif  // SEQKV_TRANSPORT_REGION_METRICS_H_
