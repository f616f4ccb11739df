// Storage limits and what goes when they are exceeded: per-namespace quotas
// (refuse or evict) and the store's capacity, enforced by evicting the
// leaves the retention policy values least (NodeIndex). Only leaves go, so
// a stored prefix is never cut out from under the chunks that extend it.
// With fidelity tiers (server/tiers.h) an evicted leaf first keeps its
// tokens, and chunks are demoted to lossy tiers (by the engine, in the
// background) before the limits are reached.
#ifndef SEQKV_SERVER_RETENTION_H_
#define SEQKV_SERVER_RETENTION_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "server/node_index.h"
#include "server/stats.h"
#include "server/tiers.h"
#include "storage/trie.h"

namespace seqkv {

// Storage limit of one namespace (after dedup and compression), counting
// its chunks and the model records of its tenant.
struct NamespaceLimit {
  uint64_t quota_bytes = 0;  // 0: none
  // Over quota: refuse the Put (true) or evict the namespace's least
  // recently used chunks (false).
  bool reject = false;
  // The namespace's fidelity tiers; unset: the server's.
  std::optional<TierPolicy> tiers;
};

// Thread-safe for the limits. Evict() writes to the trie: its caller
// serializes it with the trie's other writers.
class Retention {
 public:
  // All three must outlive this.
  Retention(Trie* trie, NodeIndex* index, StatsRegistry* stats)
      : trie_(trie), index_(index), stats_(stats) {}

  // Quotas per namespace and the store's capacity (0: unlimited). Take
  // effect at the next Evict() or commit.
  void SetLimits(std::map<std::string, NamespaceLimit> limits,
                 uint64_t capacity_bytes);
  NamespaceLimit LimitFor(const std::string& name_space) const;
  uint64_t capacity_bytes() const;
  // The server's fidelity tiers, for namespaces whose limit sets none.
  void SetDefaultTiers(TierPolicy tiers);
  TierPolicy TiersFor(const std::string& name_space) const;

  // In a cluster (server/cluster_join.h): the bytes each namespace stores
  // on the other live members, as they last reported them, and how many
  // members there are. A quota then holds across the cluster: a refusing
  // one admits here only what the others leave of it; an evicting one
  // keeps here what the others leave, but never less than an equal share
  // (quota / members), so that writes through any node keep landing while
  // the others evict down to theirs.
  void SetElsewhere(std::map<std::string, uint64_t> bytes, uint32_t members);
  // The part of `limit` (of `name_space`) this node may hold; 0: none.
  uint64_t QuotaHere(const std::string& name_space,
                     const NamespaceLimit& limit) const;

  // One demotion to do: a chunk of `name_space` from tier `from` to `to`.
  struct DemotionStep {
    std::string name_space;
    uint32_t from = 0;
    uint32_t to = 0;
  };
  // The demotions due now, the most needed first: for each namespace with
  // lossy tiers and an evicting quota, and for the namespaces with lossy
  // tiers together against the capacity (each namespace holding chunks at
  // the tier, the one holding the most first), a tier holding more than its
  // share of the limit gives up a chunk, exact to tier 1 (straight to tier 2
  // while tier 1 is at its share), tier 1 to tier 2. Tier sizes are the
  // index's.
  std::vector<DemotionStep> DemotionsDue(const TierShares& shares) const;

  // The byte limit a commit to `name_space` must not pass (a refusing
  // quota), 0 when it has none.
  uint64_t RefusingQuotaFor(const std::string& name_space) const;
  // Where a quota of `quota` bytes for `name_space` comes from, for the
  // message that refuses a write: empty when it is the tenant's own, else
  // a note that the cluster's other members store the rest.
  std::string QuotaNote(const std::string& name_space, uint64_t quota) const;
  // RESOURCE_EXHAUSTED when `name_space` has a refusing quota that storing
  // `added_bytes` more would pass.
  absl::Status CheckQuota(const std::string& name_space,
                          uint64_t added_bytes) const;
  // RESOURCE_EXHAUSTED when `added_bytes` more of model records would pass
  // the quota of `name_space`: with everything it stores under a refusing
  // quota, with its other model records under an evicting one (eviction
  // frees chunks only).
  absl::Status CheckModelQuota(const std::string& name_space,
                               int64_t added_bytes) const;

  // Evicts the leaves valued least until every evicting quota and the
  // capacity hold (taking from the namespace storing the most), in one
  // commit; with tokens-only tiers an evicted leaf keeps its record, and
  // the oldest tokens-only chunks beyond `tokens_only_limit(namespace)`
  // go. The caller holds the trie's writer lock.
  absl::Status Evict();

 private:
  Trie* const trie_;
  NodeIndex* const index_;
  StatsRegistry* const stats_;
  mutable absl::Mutex mutex_;
  std::map<std::string, NamespaceLimit> limits_ ABSL_GUARDED_BY(mutex_);
  uint64_t capacity_bytes_ ABSL_GUARDED_BY(mutex_) = 0;
  TierPolicy default_tiers_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, uint64_t> elsewhere_ ABSL_GUARDED_BY(mutex_);
  uint32_t members_ ABSL_GUARDED_BY(mutex_) = 1;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_RETENTION_H_
