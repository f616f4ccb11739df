// An in-memory index of the trie for eviction: which nodes are leaves, and
// when each was last used. Only leaves are evicted, so a stored prefix is
// never cut out from under the chunks that extend it.
#ifndef SEQKV_SERVER_EVICTION_INDEX_H_
#define SEQKV_SERVER_EVICTION_INDEX_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "storage/trie.h"

namespace seqkv {

class EvictionIndex {
 public:
  // Rebuilds the index from the stored trie (nodes and their last use).
  absl::Status Load(const Trie& trie);

  void Add(const NodeKey& key, const NodeRecord& record, int64_t now_micros);
  void Touch(std::span<const TrieNode> nodes, int64_t now_micros);
  void Remove(const NodeKey& key);

  // The least recently used leaf of `name_space`, if any.
  std::optional<NodeKey> OldestLeaf(const std::string& name_space) const;
  size_t size() const;

 private:
  struct Entry {
    NodeKey parent;
    std::string name_space;
    int64_t last_used = 0;
    uint32_t children = 0;
  };
  using LeafKey = std::pair<int64_t, std::pair<uint64_t, uint64_t>>;
  static LeafKey LeafOf(const NodeKey& key, const Entry& entry) {
    return {entry.last_used, {key.high, key.low}};
  }
  void AddLocked(const NodeKey& key, Entry entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  mutable absl::Mutex mutex_;
  absl::flat_hash_map<NodeKey, Entry> nodes_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, std::set<LeafKey>> leaves_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_EVICTION_INDEX_H_
