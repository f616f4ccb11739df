#include "server/chunk_buffer_pool.h"

#include <utility>

namespace seqkv {

ChunkBuffer::ChunkBuffer(ChunkBufferPool* pool, std::string data)
    : pool_(pool), data_(std::move(data)) {}

ChunkBuffer::ChunkBuffer(ChunkBuffer&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)),
      data_(std::move(other.data_)) {}

ChunkBuffer& ChunkBuffer::operator=(ChunkBuffer&& other) noexcept {
  if (this != &other) {
    reset();
    pool_ = std::exchange(other.pool_, nullptr);
    data_ = std::move(other.data_);
  }
  return *this;
}

ChunkBuffer::~ChunkBuffer() { reset(); }

void ChunkBuffer::reset() {
  if (pool_ != nullptr) std::exchange(pool_, nullptr)->Return(std::move(data_));
  data_ = std::string();
}

ChunkBufferPool::ChunkBufferPool(size_t max_idle_bytes)
    : max_idle_bytes_(max_idle_bytes) {}

ChunkBuffer ChunkBufferPool::Acquire(size_t bytes) {
  {
    absl::MutexLock lock(&mutex_);
    auto it = idle_.find(bytes);
    if (it != idle_.end() && !it->second.empty()) {
      std::string data = std::move(it->second.back());
      it->second.pop_back();
      idle_bytes_ -= bytes;
      return ChunkBuffer(this, std::move(data));
    }
  }
  return ChunkBuffer(this, std::string(bytes, '\0'));
}

size_t ChunkBufferPool::idle_bytes() const {
  absl::MutexLock lock(&mutex_);
  return idle_bytes_;
}

void ChunkBufferPool::ReleaseIdle() {
  absl::flat_hash_map<size_t, std::vector<std::string>> idle;
  {
    absl::MutexLock lock(&mutex_);
    idle.swap(idle_);
    idle_bytes_ = 0;
  }
}

void ChunkBufferPool::Return(std::string data) {
  const size_t size = data.size();
  if (size == 0) return;
  // Freed outside the lock: unmapping large blocks is slow.
  std::vector<std::string> dropped;
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
      idle_[size].push_back(std::move(data));
      idle_bytes_ += size;
    }
  }
}

}  // namespace seqkv
