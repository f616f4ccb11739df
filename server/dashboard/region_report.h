// The same-host data plane on the admin endpoint: registered regions (in
// all and per tenant), the bytes Puts and Gets moved through them, and the
// slices refused by kind, as /v1/stats JSON and /metrics text.
#ifndef SEQKV_SERVER_DASHBOARD_REGION_REPORT_H_
#define SEQKV_SERVER_DASHBOARD_REGION_REPORT_H_

#include <string>

#include "nlohmann/json.hpp"
#include "transport/region_registry.h"

namespace seqkv {

// /v1/stats "shm": {"enabled", "regions", "mapped_bytes", "tenants": {name:
// {"regions", "mapped_bytes"}}, "put_calls", "put_bytes", "get_calls",
// "get_bytes", "errors": {"bounds", "ownership", "region_gone",
// "bad_handle"}}. `regions` null (no region socket): enabled false, zeros.
nlohmann::json RegionsJson(const transport::RegionRegistry* regions);

// The seqkv_shm_* families of /metrics (zeros without a region socket).
std::string RegionsPrometheus(const transport::RegionRegistry* regions);

}  // namespace seqkv

#endif  // SEQKV_SERVER_DASHBOARD_REGION_REPORT_H_
