// Where stored chunks hold which token runs, found by content rather than
// by prefix: the same document or system prompt stored after another
// prefix, at another position. Each chunk's windows of kWindowTokens token
// ids, hashed with the chunk's namespace and model, are indexed by
// winnowing (the least hash of every kWinnow consecutive windows, and the
// first window): a Put that looks up every window of a new chunk finds
// every run of kWindowTokens + kWinnow - 1 tokens or more that a stored
// chunk holds, whatever the hashes, at about 2 / (kWinnow + 1) of the
// windows' memory.
//
// Thread-safe.
#ifndef SEQKV_SERVER_CONTENT_INDEX_H_
#define SEQKV_SERVER_CONTENT_INDEX_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "storage/node_key.h"
#include "storage/trie.h"

namespace seqkv {

class ContentIndex {
 public:
  static constexpr uint32_t kWindowTokens = 16;
  static constexpr uint32_t kWinnow = 8;

  struct Place {
    NodeKey node;
    uint32_t token = 0;  // where the window starts in the chunk
  };

  // The hash of the kWindowTokens tokens at `window` in a scope (namespace
  // and model).
  static uint64_t WindowHash(uint64_t scope, std::span<const int32_t> window);
  static uint64_t Scope(std::string_view name_space, std::string_view model);

  // Indexes a stored chunk that can be coded against: one holding KV, not
  // at the deepest level of references. Others are left out.
  void Add(const NodeKey& key, const NodeRecord& record);
  void Remove(const NodeKey& key);
  // Up to `limit` chunks holding a window with hash `hash`.
  std::vector<Place> Find(uint64_t hash, size_t limit) const;

  // Indexed windows, for stats.
  size_t windows() const;

 private:
  mutable absl::Mutex mutex_;
  absl::flat_hash_map<uint64_t, std::vector<Place>> places_
      ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_map<NodeKey, std::vector<uint64_t>> windows_of_
      ABSL_GUARDED_BY(mutex_);
  size_t count_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_CONTENT_INDEX_H_
