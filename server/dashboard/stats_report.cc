#include "server/dashboard/stats_report.h"

#include <unistd.h>

#include <fstream>
#include <functional>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "server/prometheus_label.h"

namespace seqkv {
namespace {

// The process's resident set, from /proc/self/statm (0 where unreadable).
uint64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t total_pages = 0, resident_pages = 0;
  if (!(statm >> total_pages >> resident_pages)) return 0;
  return resident_pages * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

uint64_t UsageBytes(const NamespaceStats& stats) {
  return static_cast<uint64_t>(
      std::max<int64_t>(0, stats.usage.charged_bytes()));
}

uint64_t QuotaBytes(CacheEngine& engine, const std::string& name_space) {
  return engine.QuotaFor(name_space);
}

NamespaceStats SumStats(const std::map<std::string, NamespaceStats>& all) {
  NamespaceStats total;
  total.name = "global";
  auto& t = total.counters;
  for (const auto& [name, s] : all) {
    const auto& c = s.counters;
    t.set_lookups(t.lookups() + c.lookups());
    t.set_lookup_tokens(t.lookup_tokens() + c.lookup_tokens());
    t.set_hit_tokens(t.hit_tokens() + c.hit_tokens());
    t.set_puts(t.puts() + c.puts());
    t.set_put_tokens(t.put_tokens() + c.put_tokens());
    t.set_gets(t.gets() + c.gets());
    t.set_get_tokens(t.get_tokens() + c.get_tokens());
    t.set_chunks_deduped(t.chunks_deduped() + c.chunks_deduped());
    t.set_put_bytes_logical(t.put_bytes_logical() + c.put_bytes_logical());
    t.set_put_bytes_new(t.put_bytes_new() + c.put_bytes_new());
    t.set_evictions(t.evictions() + c.evictions());
    t.set_chunks_quarantined(t.chunks_quarantined() + c.chunks_quarantined());
    t.set_tokens_new(t.tokens_new() + c.tokens_new());
    t.set_tokens_deduped(t.tokens_deduped() + c.tokens_deduped());
    t.set_tokens_split_deduped(t.tokens_split_deduped() +
                               c.tokens_split_deduped());
    t.set_tokens_cross_prefix(t.tokens_cross_prefix() +
                              c.tokens_cross_prefix());
    t.set_put_bytes_stored(t.put_bytes_stored() + c.put_bytes_stored());
    t.set_chunks_with_references(t.chunks_with_references() +
                                 c.chunks_with_references());
    t.set_reference_bytes_logical(t.reference_bytes_logical() +
                                  c.reference_bytes_logical());
    t.set_reference_bytes_stored(t.reference_bytes_stored() +
                                 c.reference_bytes_stored());
    total.usage.chunks_stored += s.usage.chunks_stored;
    total.usage.bytes_logical += s.usage.bytes_logical;
    total.usage.bytes_stored += s.usage.bytes_stored;
    total.usage.bytes_models += s.usage.bytes_models;
  }
  return total;
}

nlohmann::json StatsObject(const NamespaceStats& stats,
                           std::optional<uint64_t> quota_bytes) {
  const auto& c = stats.counters;
  nlohmann::json object = {
      {"lookups", c.lookups()},
      {"lookup_tokens", c.lookup_tokens()},
      {"hit_tokens", c.hit_tokens()},
      {"hit_rate", stats.hit_rate()},
      {"puts", c.puts()},
      {"put_tokens", c.put_tokens()},
      {"gets", c.gets()},
      {"get_tokens", c.get_tokens()},
      {"chunks_stored", stats.usage.chunks_stored},
      {"chunks_deduped", c.chunks_deduped()},
      {"bytes_logical", stats.usage.bytes_logical},
      {"bytes_stored", stats.usage.bytes_stored},
      {"model_bytes", stats.usage.bytes_models},
      {"put_bytes_logical", c.put_bytes_logical()},
      {"dedup_ratio", stats.dedup_ratio()},
      {"compression_ratio", stats.compression_ratio()},
      {"evictions", c.evictions()},
      {"chunks_quarantined", c.chunks_quarantined()},
      {"usage_bytes", UsageBytes(stats)},
      {"reuse",
       {{"tokens_new", c.tokens_new()},
        {"tokens_deduped", c.tokens_deduped()},
        {"tokens_split_deduped", c.tokens_split_deduped()},
        {"tokens_cross_prefix", c.tokens_cross_prefix()},
        {"chunks_with_references", c.chunks_with_references()},
        {"reference_bytes_logical", c.reference_bytes_logical()},
        {"reference_bytes_stored", c.reference_bytes_stored()},
        {"reference_bytes_saved_estimate",
         static_cast<int64_t>(stats.reference_bytes_saved())}}},
  };
  if (quota_bytes) object["quota_bytes"] = *quota_bytes;
  return object;
}

// Chunks and bytes per fidelity tier, by the names /v1/stats uses.
nlohmann::json TiersJson(const TierUsage (&tiers)[kTokensOnlyTier + 1]) {
  nlohmann::json json = nlohmann::json::object();
  for (uint32_t tier = 0; tier <= kTokensOnlyTier; ++tier)
    json[std::string(TierName(tier))] = {{"chunks", tiers[tier].chunks},
                                         {"bytes", tiers[tier].bytes}};
  return json;
}

nlohmann::json RetentionJson(CacheEngine& engine) {
  NodeIndex& index = engine.index();
  nlohmann::json namespaces = nlohmann::json::object();
  TierUsage total[kTokensOnlyTier + 1];
  uint64_t demotions = 0, ghost_hits = 0, readmissions = 0;
  for (const auto& [name, stats] : index.Stats()) {
    namespaces[name] = {
        {"lookups", stats.lookups},
        {"chunks_inserted", stats.chunks_inserted},
        {"readmissions", stats.readmissions},
        {"demotions", stats.demotions},
        {"ghost_hits", stats.ghost_hits},
        {"tier_policy", TierPolicyName(engine.retention().TiersFor(name))},
        {"tiers", TiersJson(stats.tiers)}};
    for (uint32_t tier = 0; tier <= kTokensOnlyTier; ++tier) {
      total[tier].chunks += stats.tiers[tier].chunks;
      total[tier].bytes += stats.tiers[tier].bytes;
    }
    demotions += stats.demotions;
    ghost_hits += stats.ghost_hits;
    readmissions += stats.readmissions;
  }
  return {
      {"policy", index.retention() == RetentionPolicy::kPlt ? "plt" : "lru"},
      {"tier_policy", TierPolicyName(engine.options().tiers)},
      {"tier_shares",
       {{"exact", engine.options().demotion.shares.exact},
        {"lossy_1", engine.options().demotion.shares.lossy_1}}},
      {"ghosts", index.ghost_count()},
      {"tiers", TiersJson(total)},
      {"demotions", demotions},
      {"ghost_hits", ghost_hits},
      {"readmissions", readmissions},
      // p̂(reuse) of a chunk seen 1, 2, ... times: what retention learned.
      {"reuse_probability",
       {{"whole", index.ReuseProbabilities(/*partial=*/false)},
        {"partial", index.ReuseProbabilities(/*partial=*/true)}}},
      {"namespaces", std::move(namespaces)}};
}

nlohmann::json StatsDocument(CacheEngine& engine) {
  const auto all = engine.stats().SnapshotAll();
  nlohmann::json doc;
  doc["global"] = StatsObject(SumStats(all), std::nullopt);
  doc["global"]["capacity_bytes"] = engine.capacity_bytes();
  doc["memory"] = {
      {"resident_bytes", ResidentBytes()},
      {"chunk_buffers_idle_bytes", engine.chunk_buffers_idle_bytes()},
      {"idle_releases", engine.idle_releases()},
      {"budget_bytes", engine.memory_budget().limit_bytes()},
      {"reserved_bytes", engine.memory_budget().reserved_bytes()},
      {"peak_reserved_bytes", engine.memory_budget().peak_bytes()},
      {"budget_refusals", engine.memory_budget().refusals()},
  };
  const DecodedChunkCache::Counts decoded = engine.decoded_chunks();
  doc["memory"]["decoded_chunk_cache"] = {{"bytes", decoded.bytes},
                                          {"hits", decoded.hits},
                                          {"misses", decoded.misses}};
  doc["retention"] = RetentionJson(engine);
  const StoreHealth health = engine.storage_health();
  doc["storage"] = {
      {"writable", health.writable},
      {"write_refusal", health.write_refusal},
      {"damage", health.damage},
      {"disk_free_bytes", health.free_bytes},
      {"disk_required_free_bytes", health.required_free_bytes},
  };
  doc["tenants"] = nlohmann::json::object();
  for (const auto& [name, stats] : all)
    doc["tenants"][name] = StatsObject(stats, QuotaBytes(engine, name));
  return doc;
}

std::optional<std::string> TenantStatsJson(CacheEngine& engine,
                                           const std::string& tenant) {
  // SnapshotAll, not Snapshot: asking about a name must not create it.
  const auto all = engine.stats().SnapshotAll();
  const auto found = all.find(tenant);
  if (found == all.end()) return std::nullopt;
  nlohmann::json object =
      StatsObject(found->second, QuotaBytes(engine, tenant));
  object["tenant"] = tenant;
  return object.dump(2);
}

std::string PrometheusMetrics(CacheEngine& engine, bool ready) {
  const auto all = engine.stats().SnapshotAll();
  std::map<std::string, uint64_t> quotas;
  for (const auto& [tenant, stats] : all)
    quotas[tenant] = QuotaBytes(engine, tenant);
  std::string out;
  absl::StrAppend(&out,
                  "# HELP seqkv_ready Whether the server accepts calls.\n"
                  "# TYPE seqkv_ready gauge\nseqkv_ready ",
                  ready ? 1 : 0, "\n");
  const StoreHealth health = engine.storage_health();
  absl::StrAppend(
      &out,
      "# HELP seqkv_writable Whether the store takes writes (not on a full "
      "disk or damaged data).\n# TYPE seqkv_writable gauge\nseqkv_writable ",
      health.writable ? 1 : 0, "\n",
      "# HELP seqkv_storage_damaged Whether damaged data made the store "
      "read-only.\n# TYPE seqkv_storage_damaged gauge\n"
      "seqkv_storage_damaged ",
      health.damage.empty() ? 0 : 1, "\n",
      "# HELP seqkv_disk_free_bytes Free bytes on the data directory's disk "
      "at the last write.\n# TYPE seqkv_disk_free_bytes gauge\n"
      "seqkv_disk_free_bytes ",
      health.free_bytes, "\n");
  absl::StrAppend(&out,
                  "# HELP seqkv_capacity_bytes Bytes the whole store may hold "
                  "(0: unlimited).\n# TYPE seqkv_capacity_bytes gauge\n"
                  "seqkv_capacity_bytes ",
                  engine.capacity_bytes(), "\n");
  absl::StrAppend(
      &out,
      "# HELP seqkv_resident_bytes Resident memory of the server process.\n"
      "# TYPE seqkv_resident_bytes gauge\nseqkv_resident_bytes ",
      ResidentBytes(), "\n",
      "# HELP seqkv_chunk_buffers_idle_bytes Idle chunk buffers kept for "
      "the next Puts.\n# TYPE seqkv_chunk_buffers_idle_bytes gauge\n"
      "seqkv_chunk_buffers_idle_bytes ",
      engine.chunk_buffers_idle_bytes(), "\n",
      "# HELP seqkv_idle_releases_total Times the server went idle and gave "
      "its freed memory back.\n# TYPE seqkv_idle_releases_total counter\n"
      "seqkv_idle_releases_total ",
      engine.idle_releases(), "\n",
      "# HELP seqkv_memory_budget_bytes Memory requests may hold at once "
      "(--memory_budget_bytes).\n# TYPE seqkv_memory_budget_bytes gauge\n"
      "seqkv_memory_budget_bytes ",
      engine.memory_budget().limit_bytes(), "\n",
      "# HELP seqkv_memory_reserved_bytes Memory requests hold now.\n"
      "# TYPE seqkv_memory_reserved_bytes gauge\nseqkv_memory_reserved_bytes ",
      engine.memory_budget().reserved_bytes(), "\n",
      "# HELP seqkv_memory_budget_refusals_total Requests refused for want of "
      "memory budget.\n# TYPE seqkv_memory_budget_refusals_total counter\n"
      "seqkv_memory_budget_refusals_total ",
      engine.memory_budget().refusals(), "\n",
      "# HELP seqkv_ghost_chunks Removed chunks whose statistics the "
      "probabilistic trie remembers.\n# TYPE seqkv_ghost_chunks gauge\n"
      "seqkv_ghost_chunks ",
      engine.index().ghost_count(), "\n");
  if (const auto retention = engine.index().Stats(); !retention.empty()) {
    auto counter = [&](absl::string_view name, absl::string_view help,
                       auto value_of) {
      absl::StrAppend(&out, "# HELP seqkv_", name, " ", help, "\n# TYPE seqkv_",
                      name, " counter\n");
      for (const auto& [tenant, stats] : retention)
        absl::StrAppend(&out, "seqkv_", name, "{tenant=\"",
                        PrometheusLabelValue(tenant), "\"} ", value_of(stats),
                        "\n");
    };
    using R = const RetentionStats&;
    counter("readmissions_total",
            "Chunks stored again while their statistics were remembered.",
            [](R r) { return r.readmissions; });
    counter("demotions_total", "Chunks re-encoded to a lossier fidelity tier.",
            [](R r) { return r.demotions; });
    counter("ghost_hits_total",
            "Lookups whose match went on into chunks held as tokens only.",
            [](R r) { return r.ghost_hits; });
    for (const auto& [metric, help, bytes] :
         {std::tuple{"seqkv_tier_chunks", "Chunks held at each fidelity tier.",
                     false},
          std::tuple{"seqkv_tier_bytes",
                     "Stored bytes of the chunks at each fidelity tier.",
                     true}}) {
      absl::StrAppend(&out, "# HELP ", metric, " ", help, "\n# TYPE ", metric,
                      " gauge\n");
      for (const auto& [name, stats] : retention)
        for (uint32_t tier = 0; tier <= kTokensOnlyTier; ++tier)
          absl::StrAppend(
              &out, metric, "{tenant=\"", PrometheusLabelValue(name),
              "\",tier=\"", TierName(tier), "\"} ",
              bytes ? stats.tiers[tier].bytes : stats.tiers[tier].chunks, "\n");
    }
  }
  auto family = [&](absl::string_view name, absl::string_view type,
                    absl::string_view help, auto value_of) {
    absl::StrAppend(&out, "# HELP seqkv_", name, " ", help, "\n# TYPE seqkv_",
                    name, " ", type, "\n");
    for (const auto& [tenant, stats] : all)
      absl::StrAppend(&out, "seqkv_", name, "{tenant=\"",
                      PrometheusLabelValue(tenant), "\"} ", value_of(stats),
                      "\n");
  };
  using S = const NamespaceStats&;
  family("lookups_total", "counter", "Lookup calls.",
         [](S s) { return s.counters.lookups(); });
  family("lookup_tokens_total", "counter", "Tokens asked for by lookups.",
         [](S s) { return s.counters.lookup_tokens(); });
  family("hit_tokens_total", "counter", "Tokens lookups found stored.",
         [](S s) { return s.counters.hit_tokens(); });
  family("puts_total", "counter", "Put calls that committed.",
         [](S s) { return s.counters.puts(); });
  family("put_tokens_total", "counter", "Tokens received by Puts.",
         [](S s) { return s.counters.put_tokens(); });
  family("put_bytes_logical_total", "counter",
         "Uncompressed bytes received by Puts, duplicates included.",
         [](S s) { return s.counters.put_bytes_logical(); });
  family("gets_total", "counter", "Get calls served.",
         [](S s) { return s.counters.gets(); });
  family("get_tokens_total", "counter", "Tokens returned by Gets.",
         [](S s) { return s.counters.get_tokens(); });
  family("chunks_deduped_total", "counter", "Chunks Puts found already stored.",
         [](S s) { return s.counters.chunks_deduped(); });
  family("tokens_split_deduped_total", "counter",
         "Tokens Puts copied from a stored chunk's head under the same prefix.",
         [](S s) { return s.counters.tokens_split_deduped(); });
  family("tokens_cross_prefix_total", "counter",
         "Tokens Puts coded against the same tokens stored after another "
         "prefix.",
         [](S s) { return s.counters.tokens_cross_prefix(); });
  family("evictions_total", "counter", "Chunks evicted.",
         [](S s) { return s.counters.evictions(); });
  family("chunks_quarantined_total", "counter",
         "Chunks a Get found damaged and removed.",
         [](S s) { return s.counters.chunks_quarantined(); });
  family("chunks_stored", "gauge", "Chunks stored now.",
         [](S s) { return s.usage.chunks_stored; });
  family("bytes_logical", "gauge", "Uncompressed bytes of the stored chunks.",
         [](S s) { return s.usage.bytes_logical; });
  family("bytes_stored", "gauge", "Encoded bytes of the stored chunks.",
         [](S s) { return s.usage.bytes_stored; });
  family("usage_bytes", "gauge", "Bytes counted against the tenant's quota.",
         [](S s) { return UsageBytes(s); });
  family("quota_bytes", "gauge", "The tenant's quota in bytes (0: none).",
         [&](S s) { return quotas[s.name]; });
  family("hit_rate", "gauge",
         "Hit tokens over lookup tokens since the counters began.",
         [](S s) { return s.hit_rate(); });
  family("dedup_ratio", "gauge",
         "Logical bytes put over logical bytes stored anew.",
         [](S s) { return s.dedup_ratio(); });
  family("compression_ratio", "gauge",
         "Logical bytes over encoded bytes of the stored chunks.",
         [](S s) { return s.compression_ratio(); });
  return out;
}

}  // namespace seqkv
