// Chunks decoded lately, by payload. A chunk that others were coded against
// (split dedup, cross-prefix residuals) is decoded for each of them, at each
// Put that codes against it and each Get that reads them, so its decoded
// bytes are kept a while: a payload never changes under its key, and
// decoding it always gives the same bytes.
//
// Thread-safe. The buffers hold their bytes of the memory budget, like any
// chunk buffer.
#ifndef SEQKV_SERVER_DECODED_CHUNK_CACHE_H_
#define SEQKV_SERVER_DECODED_CHUNK_CACHE_H_

#include <cstdint>
#include <list>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/chunk_buffer_pool.h"
#include "storage/trie.h"

namespace seqkv {

class DecodedChunkCache {
 public:
  // Keeps at most `capacity_bytes` of decoded chunks (0: none).
  explicit DecodedChunkCache(size_t capacity_bytes)
      : capacity_bytes_(capacity_bytes) {}

  // The decoded chunk of `record`'s payload, or null. Callers only read it.
  std::shared_ptr<ChunkBuffer> Find(const NodeRecord& record);
  // Keeps `chunk` as `record`'s decoded payload, dropping the least
  // recently used ones beyond the capacity.
  void Insert(const NodeRecord& record, std::shared_ptr<ChunkBuffer> chunk);
  // Drops every chunk (their buffers go back once no caller holds them).
  void Clear();

  struct Counts {
    uint64_t hits = 0;
    uint64_t misses = 0;
    size_t bytes = 0;
  };
  Counts counts() const;

 private:
  struct Entry {
    std::shared_ptr<ChunkBuffer> chunk;
    size_t bytes = 0;
    std::list<std::string>::iterator use;
  };

  const size_t capacity_bytes_;
  mutable absl::Mutex mutex_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mutex_);
  std::list<std::string> uses_ ABSL_GUARDED_BY(mutex_);  // latest first
  size_t bytes_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t hits_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t misses_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_DECODED_CHUNK_CACHE_H_
