#include "server/dashboard/region_report.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "server/prometheus_label.h"

namespace seqkv {
namespace {

using transport::RegionError;

struct Snapshot {
  size_t regions = 0;
  uint64_t mapped_bytes = 0;
  std::map<std::string, transport::RegionRegistry::TenantRegions> tenants;
  transport::RegionMetrics::Counters counters;
};

Snapshot Take(const transport::RegionRegistry* regions) {
  Snapshot snapshot;
  if (regions == nullptr) return snapshot;
  snapshot.tenants = regions->PerTenant();
  for (const auto& [tenant, entry] : snapshot.tenants) {
    snapshot.regions += entry.regions;
    snapshot.mapped_bytes += entry.mapped_bytes;
  }
  snapshot.counters = regions->metrics().counters();
  return snapshot;
}

}  // namespace

nlohmann::json RegionsJson(const transport::RegionRegistry* regions) {
  const Snapshot s = Take(regions);
  nlohmann::json tenants = nlohmann::json::object();
  for (const auto& [tenant, entry] : s.tenants)
    tenants[tenant] = {{"regions", entry.regions},
                       {"mapped_bytes", entry.mapped_bytes}};
  nlohmann::json errors = nlohmann::json::object();
  for (int kind = 0; kind < transport::kRegionErrorKinds; ++kind)
    errors[transport::RegionErrorName(static_cast<RegionError>(kind))] =
        s.counters.errors[kind];
  return {
      {"enabled", regions != nullptr},     {"regions", s.regions},
      {"mapped_bytes", s.mapped_bytes},    {"tenants", std::move(tenants)},
      {"put_calls", s.counters.put_calls}, {"put_bytes", s.counters.put_bytes},
      {"get_calls", s.counters.get_calls}, {"get_bytes", s.counters.get_bytes},
      {"errors", std::move(errors)}};
}

std::string RegionsPrometheus(const transport::RegionRegistry* regions) {
  const Snapshot s = Take(regions);
  std::string out;
  auto single = [&out](const char* name, const char* type, const char* help,
                       uint64_t value) {
    absl::StrAppend(&out, "# HELP seqkv_shm_", name, " ", help,
                    "\n# TYPE seqkv_shm_", name, " ", type, "\nseqkv_shm_",
                    name, " ", value, "\n");
  };
  single("regions", "gauge",
         "Shared memory regions registered now (--shm_listen).", s.regions);
  single("mapped_bytes", "gauge", "Bytes of the registered regions.",
         s.mapped_bytes);
  absl::StrAppend(&out,
                  "# HELP seqkv_shm_tenant_regions Regions a tenant holds "
                  "now.\n# TYPE seqkv_shm_tenant_regions gauge\n");
  for (const auto& [tenant, entry] : s.tenants)
    absl::StrAppend(&out, "seqkv_shm_tenant_regions{tenant=\"",
                    PrometheusLabelValue(tenant), "\"} ", entry.regions, "\n");
  absl::StrAppend(&out,
                  "# HELP seqkv_shm_tenant_mapped_bytes Bytes of the "
                  "regions a tenant holds now.\n# TYPE "
                  "seqkv_shm_tenant_mapped_bytes gauge\n");
  for (const auto& [tenant, entry] : s.tenants)
    absl::StrAppend(&out, "seqkv_shm_tenant_mapped_bytes{tenant=\"",
                    PrometheusLabelValue(tenant), "\"} ", entry.mapped_bytes,
                    "\n");
  single("put_calls_total", "counter",
         "Puts acknowledged that read their bytes from regions.",
         s.counters.put_calls);
  single("put_bytes_total", "counter", "Bytes those Puts read from regions.",
         s.counters.put_bytes);
  single("get_calls_total", "counter",
         "Gets acknowledged that wrote their data into a region.",
         s.counters.get_calls);
  single("get_bytes_total", "counter", "Bytes those Gets wrote into regions.",
         s.counters.get_bytes);
  absl::StrAppend(&out,
                  "# HELP seqkv_shm_errors_total Region slices refused or "
                  "failed, by kind: bounds (outside the region, or a Get "
                  "that does not fit), ownership (another tenant's), "
                  "region_gone (not registered, or unregistered mid-Get), "
                  "bad_handle.\n# TYPE seqkv_shm_errors_total counter\n");
  for (int kind = 0; kind < transport::kRegionErrorKinds; ++kind)
    absl::StrAppend(&out, "seqkv_shm_errors_total{kind=\"",
                    transport::RegionErrorName(static_cast<RegionError>(kind)),
                    "\"} ", s.counters.errors[kind], "\n");
  return out;
}

}  // namespace seqkv
