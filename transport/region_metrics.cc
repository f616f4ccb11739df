#include "transport/region_metrics.h"

namespace seqkv::transport {

const char* RegionErrorName(RegionError kind) {
  switch (kind) {
    case RegionError::kBounds:
      return "bounds";
    case RegionError::kOwnership:
      return "ownership";
    case RegionError::kGone:
      return "region_gone";
    case RegionError::kBadHandle:
      return "bad_handle";
  }
  return "unknown";
}

void RegionMetrics::RecordPut(uint64_t bytes) {
  put_calls_.fetch_add(1, std::memory_order_relaxed);
  put_bytes_.fetch_add(bytes, std::memory_order_relaxed);
}

void RegionMetrics::RecordGet(uint64_t bytes) {
  get_calls_.fetch_add(1, std::memory_order_relaxed);
  get_bytes_.fetch_add(bytes, std::memory_order_relaxed);
}

void RegionMetrics::RecordError(RegionError kind) {
  errors_[static_cast<int>(kind)].fetch_add(1, std::memory_order_relaxed);
}

void RegionMetrics::RecordResolveError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOutOfRange:
      RecordError(RegionError::kBounds);
      break;
    case absl::StatusCode::kPermissionDenied:
      RecordError(RegionError::kOwnership);
      break;
    case absl::StatusCode::kNotFound:
      RecordError(RegionError::kGone);
      break;
    case absl::StatusCode::kInvalidArgument:
      RecordError(RegionError::kBadHandle);
      break;
    default:
      break;
  }
}

RegionMetrics::Counters RegionMetrics::counters() const {
  Counters counters;
  counters.put_calls = put_calls_.load(std::memory_order_relaxed);
  counters.put_bytes = put_bytes_.load(std::memory_order_relaxed);
  counters.get_calls = get_calls_.load(std::memory_order_relaxed);
  counters.get_bytes = get_bytes_.load(std::memory_order_relaxed);
  for (int i = 0; i < kRegionErrorKinds; ++i)
    counters.errors[i] = errors_[i].load(std::memory_order_relaxed);
  return counters;
}

}  // namespace seqkv::transport
