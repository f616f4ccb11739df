#include "server/dashboard/stats_history.h"

#include <algorithm>

#include "nlohmann/json.hpp"
#include "server/dashboard/stats_report.h"

namespace seqkv {
namespace {

// The global series is remembered under a key no tenant can have.
constexpr char kGlobalKey[] = "\0global";

nlohmann::json PointJson(const HistoryPoint& point) {
  nlohmann::json json = {
      {"hit_rate", point.hit_rate},
      {"interval_hit_rate", nullptr},
      {"dedup_ratio", point.dedup_ratio},
      {"compression_ratio", point.compression_ratio},
      {"usage_bytes", point.usage_bytes},
      {"quota_bytes", point.quota_bytes},
      {"lookups", point.lookups},
      {"puts", point.puts},
      {"lookup_tokens", point.lookup_tokens},
      {"hit_tokens", point.hit_tokens},
  };
  if (point.interval_hit_rate)
    json["interval_hit_rate"] = *point.interval_hit_rate;
  return json;
}

}  // namespace

StatsHistory::StatsHistory(size_t capacity, size_t max_tenants)
    : capacity_(std::max<size_t>(1, capacity)), max_tenants_(max_tenants) {}

HistoryPoint StatsHistory::Point(const NamespaceStats& stats,
                                 uint64_t quota_bytes, const std::string& key) {
  HistoryPoint point;
  point.hit_rate = stats.hit_rate();
  point.dedup_ratio = stats.dedup_ratio();
  point.compression_ratio = stats.compression_ratio();
  point.usage_bytes = UsageBytes(stats);
  point.quota_bytes = quota_bytes;
  point.lookups = stats.counters.lookups();
  point.puts = stats.counters.puts();
  point.lookup_tokens = stats.counters.lookup_tokens();
  point.hit_tokens = stats.counters.hit_tokens();
  const LookupCounters now{stats.counters.lookup_tokens(),
                           stats.counters.hit_tokens()};
  // A namespace first seen after the first sample started from zero since
  // the previous one; at the first sample, nothing is known of the interval.
  const auto found = previous_.find(key);
  if (found != previous_.end() || !samples_.empty()) {
    const LookupCounters before =
        found != previous_.end() ? found->second : LookupCounters{};
    if (now.lookup_tokens > before.lookup_tokens &&
        now.hit_tokens >= before.hit_tokens)
      point.interval_hit_rate =
          static_cast<double>(now.hit_tokens - before.hit_tokens) /
          static_cast<double>(now.lookup_tokens - before.lookup_tokens);
  }
  previous_[key] = now;
  return point;
}

void StatsHistory::Record(int64_t unix_ms,
                          const std::map<std::string, NamespaceStats>& all,
                          const std::map<std::string, uint64_t>& quotas) {
  std::vector<const NamespaceStats*> kept;
  for (const auto& [name, stats] : all) kept.push_back(&stats);
  if (kept.size() > max_tenants_) {
    std::partial_sort(kept.begin(), kept.begin() + max_tenants_, kept.end(),
                      [](const NamespaceStats* a, const NamespaceStats* b) {
                        return a->usage.bytes_stored > b->usage.bytes_stored;
                      });
    kept.resize(max_tenants_);
    std::sort(kept.begin(), kept.end(),
              [](const NamespaceStats* a, const NamespaceStats* b) {
                return a->name < b->name;
              });
  }
  absl::MutexLock lock(&mutex_);
  HistorySample sample;
  sample.unix_ms = unix_ms;
  sample.global = Point(SumStats(all), 0, std::string(kGlobalKey, 7));
  for (const NamespaceStats* stats : kept) {
    const auto quota = quotas.find(stats->name);
    sample.tenants.emplace_back(
        stats->name,
        Point(*stats, quota == quotas.end() ? 0 : quota->second, stats->name));
  }
  samples_.push_back(std::move(sample));
  while (samples_.size() > capacity_) samples_.pop_front();
}

std::string StatsHistory::Json(int64_t since_unix_ms) const {
  nlohmann::json doc;
  doc["capacity"] = capacity_;
  doc["samples"] = nlohmann::json::array();
  absl::MutexLock lock(&mutex_);
  for (const HistorySample& sample : samples_) {
    if (sample.unix_ms <= since_unix_ms) continue;
    nlohmann::json tenants = nlohmann::json::object();
    for (const auto& [name, point] : sample.tenants)
      tenants[name] = PointJson(point);
    doc["samples"].push_back({{"t", sample.unix_ms},
                              {"global", PointJson(sample.global)},
                              {"tenants", std::move(tenants)}});
  }
  return doc.dump();
}

}  // namespace seqkv
