// The prefix trie of chunks. A node holds one chunk of a sequence; its key is
// the chained hash of everything before it, so identical prefixes map to the
// same nodes and are stored once. The trie owns the node records, the
// children index, the payloads and the node stats, and keeps each
// namespace's usage in step with them.
//
// Thread-safety: reads (Match, ReadNode, ReadPayload*, ForEach*) may run
// concurrently with anything. Writers that check, then write (Commit,
// RemoveSubtree with CommitRemovals, RemoveLeaf with CommitRemovals) must be
// serialized by the caller; StagePayload, DiscardPayloads and RecordVisits
// need not be.
#ifndef SEQKV_STORAGE_TRIE_H_
#define SEQKV_STORAGE_TRIE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "storage/kv_store.h"
#include "storage/model_registry.h"
#include "storage/namespace_records.h"
#include "storage/node_key.h"
#include "storage/records.pb.h"

namespace seqkv {

using storage::v1::NodeRecord;
using storage::v1::PayloadRefsRecord;

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
  // The node's decayed lookup count now (NodeStats), or none.
  double log_lookup_visits = kNoLookupVisits;
};

struct TrieMatch {
  std::vector<TrieNode> nodes;
  uint32_t matched_tokens = 0;
};

// A chunk a Put wants to add, its payload already written.
struct PendingNode {
  NodeKey key;
  NodeRecord record;
  // Set when the node is stored already at a lower fidelity (a lossy tier,
  // or tokens only) under this payload key (empty for tokens only): the
  // commit then replaces that payload with this one.
  std::optional<std::string> upgrades;
};

// What a Put knows of a chunk it adds below `parent`.
struct NewChunk {
  NodeKey parent;
  std::span<const int32_t> tokens;
  uint32_t depth = 0;  // in chunks below the root
  uint64_t first_position = 0;
  std::string_view codec;
  // The payload will be the chunk verbatim in wire (token-major) order.
  bool token_major = false;
  uint64_t bytes_logical = 0;
  std::string_view name_space;
  std::string_view model;
  // The version of the model's codec state the codec was built with.
  uint64_t codec_state_version = 0;
  // Unique to the Put: its payload key cannot collide with another Put's
  // payload for the same node.
  uint64_t put_id = 0;
};

// What a node adds to its namespace's usage: one chunk with its bytes, or
// nothing for a tokens-only node (it holds no KV).
Usage NodeUsage(const NodeRecord& record);

// The node record of `chunk`, its payload key assigned, ready for
// Trie::StagePayload.
PendingNode NewPendingNode(const NewChunk& chunk, int64_t now_micros);

// What a Commit adds besides the nodes.
struct CommitOptions {
  // The namespace the nodes go to, whose usage they add to.
  std::string name_space;
  // Refuse the commit (RESOURCE_EXHAUSTED) if the namespace would then
  // store more than this many bytes (0: no limit).
  uint64_t quota_bytes = 0;
  // Appended to that refusal: where the quota comes from.
  std::string quota_note;
  // A model made by ModelRegistry::FromSpec to store with the nodes; its
  // record is charged to its owner's usage (and to the quota above when
  // the owner is `name_space`).
  const Model* new_model = nullptr;
};

struct CommitResult {
  uint32_t added = 0;
  // Nodes held at a lower fidelity whose payload the commit replaced, and
  // the bytes of their new payloads.
  uint32_t upgraded = 0;
  uint64_t bytes_stored_upgraded = 0;
  absl::flat_hash_set<NodeKey> raced_keys;
  // Nodes another writer committed first: their payloads were dropped.
  uint32_t raced = 0;
  uint64_t bytes_stored_added = 0;
  uint64_t bytes_logical_added = 0;
};

// Removals of nodes to commit together (Trie::StartRemovals makes one,
// Trie::CommitRemovals commits it): the records, index entries and
// RocksDB payloads in one batch, the payload files to delete once it has
// committed, and what the removals take from each namespace's usage.
class NodeRemovals {
 public:
  // The usage change the removals make to each namespace (negative).
  const std::map<std::string, Usage>& usage_deltas() const {
    return usage_deltas_;
  }
  bool empty() const { return batch_.Count() == 0; }

 private:
  friend class Trie;
  explicit NodeRemovals(const KvStore& store) : batch_(store) {}

  WriteBatch batch_;
  std::vector<std::string> payload_files_;
  std::map<std::string, Usage> usage_deltas_;
  // Payloads their nodes let go of: settled at commit
  // (Trie::SettlePayloads).
  std::vector<NodeRecord> released_;
};

struct SubtreeRemoval {
  uint32_t chunks = 0;
  std::vector<NodeKey> keys;
  uint64_t bytes_stored = 0;
  uint64_t bytes_logical = 0;
};

