// The numbers the admin endpoint reports, per tenant and in total, as JSON
// and as Prometheus text.
#ifndef SEQKV_SERVER_DASHBOARD_STATS_REPORT_H_
#define SEQKV_SERVER_DASHBOARD_STATS_REPORT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "nlohmann/json.hpp"
#include "server/cache_engine.h"
#include "server/stats.h"

namespace seqkv {

// Bytes a tenant's quota counts: its encoded chunks.
uint64_t UsageBytes(const NamespaceStats& stats);
// The tenant's quota in bytes; 0 means none.
uint64_t QuotaBytes(CacheEngine& engine, const std::string& name_space);

// Counters and usage of every namespace added up.
NamespaceStats SumStats(const std::map<std::string, NamespaceStats>& all);

// One stats object; `quota_bytes` is given for tenants, not for the total.
nlohmann::json StatsObject(const NamespaceStats& stats,
                           std::optional<uint64_t> quota_bytes);

// The /v1/stats document but for "shm" (RegionsJson, region_report.h):
// {"global": {..., "capacity_bytes"}, "memory", "retention", "storage",
// "tenants": {name: {..., "quota_bytes"}}}.
nlohmann::json StatsDocument(CacheEngine& engine);
// One tenant's stats object; nullopt if the server has never seen it.
std::optional<std::string> TenantStatsJson(CacheEngine& engine,
                                           const std::string& tenant);
// The /metrics page in Prometheus text format.
std::string PrometheusMetrics(CacheEngine& engine, bool ready);
// The retention policy and the probabilistic trie's counters.
nlohmann::json RetentionJson(CacheEngine& engine);

}  // namespace seqkv

#endif  // SEQKV_SERVER_DASHBOARD_STATS_REPORT_H_
