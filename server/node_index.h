// An in-memory index of every trie node: its parent, namespace, last use and
// number of children, and a hash of its tokens. It answers whole-chunk
// lookups without touching RocksDB, picks the least recently used leaf to
// evict (only leaves are evicted, so a stored prefix is never cut out from
// under the chunks that extend it), and buffers visit counts so that a
// lookup writes nothing.
//
// The index never claims more than the store holds: nodes are added after
// their commit and removed before (or with) their removal.
#ifndef SEQKV_SERVER_NODE_INDEX_H_
#define SEQKV_SERVER_NODE_INDEX_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "storage/trie.h"

namespace seqkv {

class NodeIndex {
 public:
  // Rebuilds the index from the stored trie (nodes and their last use).
  absl::Status Load(const Trie& trie);

  void Add(const NodeKey& key, const NodeRecord& record, int64_t now_micros);
  void Remove(const NodeKey& key);

  // The keys of the whole chunks of `tokens` stored below `root`, in order,
  // up to the first chunk the index does not hold (by the chunks' parent
  // links and token hashes). Partial chunks are left to the trie.
  std::vector<NodeKey> MatchWholeChunks(const NodeKey& root,
                                        std::span<const int32_t> tokens,
                                        uint32_t chunk_tokens) const;
  // The same for chunks the caller sent as digests (ChunkDigest of each
  // whole chunk's tokens) rather than tokens. Every node is also indexed by
  // the chain hash of the digests from its root to it, so the probes do not
  // wait on each other: all are issued at once, then checked in order.
  std::vector<NodeKey> MatchChunkDigests(
      const NodeKey& root, std::span<const uint64_t> digests) const;

  // Marks nodes used at `now_micros` (eviction order only).
  void Touch(std::span<const NodeKey> keys, int64_t now_micros);
  // Touch, and counts a visit to each node until the next TakeVisits. Only
  // queued here (a lookup's hot path takes no index-wide lock); everything
  // that reads the order or the counts applies the queue first.
  void Visit(std::span<const NodeKey> keys, int64_t now_micros);
  // The visits counted since the last call, for the store to persist.
  std::vector<NodeVisits> TakeVisits();

  // The least recently used leaf of `name_space`, if any.
  std::optional<NodeKey> OldestLeaf(const std::string& name_space);
  size_t size() const;

 private:
  struct Entry {
    NodeKey parent;
    std::string name_space;
    int64_t last_used = 0;
    // ChunkDigest of the node's tokens: what digest lookups name a chunk by,
    // and independent of the node key, so a match checks both.
    uint64_t tokens_hash = 0;
    // ChainHash from the root down to this node; valid when `chained`.
    uint64_t chain_hash = 0;
    uint32_t children = 0;
    bool chained = false;
    // Stands for a parent not loaded yet, or a root: not a node.
    bool placeholder = false;
  };
  static Entry Placeholder(uint32_t children) {
    Entry entry;
    entry.children = children;
    entry.placeholder = true;
    return entry;
  }
  using LeafKey = std::pair<int64_t, std::pair<uint64_t, uint64_t>>;
  static LeafKey LeafOf(const NodeKey& key, const Entry& entry) {
    return {entry.last_used, {key.high, key.low}};
  }
  // With `chain`, also indexes the node by its chain hash (its parent must
  // be chained or a root); Load chains everything once all is loaded.
  void AddLocked(const NodeKey& key, Entry entry, bool chain)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // False when the index does not hold `key`.
  bool TouchLocked(const NodeKey& key, int64_t now_micros)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void ApplyQueuedVisitsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Computes the chain hash of `key` (and of its ancestors that lack one).
  void ChainLocked(const NodeKey& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  struct QueuedVisit {
    std::vector<NodeKey> keys;
    int64_t now_micros = 0;
  };
  void ApplyVisitLocked(const QueuedVisit& visit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  mutable absl::Mutex mutex_;
  absl::flat_hash_map<NodeKey, Entry> nodes_ ABSL_GUARDED_BY(mutex_);
  // Chain hash -> node, for lookups by chunk digest.
  struct ChainLink {
    NodeKey key;
    NodeKey parent;
    uint64_t tokens_hash = 0;
  };
  absl::flat_hash_map<uint64_t, ChainLink> chains_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, std::set<LeafKey>> leaves_ ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_map<NodeKey, NodeVisits> visits_ ABSL_GUARDED_BY(mutex_);
  // Taken after mutex_ when both are held.
  absl::Mutex queue_mutex_;
  std::deque<QueuedVisit> queued_visits_ ABSL_GUARDED_BY(queue_mutex_);
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_NODE_INDEX_H_