class Trie {
 public:
  explicit Trie(KvStore* store) : store_(store), usage_(store) {}

  // Loads every namespace's usage. Call once, before serving.
  absl::Status Load() { return usage_.Load(); }
  // Usage of every namespace, in step with the committed nodes.
  const NamespaceUsage& usage() const { return usage_; }
  // For the model registry, whose writes are serialized with the trie's.
  NamespaceUsage& mutable_usage() { return usage_; }

  // Longest stored prefix of `tokens` below `root`, token-granular: a stored
  // chunk whose first n tokens match counts n. Reads node records and the
  // children index, never payloads.
  absl::StatusOr<TrieMatch> Match(const NodeKey& root,
                                  std::span<const int32_t> tokens,
                                  uint32_t chunk_tokens) const;

  absl::StatusOr<std::optional<NodeRecord>> ReadNode(const NodeKey& key) const;
  // The child of `parent` whose tokens share the longest head with
  // `tokens` (non-empty), with that length as matched_tokens; none when no
  // child starts with tokens[0].
  absl::StatusOr<std::optional<TrieNode>> BestChild(
      const NodeKey& parent, std::span<const int32_t> tokens) const;
  // DATA_LOSS if the payload a node points at is gone or fails its
  // checksum.
  absl::StatusOr<PayloadBytes> ReadPayload(const NodeRecord& node) const;
  // The same, read straight into `pieces` (filled in order; their sizes
  // must add up to the payload's), so that a payload can land in the
  // buffers it is sent from. On error the pieces hold unchecked bytes.
  absl::Status ReadPayloadInto(const NodeRecord& node,
                               std::span<const std::span<char>> pieces) const;

  // Adds visits to the nodes' stats, merged, in `batch` (which the caller
  // writes, with what else goes with them).
  void StageVisits(std::span<const NodeVisits> visits, WriteBatch& batch) const;
  // StageVisits in a batch of their own, written (logged, not synced).
  absl::Status RecordVisits(std::span<const NodeVisits> visits);
  // Visits and last use of a node.
  absl::Status ReadVisits(const NodeKey& key, uint64_t& visits,
                          int64_t& last_used_micros) const;

  // Calls `visit` with every node and its stats, in key order.
  absl::Status ForEachNode(
      const std::function<void(const NodeKey& key, const NodeRecord& record,
                               const NodeStats& stats)>& visit) const;
  // Calls `visit` with the stats of every node that has some, in key order,
  // until it returns false. Stats may outlive their node by a moment (a
  // visit counted during its removal): ReadNode tells.
  absl::Status ForEachNodeStats(
      const std::function<bool(const NodeKey& key, uint64_t visits,
                               int64_t last_used_micros)>& visit) const;

  // Writes a payload under `node.payload_key()` that no node references
  // yet (invisible until Commit) and records its size, checksum and place
  // in `node`: a file of its own when it is large, else a RocksDB value,
  // written with a `staged/` mark that Commit and DiscardPayloads delete,
  // so that SweepOrphanPayloads finds it after a crash without reading
  // every payload. RESOURCE_EXHAUSTED when the disk is (nearly) full.
  absl::Status StagePayload(std::string_view bytes, NodeRecord& node);
  // Drops staged payloads of a Put that failed.
  void DiscardPayloads(std::span<const PendingNode> nodes);

  // Adds every pending node not already present, the namespace's new usage
  // and the new model (if any) in one atomic durable batch; drops the
  // payloads of nodes another Put committed first. Nothing is written when
  // it fails (the quota, a write error).
  absl::StatusOr<CommitResult> Commit(std::span<const PendingNode> nodes,
                                      const CommitOptions& options);

  NodeRemovals StartRemovals() const { return NodeRemovals(*store_); }

  // Removes the node reached by `tokens` (chunk-aligned, or ending at a
  // stored partial chunk) and everything below it; empty `tokens` removes
  // the whole tree under `root`.
  absl::StatusOr<SubtreeRemoval> RemoveSubtree(const NodeKey& root,
                                               std::span<const int32_t> tokens,
                                               uint32_t chunk_tokens,
                                               NodeRemovals& removals);
  // Removes the stored node `key` and everything below it (nothing when
  // there is no such node, or when its record no longer names
  // `payload_key`: it was replaced meanwhile).
  absl::StatusOr<SubtreeRemoval> RemoveSubtreeOf(const NodeKey& key,
                                                 std::string_view payload_key,
                                                 NodeRemovals& removals);

  // Adds the removal of a leaf node (record, stats, payload, index entry)
  // to `removals`. The caller makes sure it has no children.
  void RemoveLeaf(const NodeKey& key, const NodeRecord& record,
                  NodeRemovals& removals) const {
    RemoveNode(key, record, removals);
  }
  // Adds dropping the payload of the node `key` to `removals`: its record
  // stays, marked tokens_only, so that the prefix is still recognised.
  // Returns that record. The caller makes sure every child is tokens-only.
  NodeRecord DropPayload(const NodeKey& key, const NodeRecord& record,
                         NodeRemovals& removals) const;

