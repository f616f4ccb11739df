#include "client/region_pool.h"

#include <bit>

namespace seqkv {

absl::StatusOr<std::shared_ptr<transport::SharedRegion>> RegionPool::Acquire(
    size_t bytes) {
  std::shared_ptr<transport::SharedRegion> too_small;
  {
    absl::MutexLock lock(&mutex_);
    for (auto it = idle_.begin(); it != idle_.end(); ++it) {
      if ((*it)->size() >= bytes) {
        auto region = std::move(*it);
        idle_.erase(it);
        return region;
      }
    }
    // None fits: the largest idle one makes room for a larger one.
    if (!idle_.empty()) {
      too_small = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  if (too_small) connection_->Unregister(*too_small).IgnoreError();
  // Powers of two from 1 MiB, so a few sizes serve every call.
  return connection_->CreateRegion(
      std::bit_ceil(std::max(bytes, size_t{1} << 20)));
}

void RegionPool::Release(std::shared_ptr<transport::SharedRegion> region) {
  {
    absl::MutexLock lock(&mutex_);
    if (idle_.size() < kMaxIdle) {
      idle_.push_back(std::move(region));
      return;
    }
  }
  connection_->Unregister(*region).IgnoreError();
}

}  // namespace seqkv
