// A ring of periodic stats samples, so a dashboard opened late still shows
// how hit rate, dedup and compression moved.
#ifndef SEQKV_SERVER_DASHBOARD_STATS_HISTORY_H_
#define SEQKV_SERVER_DASHBOARD_STATS_HISTORY_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/stats.h"

namespace seqkv {

struct HistoryPoint {
  double hit_rate = 0;  // since the counters began
  // Over the interval since the previous sample; none without lookups.
  std::optional<double> interval_hit_rate;
  double dedup_ratio = 0;
  double compression_ratio = 0;
  uint64_t usage_bytes = 0;
  uint64_t quota_bytes = 0;
  uint64_t lookups = 0;
  uint64_t puts = 0;
  // Cumulative, so a reader can compute the hit rate over any window.
  uint64_t lookup_tokens = 0;
  uint64_t hit_tokens = 0;
};

struct HistorySample {
  int64_t unix_ms = 0;
  HistoryPoint global;
  std::vector<std::pair<std::string, HistoryPoint>> tenants;
};

class StatsHistory {
 public:
  // Keeps the last `capacity` samples of at most `max_tenants` tenants each
  // (those storing the most bytes), so memory stays bounded.
  StatsHistory(size_t capacity, size_t max_tenants);

  // `quotas` maps a tenant to its quota in bytes (missing: none).
  void Record(int64_t unix_ms, const std::map<std::string, NamespaceStats>& all,
              const std::map<std::string, uint64_t>& quotas);

  // {"capacity": N, "samples": [{"t": unix_ms, "global": {...},
  // "tenants": {name: {...}}}]}, samples taken after `since_unix_ms` only.
  std::string Json(int64_t since_unix_ms) const;

 private:
  // Counters a sample remembers to compute the next interval's hit rate.
  struct LookupCounters {
    uint64_t lookup_tokens = 0;
    uint64_t hit_tokens = 0;
  };
  HistoryPoint Point(const NamespaceStats& stats, uint64_t quota_bytes,
                     const std::string& key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const size_t capacity_;
  const size_t max_tenants_;
  mutable absl::Mutex mutex_;
  std::deque<HistorySample> samples_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, LookupCounters> previous_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_DASHBOARD_STATS_HISTORY_H_
