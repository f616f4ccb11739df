#include "server/decoded_chunk_cache.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace seqkv {
namespace {

// A payload key is unique to the Put that wrote it; the checksum guards the
// key's reuse by a record written otherwise.
std::string KeyOf(const NodeRecord& record) {
  return absl::StrCat(record.payload_key(), "/", record.payload_checksum());
}

}  // namespace

std::shared_ptr<ChunkBuffer> DecodedChunkCache::Find(const NodeRecord& record) {
  if (capacity_bytes_ == 0) return nullptr;
  const std::string key = KeyOf(record);
  absl::MutexLock lock(&mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    ++misses_;
    return nullptr;
  }
  ++hits_;
  uses_.splice(uses_.begin(), uses_, it->second.use);
  return it->second.chunk;
}

void DecodedChunkCache::Insert(const NodeRecord& record,
                               std::shared_ptr<ChunkBuffer> chunk) {
  const size_t bytes = chunk->bytes().size();
  if (bytes > capacity_bytes_) return;
  std::string key = KeyOf(record);
  absl::MutexLock lock(&mutex_);
  if (entries_.contains(key)) return;
  uses_.push_front(key);
  entries_.emplace(std::move(key),
                   Entry{std::move(chunk), bytes, uses_.begin()});
  bytes_ += bytes;
  while (bytes_ > capacity_bytes_) {
    auto last = entries_.find(uses_.back());
    bytes_ -= last->second.bytes;
    entries_.erase(last);
    uses_.pop_back();
  }
}

void DecodedChunkCache::Clear() {
  absl::flat_hash_map<std::string, Entry> dropped;
  absl::MutexLock lock(&mutex_);
  dropped.swap(entries_);
  uses_.clear();
  bytes_ = 0;
}

DecodedChunkCache::Counts DecodedChunkCache::counts() const {
  absl::MutexLock lock(&mutex_);
  return {hits_, misses_, bytes_};
}

}  // namespace seqkv
