// The prefix trie of chunks. A node holds one chunk of a sequence; its key is
// the chained hash of everything before it, so identical prefixes map to the
// same nodes and are stored once.
#ifndef SEQKV_STORAGE_TRIE_H_
#define SEQKV_STORAGE_TRIE_H_

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "storage/kv_store.h"
#include "storage/node_key.h"
#include "storage/records.pb.h"

namespace seqkv {

using storage::v1::NodeRecord;

struct TrieNode {
  NodeKey key;
  NodeRecord record;
  // Tokens of this node that the match used (all of them but maybe the last).
  uint32_t matched_tokens = 0;
};

// Visits to one node since they were last recorded.
struct NodeVisits {
  NodeKey key;
  uint64_t visits = 0;
  int64_t last_used_micros = 0;
};

struct TrieMatch {
  std::vector<TrieNode> nodes;
  uint32_t matched_tokens = 0;
};

// A chunk a Put wants to add, its payload already written.
struct PendingNode {
  NodeKey key;
  NodeRecord record;
};

struct CommitResult {
  uint32_t added = 0;
  absl::flat_hash_set<NodeKey> raced_keys;
  // Nodes another writer committed first: their payloads were dropped.
  uint32_t raced = 0;
  uint64_t bytes_stored_added = 0;
  uint64_t bytes_logical_added = 0;
};

// Removals of nodes to commit together: the records, index entries and
// RocksDB payloads in `batch`, and the payload files to delete once `batch`
// has committed (Trie::CommitRemovals does both).
struct NodeRemovals {
  rocksdb::WriteBatch batch;
  std::vector<std::string> payload_files;
};

struct SubtreeRemoval {
  uint32_t chunks = 0;
  std::vector<NodeKey> keys;
  uint64_t bytes_stored = 0;
  uint64_t bytes_logical = 0;
};

class Trie {
 public:
  explicit Trie(KvStore* store) : store_(store) {}

  // Longest stored prefix of `tokens` below `root`, token-granular: a stored
  // chunk whose first n tokens match counts n. Reads node records and the
  // children index, never payloads.
  absl::StatusOr<TrieMatch> Match(const NodeKey& root,
                                  std::span<const int32_t> tokens,
                                  uint32_t chunk_tokens) const;

  absl::StatusOr<std::optional<NodeRecord>> ReadNode(const NodeKey& key) const;
  // DATA_LOSS if the payload a node points at is gone or fails its
  // checksum.
  absl::StatusOr<PayloadBytes> ReadPayload(const NodeRecord& node) const;
  // The same, read straight into `pieces` (filled in order; their sizes
  // must add up to the payload's), so that a payload can land in the
  // buffers it is sent from. On error the pieces hold unchecked bytes.
  absl::Status ReadPayloadInto(const NodeRecord& node,
                               std::span<const std::span<char>> pieces) const;

  // Adds visits to the nodes' stats (best effort: not logged, merged).
  absl::Status RecordVisits(std::span<const NodeVisits> visits);
  // Visits and last use of a node.
  absl::Status ReadVisits(const NodeKey& key, uint64_t& visits,
                          int64_t& last_used_micros) const;

  // Writes a payload under `node.payload_key()` that no node references
  // yet (invisible until Commit) and records its checksum and place in
  // `node`: a file of its own when it is large, else a RocksDB value.
  absl::Status StagePayload(std::string_view bytes, NodeRecord& node);
  // Drops staged payloads of a Put that failed.
  void DiscardPayloads(std::span<const PendingNode> nodes);

  // Adds every pending node not already present in one atomic durable
  // batch. `finalize` sees what will be added and may add records of its own
  // (usage, model) to the same batch; an error from it aborts the commit.
  // The caller holds write_mutex().
  using CommitHook =
      std::function<absl::Status(const CommitResult&, rocksdb::WriteBatch&)>;
  absl::StatusOr<CommitResult> Commit(std::span<const PendingNode> nodes,
                                      const CommitHook& finalize);

  // Removes the node reached by `tokens` (chunk-aligned, or ending at a
  // stored partial chunk) and everything below it; empty `tokens` removes
  // the whole tree under `root`.
  absl::StatusOr<SubtreeRemoval> RemoveSubtree(const NodeKey& root,
                                               std::span<const int32_t> tokens,
                                               uint32_t chunk_tokens,
                                               NodeRemovals& removals);

  // Adds the removal of a leaf node (record, stats, payload, index entry)
  // to `removals`. The caller makes sure it has no children.
  void RemoveLeaf(const NodeKey& key, const NodeRecord& record,
                  NodeRemovals& removals) const {
    RemoveNode(key, record, removals);
  }

  // Writes `removals.batch` durably, then deletes its payload files (an
  // error there only leaves orphans for the next sweep).
  absl::Status CommitRemovals(NodeRemovals& removals);

  // Deletes payload files no node names: left by a crash between writing a
  // file and committing its node, or between removing a node and deleting
  // its file. Returns how many it deleted. Call before serving: a Put in
  // flight has files no node names yet.
  absl::StatusOr<uint64_t> SweepOrphanPayloadFiles();

  // Serializes writers that check-then-write (Commit, removals, eviction).
  std::mutex& write_mutex() { return write_mutex_; }
  KvStore* store() const { return store_; }

 private:
  // Best partial match among the children of `parent` for `tokens`.
  absl::StatusOr<std::optional<TrieNode>> BestChild(
      const NodeKey& parent, std::span<const int32_t> tokens) const;
  void RemoveNode(const NodeKey& key, const NodeRecord& record,
                  NodeRemovals& removals) const;

  KvStore* store_;
  std::mutex write_mutex_;
};

// Key of a child in the children index: parent, first token, child.
std::string ChildIndexKey(const NodeKey& parent, int32_t first_token,
                          const NodeKey& child);

}  // namespace seqkv

#endif  // SEQKV_STORAGE_TRIE_H_
