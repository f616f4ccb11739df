// An in-memory index of every trie node: its parent, namespace, last use and
// number of children, a hash of its tokens, and the statistics of the
// probabilistic trie (server/prefix_estimator.h). It answers whole-chunk
// lookups without touching RocksDB, picks the leaf to evict (the least
// recently used, or the one of least expected value per byte; only leaves
// are evicted, so a stored prefix is never cut out from under the chunks
// that extend it), remembers the statistics of evicted chunks for a while
// (ghosts, so that a returning chunk is recognised), and buffers visit
// counts so that a lookup writes nothing.
//
// The index never claims more than the store holds: nodes are added after
// their commit and removed before (or with) their removal.
#ifndef SEQKV_SERVER_NODE_INDEX_H_
#define SEQKV_SERVER_NODE_INDEX_H_

#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "server/content_index.h"
#include "server/prefix_estimator.h"
#include "storage/trie.h"

namespace seqkv {

// Which leaf goes first when a limit is exceeded.
enum class RetentionPolicy {
  kLru,  // the least recently used
  kPlt,  // the least expected benefit per stored byte (PrefixEstimator)
};

struct NodeIndexOptions {
  RetentionPolicy retention = RetentionPolicy::kLru;
  PrefixEstimatorOptions estimator;
  // Evicted or deleted chunks whose statistics are kept, per chunk held
  // (and at least `min_ghosts`); the oldest are forgotten first.
  double ghosts_per_chunk = 2;
  size_t min_ghosts = 4096;
  // Rank chunks by their logical bytes, not their stored ones: with lossy
  // tiers, demotion rather than eviction is what a chunk's bytes decide,
  // and ranking by stored bytes would evict the chunks stored last (held
  // exact, so the largest) before the demoted ones.
  bool rank_by_logical_bytes = false;
};

// How a stored chunk is held (NodeRecord's lossy_tier and tokens_only):
// 0 as its Put stored it, 1..kLossyTiers re-encoded to that lossy tier,
// kTokensOnlyTier without KV.
inline constexpr uint32_t kLossyTiers = 2;
inline constexpr uint32_t kTokensOnlyTier = kLossyTiers + 1;
uint32_t TierOf(const NodeRecord& record);
// "exact", "lossy_1", "lossy_2", "tokens_only": as /v1/stats names them.
const char* TierName(uint32_t tier);

// Chunks and stored bytes at one tier.
struct TierUsage {
  uint64_t chunks = 0;
  uint64_t bytes = 0;
};

// Retention statistics of one namespace's chunks.
struct RetentionStats {
  uint64_t lookups = 0;
  uint64_t chunks_inserted = 0;
  uint64_t readmissions = 0;  // chunks stored again while remembered
  uint64_t demotions = 0;     // chunks re-encoded to a lossier tier
  // Lookups whose match went on into chunks held as tokens only.
  uint64_t ghost_hits = 0;
  TierUsage tiers[kTokensOnlyTier + 1];
};

// What the index learns from requests beyond the nodes' own stats: the
// counts p̂(reuse) is learned from, and each namespace's lookup clock, which
// the nodes' decayed lookup counts (NodeStats) are relative to.
struct LearnedState {
  struct LookupClock {
    uint64_t lookups = 0;
    double log_lookups = kNoLookupVisits;
  };
  PrefixEstimator::ReachedCounts reached{};
  std::map<std::string, LookupClock> clocks;
};

class NodeIndex {
 public:
  explicit NodeIndex(NodeIndexOptions options = {});

  // Rebuilds the index from the stored trie (nodes and their last use).
  // On an error the index holds the nodes read before it.
  absl::Status Load(const Trie& trie);

  void Add(const NodeKey& key, const NodeRecord& record, int64_t now_micros);
  void Remove(const NodeKey& key);
  // The stored node `key` now holds `record` at another tier (demoted,
  // dropped to tokens only, or upgraded by a Put). False when the index
  // does not hold it.
  bool ChangeTier(const NodeKey& key, const NodeRecord& record);
  // A Put stored the node `key` again as `record` (it was held at a lower
  // tier): counted as a chunk stored and a use, as Add counts one, then
  // the tier changes. False when the index does not hold it.
  bool Readmit(const NodeKey& key, const NodeRecord& record,
               int64_t now_micros);

  // The tier of each of `keys` (kTokensOnlyTier for a key it does not
  // hold). Takes only a reader lock: lookups call it.
  std::vector<uint32_t> Tiers(std::span<const NodeKey> keys) const;
  // Counts a lookup of `name_space` whose match went on into chunks held
  // as tokens only.
  void CountGhostHit(const std::string& name_space);

