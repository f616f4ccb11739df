#ifndef SEQKV_SERVER_CHUNK_BUFFER_POOL_H_
#define SEQKV_SERVER_CHUNK_BUFFER_POOL_H_

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

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
  ChunkBuffer(ChunkBufferPool* pool, std::string data);

  ChunkBufferPool* pool_ = nullptr;
  // A string, so that it can become a message's bytes field without a copy.
  std::string data_;
};

// Keeps the buffers of finished chunks for the next ones. Allocators give
// large freed blocks back to the kernel, so without reuse every chunk of
// several MiB lands in pages the kernel must map afresh; on virtual
// machines that costs more than the copy into them (docs/benchmarks).
// Thread-safe; must outlive the buffers it hands out.
class ChunkBufferPool {
 public:
  // Keeps at most `max_idle_bytes` of unused buffers (0: keeps none).
  explicit ChunkBufferPool(size_t max_idle_bytes);
  ChunkBufferPool(const ChunkBufferPool&) = delete;
  ChunkBufferPool& operator=(const ChunkBufferPool&) = delete;

  // A buffer of exactly `bytes` bytes, reused when an idle one has that
  // size. Its contents are unspecified (possibly another tenant's chunk):
  // the caller writes every byte before anything reads it.
  ChunkBuffer Acquire(size_t bytes);

  size_t idle_bytes() const;
  // Frees every idle buffer (buffers in use come back as usual).
  void ReleaseIdle();

 private:
  friend class ChunkBuffer;
  // Keeps `data` for reuse if the budget allows, first dropping idle
  // buffers of other sizes (the sizes in demand change with the models).
  void Return(std::string data);

  const size_t max_idle_bytes_;
  mutable absl::Mutex mutex_;
  absl::flat_hash_map<size_t, std::vector<std::string>> idle_
      ABSL_GUARDED_BY(mutex_);
  size_t idle_bytes_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_CHUNK_BUFFER_POOL_H_
