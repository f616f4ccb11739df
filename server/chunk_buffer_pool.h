#ifndef SEQKV_SERVER_CHUNK_BUFFER_POOL_H_
#define SEQKV_SERVER_CHUNK_BUFFER_POOL_H_

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/memory_budget.h"

namespace seqkv {

class ChunkBufferPool;

// A buffer that one chunk of a Put is assembled in, or one message of a Get
// is filled in. Destroying or resetting it hands the memory back to its
// pool.
class ChunkBuffer {
 public:
  ChunkBuffer() = default;
  ChunkBuffer(ChunkBuffer&& other) noexcept;
  ChunkBuffer& operator=(ChunkBuffer&& other) noexcept;
  ~ChunkBuffer();

  std::span<std::byte> bytes() {
    return std::as_writable_bytes(std::span(data_));
  }
  // The same bytes as a string, for APIs that take one (a message's bytes
  // field, which can swap it in and back out). Its size must not change.
  std::string& str() { return data_; }
  explicit operator bool() const { return pool_ != nullptr; }
  // Returns the memory to the pool; the buffer is empty afterwards.
  void reset();

 private:
  friend class ChunkBufferPool;
  ChunkBuffer(ChunkBufferPool* pool, std::string data,
              MemoryReservation reservation);

  ChunkBufferPool* pool_ = nullptr;
  MemoryReservation reservation_;
  // A string, so that it can become a message's bytes field without a copy.
  std::string data_;
};

// Keeps the buffers of finished chunks for the next ones. Allocators give
// large freed blocks back to the kernel, so without reuse every chunk of
// several MiB lands in pages the kernel must map afresh; on virtual
// machines that costs more than the copy into them (docs/benchmarks).
// Every buffer, in use or idle, holds its bytes of a MemoryBudget; the
// pool frees idle buffers before a new one would wait for the budget.
// Thread-safe; must outlive the buffers it hands out.
class ChunkBufferPool {
 public:
  // Keeps at most `max_idle_bytes` of unused buffers (0: keeps none).
  // `budget` (may be null: unlimited) must outlive the pool.
  explicit ChunkBufferPool(size_t max_idle_bytes,
                           MemoryBudget* budget = nullptr);
  ChunkBufferPool(const ChunkBufferPool&) = delete;
  ChunkBufferPool& operator=(const ChunkBufferPool&) = delete;

  // A buffer of exactly `bytes` bytes, reused when an idle one has that
  // size. Its contents are unspecified (possibly another tenant's chunk):
  // the caller writes every byte before anything reads it.
  // RESOURCE_EXHAUSTED, naming `what`, when the memory budget cannot hold
  // it within its wait.
  absl::StatusOr<ChunkBuffer> Acquire(size_t bytes,
                                      std::string_view what = "a buffer");

  size_t idle_bytes() const;
  // Frees every idle buffer (buffers in use come back as usual).
  void ReleaseIdle();

 private:
  friend class ChunkBuffer;
  struct Idle {
    // Before the data, so that the memory is freed before its budget is
    // given back.
    MemoryReservation reservation;
    std::string data;
  };
  // Keeps `data` for reuse if the budget allows, first dropping idle
  // buffers of other sizes (the sizes in demand change with the models).
  void Return(std::string data, MemoryReservation reservation);

  const size_t max_idle_bytes_;
  MemoryBudget* const budget_;
  mutable absl::Mutex mutex_;
  absl::flat_hash_map<size_t, std::vector<Idle>> idle_ ABSL_GUARDED_BY(mutex_);
  size_t idle_bytes_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_CHUNK_BUFFER_POOL_H_