  // The keys of the whole chunks of `tokens` stored below `root`, in order,
  // up to the first chunk the index does not hold (by the chunks' parent
  // links and token hashes). Partial chunks are left to the trie.
  std::vector<NodeKey> MatchWholeChunks(
      const NodeKey& root, std::span<const int32_t> tokens,
      uint32_t chunk_tokens, std::vector<uint32_t>* tiers = nullptr) const;
  // The same for chunks the caller sent as digests (ChunkDigest of each
  // whole chunk's tokens) rather than tokens. Every node is also indexed by
  // the chain hash of the digests from its root to it, so the probes do not
  // wait on each other: all are issued at once, then checked in order.
  // With `tiers`, also the tier of each key (see Tiers), from the same
  // probes.
  std::vector<NodeKey> MatchChunkDigests(
      const NodeKey& root, std::span<const uint64_t> digests,
      std::vector<uint32_t>* tiers = nullptr) const;

  // Marks nodes used at `now_micros` (eviction order only).
  void Touch(std::span<const NodeKey> keys, int64_t now_micros);
  // Touch, and counts a visit to each node until the next TakeVisits. Only
  // queued here (a lookup's hot path takes no index-wide lock); everything
  // that reads the order or the counts applies the queue first. A lookup
  // (`lookup_of` not empty) also counts one lookup of each namespace it
  // searched, and an occurrence of each node, for the probabilities.
  void Visit(std::span<const NodeKey> keys, int64_t now_micros,
             std::span<const std::string> lookup_of = {});
  // The visits counted since the last call, for the store to persist.
  std::vector<NodeVisits> TakeVisits();

  // The leaf of `name_space` the retention policy evicts first, if any.
  // Leaves are the chunks with KV none of whose children has any.
  std::optional<NodeKey> NextVictim(const std::string& name_space);
  // A chunk of `name_space` held at `tier` (exact, or a lossy tier below
  // the last) to demote next: of a few sampled at random, the one the
  // policy values least (leaves and inner chunks alike: demotion keeps the
  // prefix; an exact chunk only once no child of it is exact, so that the
  // exact chunks stay whole prefixes). None when it has none.
  std::optional<NodeKey> NextDemotion(const std::string& name_space,
                                      uint32_t tier);
  // Leaves `key` at its tier: NextDemotion no longer offers it.
  void KeepTier(const NodeKey& key);
  // Tokens-only chunks of `name_space` beyond the ghosts it may keep
  // (ghosts_per_chunk per chunk with KV, at least min_ghosts), the oldest
  // first: the caller removes them (and whatever is below them).
  std::vector<NodeKey> ExcessTokensOnly(const std::string& name_space);
  // Whether `key` has children held as tokens only (a removal of it must
  // take them too).
  bool HasTokensOnlyChildren(const NodeKey& key) const;
  size_t size() const;

  // P̂(node): the probability that the next lookup of the node's namespace
  // passes through it (0 for a node the index does not hold), as of the
  // visits applied so far (queued ones are applied at least every second).
  // Takes only a reader lock: lookups call it.
  double Probability(const NodeKey& key) const;
  std::map<std::string, RetentionStats> Stats();
  // What the index has learned from requests (queued visits applied
  // first), to save; and to restore after Load, on a restart.
  LearnedState Learned();
  void RestoreLearned(const LearnedState& learned);
  // p̂(reuse) of a chunk seen k = 1 .. kClasses - 1 times, whole or a
  // trailing partial chunk.
  std::vector<double> ReuseProbabilities(bool partial) const;
  // The chunks that can be coded against, by content (kept in step with
  // Add, Readmit, Remove and Load).
  const ContentIndex& content() const { return content_; }
  // Removed chunks whose statistics are remembered.
  size_t ghost_count() const;
  RetentionPolicy retention() const { return options_.retention; }

