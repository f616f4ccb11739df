#include "server/chunk_buffer_pool.h"

#include <utility>

namespace seqkv {

ChunkBuffer::ChunkBuffer(ChunkBufferPool* pool, std::string data,
                         MemoryReservation reservation)
    : pool_(pool),
      reservation_(std::move(reservation)),
      data_(std::move(data)) {}

ChunkBuffer::ChunkBuffer(ChunkBuffer&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)),
      reservation_(std::move(other.reservation_)),
      data_(std::move(other.data_)) {}

ChunkBuffer& ChunkBuffer::operator=(ChunkBuffer&& other) noexcept {
  if (this != &other) {
    reset();
    pool_ = std::exchange(other.pool_, nullptr);
    reservation_ = std::move(other.reservation_);
    data_ = std::move(other.data_);
  }
  return *this;
}

ChunkBuffer::~ChunkBuffer() { reset(); }

void ChunkBuffer::reset() {
  if (pool_ != nullptr)
    std::exchange(pool_, nullptr)
        ->Return(std::move(data_), std::move(reservation_));
  data_ = std::string();
  reservation_.reset();
}

ChunkBufferPool::ChunkBufferPool(size_t max_idle_bytes, MemoryBudget* budget)
    : max_idle_bytes_(max_idle_bytes), budget_(budget) {}

absl::StatusOr<ChunkBuffer> ChunkBufferPool::Acquire(size_t bytes,
                                                     std::string_view what) {
  {
    absl::MutexLock lock(&mutex_);
    auto it = idle_.find(bytes);
    if (it != idle_.end() && !it->second.empty()) {
      Idle idle = std::move(it->second.back());
      it->second.pop_back();
      idle_bytes_ -= bytes;
      return ChunkBuffer(this, std::move(idle.data),
                         std::move(idle.reservation));
    }
  }
  MemoryReservation reservation;
  if (budget_ != nullptr && bytes > 0) {
    if (auto now = budget_->TryReserve(bytes)) {
      reservation = *std::move(now);
    } else {
      // Idle buffers of other sizes hold budget that this one needs.
      ReleaseIdle();
      auto later = budget_->Reserve(bytes, what);
      if (!later.ok()) return later.status();
      reservation = *std::move(later);
    }
  }
  return ChunkBuffer(this, std::string(bytes, '\0'), std::move(reservation));
}

size_t ChunkBufferPool::idle_bytes() const {
  absl::MutexLock lock(&mutex_);
  return idle_bytes_;
}

void ChunkBufferPool::ReleaseIdle() {
  absl::flat_hash_map<size_t, std::vector<Idle>> idle;
  {
    absl::MutexLock lock(&mutex_);
    idle.swap(idle_);
    idle_bytes_ = 0;
  }
}

void ChunkBufferPool::Return(std::string data, MemoryReservation reservation) {
  const size_t size = data.size();
  if (size == 0) return;
  // Freed outside the lock: unmapping large blocks is slow.
  std::vector<Idle> dropped;
  Idle returned{std::move(reservation), std::move(data)};
  {
    absl::MutexLock lock(&mutex_);
    for (auto it = idle_.begin();
         it != idle_.end() && idle_bytes_ + size > max_idle_bytes_;) {
      if (it->first == size) {
        ++it;
        continue;
      }
      while (!it->second.empty() && idle_bytes_ + size > max_idle_bytes_) {
        dropped.push_back(std::move(it->second.back()));
        it->second.pop_back();
        idle_bytes_ -= it->first;
      }
      if (it->second.empty()) {
        idle_.erase(it++);
      } else {
        ++it;
      }
    }
    if (idle_bytes_ + size <= max_idle_bytes_) {
      idle_[size].push_back(std::move(returned));
      idle_bytes_ += size;
    }
  }
}

}  // namespace seqkv