  // Replaces the payload of the stored node `key` by the one `replacement`
  // names (staged by StagePayload), with the namespace's usage, in one
  // durable write, then deletes the old payload: a crash leaves one of the
  // two, never neither. FAILED_PRECONDITION, with nothing written, when the
  // node is gone or no longer names `expected_payload_key` (replaced or
  // removed meanwhile); the caller then discards the staged payload.
  // Serialized with the other writers.
  absl::Status ReplacePayload(const NodeKey& key,
                              std::string_view expected_payload_key,
                              const NodeRecord& replacement);

  // One swap of ReplacePayloads.
  struct PayloadReplacement {
    NodeKey key;
    std::string expected_payload_key;
    NodeRecord replacement;
  };
  // ReplacePayload of several nodes in one durable write: for each, whether
  // it was replaced (false: gone, changed meanwhile, or named twice, with
  // nothing written for it; the caller discards its staged payload). On an
  // error nothing is written.
  absl::StatusOr<std::vector<bool>> ReplacePayloads(
      std::span<const PayloadReplacement> replacements);

  // Whether chunks reference the payload `payload_key` (they were coded
  // against it): its node should then keep it as it is.
  absl::StatusOr<bool> IsReferenced(std::string_view payload_key) const;

  // Writes the removals and the usage they change durably, then deletes
  // their payload files (an error there only leaves orphans for the next
  // sweep). `removals` is empty afterwards.
  absl::Status CommitRemovals(NodeRemovals& removals);

  // Deletes payload files no node names: left by a crash between writing a
  // file and committing its node, or between removing a node and deleting
  // its file. Returns how many it deleted. Call before serving: a Put in
  // flight has files no node names yet.
  absl::StatusOr<uint64_t> SweepOrphanPayloadFiles();
  // Deletes the payloads in RocksDB that were staged (their `staged/` mark
  // is left) but never committed: left by a crash during a Put. Returns
  // how many it deleted. Call before serving, like SweepOrphanPayloadFiles.
  absl::StatusOr<uint64_t> SweepStagedPayloads();

  // What RebuildPayloadReferences did.
  struct ReferenceRebuild {
    uint64_t records_rewritten = 0;  // reference records set or deleted
    uint64_t payloads_deleted = 0;   // detached payloads no chunk needs
    // Bytes of the detached payloads kept, by namespace: their namespaces
    // are still charged for them.
    std::map<std::string, Usage> detached_usage;
  };
  // Offline repair only (no Commit may run beside it): sets every
  // payload's reference count to what `nodes` (every chunk that stays) and
  // the detached payloads that stay reference, and deletes the detached
  // payloads nothing references any more, with their own references let
  // go. The records change in `batch`; payload files to delete once it is
  // written are added to `files`.
  absl::StatusOr<ReferenceRebuild> RebuildPayloadReferences(
      std::span<const NodeRecord* const> nodes, WriteBatch& batch,
      std::vector<std::string>& files) const;

 private:
  void RemoveNode(const NodeKey& key, const NodeRecord& record,
                  NodeRemovals& removals) const;
  // For each chunk `record` references: ABORTED unless its payload is
  // still stored (its node names it, or chunks keep it); adds it to
  // `referenced`.
  absl::Status CheckReferences(const NodeRecord& record,
                               std::vector<std::string>& referenced) const;
  // Settles the payloads a batch changes: each of `referenced` gains a
  // referrer; one `released` by its node is deleted, with its own
  // references let go of, unless chunks still reference it (then it is
  // detached: kept, still charged to its namespace, holding its
  // references); a detached payload whose last referrer goes is deleted
  // the same way. RocksDB payloads are deleted in `batch`, files are added
  // to `files` (to delete once the batch commits), and the usage the bytes
  // kept or freed change goes to `usage_deltas`.
  absl::Status SettlePayloads(std::span<const NodeRecord> released,
                              std::span<const std::string> referenced,
                              WriteBatch& batch,
                              std::vector<std::string>& files,
                              std::map<std::string, Usage>& usage_deltas) const;
  // Adds everything below the nodes of `frontier` to `removal`.
  absl::Status RemoveDescendants(std::deque<NodeKey> frontier,
                                 NodeRemovals& removals,
                                 SubtreeRemoval& removal);

  KvStore* store_;
  NamespaceUsage usage_;
};

// Key of a child in the children index: parent, first token, child.
std::string ChildIndexKey(const NodeKey& parent, int32_t first_token,
                          const NodeKey& child);

}  // namespace seqkv

#endif  // SEQKV_STORAGE_TRIE_H_
