// seqkv stats --admin HOST:PORT [--tenant T] [--json] [--admin_token TOKEN]
// Reads the server's admin endpoint and prints its counters as a table.
#include <httplib.h>

#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/command.h"
#include "client/cli/common_flags.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, tenant, "", "stats: one tenant only");
ABSL_FLAG(
    std::string, admin_token, "",
    "admin token, if the admin endpoint needs one (or $SEQKV_ADMIN_TOKEN)");

namespace seqkv::cli {
namespace {

struct HostPort {
  std::string host;
  int port = 0;
};

absl::StatusOr<HostPort> ParseAddress(std::string address) {
  if (absl::StartsWith(address, "http://")) address = address.substr(7);
  while (!address.empty() && address.back() == '/') address.pop_back();
  const size_t colon = address.rfind(':');
  HostPort out;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &out.port) ||
      out.port <= 0 || out.port > 65535)
    return absl::InvalidArgumentError(
        absl::StrCat("--admin must be host:port, got '", address, "'"));
  out.host = address.substr(0, colon);
  if (out.host.size() > 2 && out.host.front() == '[')
    out.host = out.host.substr(1, out.host.size() - 2);
  return out;
}

std::string AdminAddress() {
  const std::string address = absl::GetFlag(FLAGS_admin);
  return address.empty() ? "127.0.0.1:50552" : address;
}

absl::StatusOr<nlohmann::json> AdminGet(const std::string& path) {
  auto address = ParseAddress(AdminAddress());
  if (!address.ok()) return address.status();
  std::string token = absl::GetFlag(FLAGS_admin_token);
  if (token.empty()) {
    if (const char* env = std::getenv("SEQKV_ADMIN_TOKEN")) token = env;
  }
  httplib::Client http(address->host, address->port);
  http.set_connection_timeout(std::chrono::seconds(5));
  http.set_read_timeout(std::chrono::seconds(30));
  httplib::Headers headers;
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
  auto result = http.Get(path, headers);
  if (!result)
    return absl::UnavailableError(
        absl::StrCat("admin endpoint ", AdminAddress(),
                     " unreachable: ", httplib::to_string(result.error())));
  nlohmann::json body = nlohmann::json::parse(result->body, nullptr, false);
  if (result->status != 200) {
    const std::string message = body.is_object() && body.contains("error")
                                    ? body["error"].get<std::string>()
                                    : result->body;
    const absl::StatusCode code =
        result->status == 401   ? absl::StatusCode::kUnauthenticated
        : result->status == 404 ? absl::StatusCode::kNotFound
                                : absl::StatusCode::kUnavailable;
    return absl::Status(code, absl::StrCat("GET ", path, ": HTTP ",
                                           result->status, ": ", message));
  }
  if (body.is_discarded() || !body.is_object())
    return absl::DataLossError(
        absl::StrCat("GET ", path, " did not return a JSON object"));
  return body;
}

std::string Bytes(double bytes) {
  static constexpr const char* kUnits[] = {"B",   "KiB", "MiB",
                                           "GiB", "TiB", "PiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 5) {
    bytes /= 1024;
    ++unit;
  }
  return unit == 0 ? absl::StrFormat("%.0f B", bytes)
                   : absl::StrFormat("%.1f %s", bytes, kUnits[unit]);
}

std::string Ratio(double ratio) {
  return ratio > 0 ? absl::StrFormat("%.2fx", ratio) : "-";
}

std::string Quota(const nlohmann::json& stats) {
  const uint64_t usage = stats.value("usage_bytes", uint64_t{0});
  const uint64_t quota = stats.value("quota_bytes", uint64_t{0});
  if (!stats.contains("quota_bytes")) return "";
  if (quota == 0) return "none";
  return absl::StrFormat("%s of %s (%.1f%%)", Bytes(usage), Bytes(quota),
                         100.0 * usage / quota);
}

std::vector<std::string> Row(const std::string& name, const nlohmann::json& s) {
  auto count = [&](const char* field) {
    return absl::StrCat(s.value(field, uint64_t{0}));
  };
  return {name,
          count("lookups"),
          absl::StrFormat("%.1f%%", 100 * s.value("hit_rate", 0.0)),
          count("puts"),
          count("chunks_stored"),
          count("chunks_deduped"),
          Bytes(s.value("bytes_logical", 0.0)),
          Bytes(s.value("bytes_stored", 0.0)),
          Ratio(s.value("dedup_ratio", 0.0)),
          Ratio(s.value("compression_ratio", 0.0)),
          count("evictions"),
          Quota(s)};
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size(); ++i)
      widths[i] = std::max(widths[i], row[i].size());
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      // The name and the quota read left to right; numbers line up right.
      const bool left = i == 0 || i + 1 == row.size();
      const std::string pad(widths[i] - row[i].size(), ' ');
      absl::StrAppend(&line, i == 0 ? "" : "  ",
                      left ? row[i] + pad : pad + row[i]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::cout << line << "\n";
  }
}

const std::vector<std::string> kHeader = {
    "TENANT",  "LOOKUPS", "HIT RATE", "PUTS",        "CHUNKS",    "DEDUPED",
    "LOGICAL", "STORED",  "DEDUP",    "COMPRESSION", "EVICTIONS", "QUOTA"};

int RunStats(std::span<char* const> args) {
  if (!args.empty()) {
    return kShowUsage;
  }
  const std::string tenant = absl::GetFlag(FLAGS_tenant);
  auto doc = AdminGet(tenant.empty()
                          ? "/v1/stats"
                          : "/v1/tenants/" +
                                httplib::detail::encode_query_param(tenant));
  if (!doc.ok()) return ReportError(doc.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << doc->dump(2) << std::endl;
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {kHeader};
  if (!tenant.empty()) {
    rows.push_back(Row(tenant, *doc));
  } else {
    for (const auto& [name, stats] : (*doc)["tenants"].items())
      rows.push_back(Row(name, stats));
    rows.push_back(Row("(all)", (*doc)["global"]));
  }
  PrintTable(rows);
  return 0;
}

const CommandRegistrar registrar({"stats", RunStats});

}  // namespace
}  // namespace seqkv::cli