 private:
  static constexpr int64_t kNotDemotable = -1;
  static constexpr int64_t kKeepTier = -2;
  struct Entry {
    NodeKey parent;
    std::string name_space;
    int64_t last_used = 0;
    // While it is a leaf: its key in leaves_ (the rank's standing part, or
    // the last use under LRU), and which of the namespace's leaf sets
    // holds it.
    double rank = 0;
    uint32_t rank_class = 0;
    ChunkFacts facts;
    // The namespace's turnovers when it was last used.
    double used_at = 0;
    // log2 of its decayed lookups (PrefixEstimator); -inf for none.
    double log_visits = -1e300;
    // ChunkDigest of the node's tokens: what digest lookups name a chunk by,
    // and independent of the node key, so a match checks both.
    uint64_t tokens_hash = 0;
    // ChainHash from the root down to this node; valid when `chained`.
    uint64_t chain_hash = 0;
    // Children that hold KV (a node is a leaf without any), and those held
    // as tokens only.
    uint32_t children = 0;
    uint32_t tokens_only_children = 0;
    // Children held exact: a chunk is demoted from exact only without any,
    // so that exact chunks stay whole prefixes (an exact hit ends at the
    // first lossy chunk).
    uint32_t exact_children = 0;
    uint32_t tier = 0;
    uint64_t bytes_stored = 0;  // at its tier (facts may rank by others)
    // Its place in NamespaceState::demotable[tier]; kNotDemotable when not
    // there, kKeepTier when it is to stay at its tier.
    int64_t demotable_slot = kNotDemotable;
    bool chained = false;
    // Held as tokens only and passed by a lookup since: the Put that stores
    // it again is that same request, not one more occurrence.
    bool looked_up_as_tokens = false;
    // Stands for a parent not loaded yet, or a root: not a node.
    bool placeholder = false;
  };
  static Entry Placeholder(const Entry& children_of) {
    Entry entry;
    entry.children = children_of.children;
    entry.tokens_only_children = children_of.tokens_only_children;
    entry.exact_children = children_of.exact_children;
    entry.placeholder = true;
    return entry;
  }
  using LeafKey = std::pair<double, std::pair<uint64_t, uint64_t>>;
  static LeafKey LeafOf(const NodeKey& key, const Entry& entry) {
    return {entry.rank, {key.high, key.low}};
  }
  // A namespace's leaves, one ordered set per rank class: a class's
  // p̂(reuse) changes as the estimator learns, the order within it does
  // not, so the least valued leaf is the least of the sets' first ones.
  using LeafSets = std::array<std::set<LeafKey>, PrefixEstimator::kRankClasses>;
  struct NamespaceState {
    RetentionStats stats;
    uint64_t live = 0;
    // Chunks stored, each counted as 1 / the chunks held then: time in
    // turnovers of the namespace, the clock retention ranks by.
    double turnovers = 0;
    double log_lookups = -1e300;
    // Chunks that may still be demoted, by their tier, for NextDemotion's
    // sampling.
    std::vector<NodeKey> demotable[kLossyTiers];
    // Tokens-only chunks in the order they were dropped (may name chunks
    // removed or upgraded since).
    std::deque<NodeKey> tokens_only;
  };
  struct Ghost {
    uint32_t occurrences = 0;
    double log_visits = -1e300;
  };
  // Chunks of the namespace that hold KV (at least 1): the turnover clock
  // counts in them, since tokens-only chunks take no room.
  static uint64_t HeldWithKv(const NamespaceState& state) {
    return std::max<uint64_t>(
        1, state.live - state.stats.tiers[kTokensOnlyTier].chunks);
  }
  // The rank `entry` has now under the policy.
  double RankLocked(const Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Queues the node's decayed lookup count (log form) for the next
  // TakeVisits, so that the node's stats keep P̂ across a restart.
  void KeepLogVisitsLocked(const NodeKey& key, double log_visits)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Re-ranks `entry` (a leaf moves in leaves_) after a use.
  void ReRankLocked(const NodeKey& key, Entry& entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Puts a leaf into leaves_, ranked now, or takes it out.
  void InsertLeafLocked(const NodeKey& key, Entry& entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void EraseLeafLocked(const NodeKey& key, const Entry& entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void RememberGhostLocked(const NodeKey& key, const Entry& entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void ChangeTierLocked(const NodeKey& key, Entry& entry,
                        const NodeRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Counts `entry` (with its tier and bytes) in its namespace's tier usage,
  // or takes it out (`sign` -1), and keeps the demotable set in step.
  void CountTierLocked(const NodeKey& key, Entry& entry, int sign)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Whether it is a leaf: holds KV, and none of its children does.
  static bool IsLeaf(const Entry& entry) {
    return entry.children == 0 && entry.tier != kTokensOnlyTier &&
           !entry.placeholder;
  }
  // Counts `child` (of tier `tier`) in its parent's children, making a
  // placeholder for a parent not known yet, or takes it out (`sign` -1).
  void CountChildLocked(const NodeKey& parent, uint32_t tier, int sign)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
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
    std::vector<std::string> lookup_of;
  };
  void ApplyVisitLocked(const QueuedVisit& visit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const NodeIndexOptions options_;
  ContentIndex content_;
  mutable absl::Mutex mutex_;
  PrefixEstimator estimator_ ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_map<NodeKey, Entry> nodes_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, NamespaceState> namespaces_ ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_map<NodeKey, Ghost> ghosts_ ABSL_GUARDED_BY(mutex_);
  std::deque<NodeKey> ghost_order_ ABSL_GUARDED_BY(mutex_);
  // Chain hash -> node, for lookups by chunk digest.
  struct ChainLink {
    NodeKey key;
    NodeKey parent;
    uint64_t tokens_hash = 0;
    uint32_t tier = 0;  // the node's, so that lookups need no other probe
  };
  absl::flat_hash_map<uint64_t, ChainLink> chains_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, LeafSets> leaves_ ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_map<NodeKey, NodeVisits> visits_ ABSL_GUARDED_BY(mutex_);
  uint64_t sample_state_ ABSL_GUARDED_BY(mutex_) = 0x9e3779b97f4a7c15;
  // Taken after mutex_ when both are held.
  absl::Mutex queue_mutex_;
  std::deque<QueuedVisit> queued_visits_ ABSL_GUARDED_BY(queue_mutex_);
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_NODE_INDEX_H_
