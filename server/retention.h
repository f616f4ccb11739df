// Storage limits and what goes when they are exceeded: per-namespace quotas
// (refuse or evict) and the store's capacity, enforced by evicting the least
// recently used leaves. Only leaves go, so a stored prefix is never cut out
// from under the chunks that extend it.
#ifndef SEQKV_SERVER_RETENTION_H_
#define SEQKV_SERVER_RETENTION_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "server/node_index.h"
#include "server/stats.h"
#include "storage/trie.h"

namespace seqkv {

// Storage limit of one namespace (after dedup and compression), counting
// its chunks and the model records of its tenant.
struct NamespaceLimit {
  uint64_t quota_bytes = 0;  // 0: none
  // Over quota: refuse the Put (true) or evict the namespace's least
  // recently used chunks (false).
  bool reject = false;
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

  // The byte limit a commit to `name_space` must not pass (a refusing
  // quota), 0 when it has none.
  uint64_t RefusingQuotaFor(const std::string& name_space) const;
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

  // Evicts least recently used leaves until every evicting quota and the
  // capacity hold (taking from the namespace storing the most), in one
  // commit. The caller holds the trie's writer lock.
  absl::Status Evict();

 private:
  Trie* const trie_;
  NodeIndex* const index_;
  StatsRegistry* const stats_;
  mutable absl::Mutex mutex_;
  std::map<std::string, NamespaceLimit> limits_ ABSL_GUARDED_BY(mutex_);
  uint64_t capacity_bytes_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_RETENTION_H_
