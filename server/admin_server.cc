#include "server/admin_server.h"

#include <httplib.h>

#include <chrono>
#include <cmath>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "server/dashboard/assets.h"
#include "server/dashboard/region_report.h"
#include "server/dashboard/stats_report.h"
#include "server/dashboard/top_prefixes.h"

ABSL_FLAG(absl::Duration, admin_history_interval, absl::Seconds(5),
          "how often the admin endpoint samples stats for /v1/history and the "
          "dashboard's charts (at least 100ms)");
ABSL_FLAG(uint32_t, admin_history_samples, 720,
          "stats samples /v1/history keeps (720 at 5s: one hour)");

namespace seqkv {
namespace {

constexpr size_t kDefaultTopPrefixes = 20;
constexpr size_t kFirstTokensShown = 8;
constexpr absl::Duration kShortestInterval = absl::Milliseconds(100);

void SendJson(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

void SendError(httplib::Response& res, int status, const std::string& message) {
  SendJson(res, status, nlohmann::json({{"error", message}}).dump());
}

int64_t NowMillis() { return absl::ToUnixMillis(absl::Now()); }

std::string HexOrEmpty(const std::string& key_bytes) {
  return key_bytes.size() == NodeKey::kSize
             ? NodeKey::FromBytes(key_bytes).Hex()
             : "";
}

// -log2 of a probability, or null where it is 0 (never looked up).
nlohmann::json DistanceJson(double probability) {
  if (!(probability > 0)) return nullptr;
  return probability >= 1 ? 0.0 : -std::log2(probability);
}

// "1,2,3" → token ids.
absl::StatusOr<std::vector<int32_t>> ParseTokenList(const std::string& name,
                                                    const std::string& text) {
  std::vector<int32_t> tokens;
  for (absl::string_view piece : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int32_t token = 0;
    if (!absl::SimpleAtoi(piece, &token))
      return absl::InvalidArgumentError(
          absl::StrCat(name, " must be comma-separated token ids, got '",
                       std::string(piece.substr(0, 32)), "'"));
    tokens.push_back(token);
  }
  return tokens;
}

nlohmann::json PrefixJson(const PrefixVisits& prefix, double probability) {
  const NodeRecord& record = prefix.record;
  nlohmann::json first_tokens = nlohmann::json::array();
  for (int i = 0; i < record.tokens_size() && i < int{kFirstTokensShown}; ++i)
    first_tokens.push_back(record.tokens(i));
  return {
      {"node", prefix.key.Hex()},
      {"parent", HexOrEmpty(record.parent_key())},
      {"namespace", record.namespace_()},
      {"model", record.model()},
      {"depth", record.depth()},
      {"first_position", record.first_position()},
      {"prefix_tokens", record.first_position() + record.tokens_size()},
      {"tokens", record.tokens_size()},
      {"first_tokens", std::move(first_tokens)},
      {"visits", prefix.visits},
      {"last_used_unix_ms", prefix.last_used_micros / 1000},
      {"bytes_logical", record.bytes_logical()},
      {"bytes_stored", record.bytes_stored()},
      {"codec", record.codec()},
      {"tier", TierName(TierOf(record))},
      {"probability", probability},
      {"d_T", DistanceJson(probability)},
  };
}

// Routes anyone may read: health probes and the dashboard's static files
// (they hold no data; the page asks for the token before it fetches any).
bool IsPublic(const std::string& path) {
  return path == "/healthz" || path == "/readyz" || path == "/" ||
         path == "/index.html" || absl::StartsWith(path, "/static/");
}

// "host:port" of a listen flag; IPv6 hosts may be bracketed ("[::]:80").
absl::Status ParseHostPort(const std::string& flag, const std::string& address,
                           std::string& host, int& port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535)
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " must be host:port, got '", address, "'"));
  host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[')
    host = host.substr(1, host.size() - 2);
  return absl::OkStatus();
}

// The probes: liveness (the process answers) and readiness (the store is
// open and the gRPC server accepts calls).
// /readyz is 503 while the store refuses writes (a full disk, damaged
// data): reads go on, but a Put sent here would fail.
void AddProbeRoutes(httplib::Server& http, const std::atomic<bool>& ready,
                    const CacheEngine& engine,
                    const std::function<std::string()>& cluster_note) {
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  http.Get("/readyz", [&ready, &engine, &cluster_note](const httplib::Request&,
                                                       httplib::Response& res) {
    if (!ready) {
      res.status = 503;
      res.set_content("starting\n", "text/plain");
      return;
    }
    const StoreHealth health = engine.storage_health();
    res.status = health.writable ? 200 : 503;
    std::string body =
        health.writable
            ? std::string("ready\n")
            : absl::StrCat("read-only: ", health.write_refusal, "\n");
    // Still ready: a node without etcd serves with the last membership.
    if (cluster_note)
      if (const std::string note = cluster_note(); !note.empty())
        absl::StrAppend(&body, note, "\n");
    res.set_content(body, "text/plain");
  });
}

const DashboardAsset* FindAsset(std::string_view path) {
  for (const DashboardAsset& asset : DashboardAssets())
    if (asset.url_path == path) return &asset;
  return nullptr;
}

}  // namespace

AdminServerOptions AdminServerOptionsFromFlags() {
  AdminServerOptions options;
  options.history_interval = absl::GetFlag(FLAGS_admin_history_interval);
  options.history_samples = absl::GetFlag(FLAGS_admin_history_samples);
  return options;
}

AdminServer::AdminServer(CacheEngine* engine, AdminServerOptions options)
    : engine_(engine),
      options_(options),
      history_(options.history_samples, options.history_tenants),
      http_(std::make_unique<httplib::Server>()) {
  Routes();
}

AdminServer::~AdminServer() { Stop(); }

void AdminServer::Routes() {
  http_->set_default_headers({
      {"Cache-Control", "no-store"},
      {"X-Content-Type-Options", "nosniff"},
      {"X-Frame-Options", "DENY"},
      {"Content-Security-Policy",
       "default-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; frame-ancestors 'none'"},
  });
  http_->set_payload_max_length(64 << 10);
  http_->set_read_timeout(std::chrono::seconds(10));
  http_->set_write_timeout(std::chrono::seconds(10));

  http_->set_pre_routing_handler([this](const httplib::Request& req,
                                        httplib::Response& res) {
    if (!token_.required() || IsPublic(req.path))
      return httplib::Server::HandlerResponse::Unhandled;
    const auto presented = BearerToken(req.get_header_value("Authorization"));
    if (presented && token_.Matches(*presented))
      return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer realm=\"seqkv-admin\"");
    SendError(res, 401,
              presented ? "the admin token does not match"
                        : "this endpoint needs \"Authorization: Bearer "
                          "<admin token>\"");
    return httplib::Server::HandlerResponse::Handled;
  });
  http_->set_error_handler(
      [](const httplib::Request& req, httplib::Response& res) {
        if (res.body.empty())
          SendError(res, res.status,
                    absl::StrCat("no route ", req.method, " ", req.path));
      });

  AddProbeRoutes(*http_, ready_, *engine_, options_.cluster_health_note);
  http_->Get(
      "/v1/cluster", [this](const httplib::Request&, httplib::Response& res) {
        const std::string json =
            options_.cluster_json ? options_.cluster_json() : "";
        if (!options_.cluster_json) {
          SendError(res, 404, "this node is not in a cluster (--cluster_etcd)");
        } else if (json.empty()) {
          SendError(res, 503, "not registered in the cluster yet");
        } else {
          res.set_content(json, "application/json");
        }
      });
  http_->Get("/v1/stats",
             [this](const httplib::Request&, httplib::Response& res) {
               nlohmann::json doc = StatsDocument(*engine_);
               doc["shm"] = RegionsJson(options_.regions);
               SendJson(res, 200, doc.dump(2));
             });
  http_->Get("/v1/tenants/([^/]+)", [this](const httplib::Request& req,
                                           httplib::Response& res) {
    const std::string tenant = req.matches[1];
    auto json = TenantStatsJson(*engine_, tenant);
    if (!json) {
      SendError(res, 404, absl::StrCat("unknown tenant '", tenant, "'"));
      return;
    }
    SendJson(res, 200, *json);
  });
  http_->Get("/v1/trie", [this](const httplib::Request& req,
                                httplib::Response& res) {
    size_t top = kDefaultTopPrefixes;
    if (req.has_param("top")) {
      const std::string text = req.get_param_value("top");
      if (!absl::SimpleAtoi(text, &top) || top == 0 || top > kMaxTopPrefixes) {
        SendError(res, 400,
                  absl::StrCat("top must be an integer in [1, ",
                               kMaxTopPrefixes, "], got '", text, "'"));
        return;
      }
    }
    const std::string tenant = req.get_param_value("tenant");
    if (!tenant.empty() && !engine_->stats().SnapshotAll().contains(tenant)) {
      SendError(res, 404, absl::StrCat("unknown tenant '", tenant, "'"));
      return;
    }
    engine_->FlushVisits();  // count the lookups made so far
    auto report = FindTopPrefixes(engine_->trie(), tenant, top);
    if (!report.ok()) {
      SendError(res, 500, std::string(report.status().ToString()));
      return;
    }
    nlohmann::json doc = {{"tenant", tenant},
                          {"top", top},
                          {"nodes_scanned", report->nodes_scanned},
                          {"prefixes", nlohmann::json::array()}};
    for (const PrefixVisits& prefix : report->prefixes)
      doc["prefixes"].push_back(
          PrefixJson(prefix, engine_->index().Probability(prefix.key)));
    SendJson(res, 200, doc.dump(2));
  });
  // d_T(a, b) = -log2 P̂(the stored part of their longest common prefix).
  http_->Get("/v1/trie/distance", [this](const httplib::Request& req,
                                         httplib::Response& res) {
    const std::string tenant = req.get_param_value("tenant");
    const std::string model = req.get_param_value("model");
    if (tenant.empty() || model.empty() || !req.has_param("a") ||
        !req.has_param("b")) {
      SendError(res, 400,
                "give tenant, model, and two token lists a and b (comma-"
                "separated ids)");
      return;
    }
    auto a = ParseTokenList("a", req.get_param_value("a"));
    auto b = ParseTokenList("b", req.get_param_value("b"));
    if (!a.ok() || !b.ok()) {
      SendError(res, 400,
                std::string((a.ok() ? b.status() : a.status()).message()));
      return;
    }
    size_t common = 0;
    while (common < a->size() && common < b->size() &&
           (*a)[common] == (*b)[common])
      ++common;
    engine_->FlushVisits();  // count the lookups made so far
    auto prefix = engine_->ProbabilityOf(
        tenant, model, std::span<const int32_t>(a->data(), common));
    if (!prefix.ok()) {
      SendError(
          res,
          prefix.status().code() == absl::StatusCode::kNotFound ? 404 : 400,
          std::string(prefix.status().message()));
      return;
    }
    nlohmann::json doc = {{"tenant", tenant},
                          {"model", model},
                          {"common_tokens", common},
                          {"stored_tokens", prefix->matched_tokens},
                          {"probability", prefix->probability},
                          {"d_T", DistanceJson(prefix->probability)}};
    SendJson(res, 200, doc.dump(2));
  });
  http_->Get("/v1/history", [this](const httplib::Request& req,
                                   httplib::Response& res) {
    int64_t since = 0;
    if (req.has_param("since") &&
        !absl::SimpleAtoi(req.get_param_value("since"), &since)) {
      SendError(res, 400,
                absl::StrCat("since must be unix milliseconds, got '",
                             req.get_param_value("since"), "'"));
      return;
    }
    SendJson(res, 200, history_.Json(since));
  });
  http_->Get("/metrics",
             [this](const httplib::Request&, httplib::Response& res) {
               std::string text = PrometheusMetrics(*engine_, ready_);
               if (options_.rpc_metrics != nullptr)
                 text += options_.rpc_metrics->PrometheusText();
               if (options_.streams != nullptr)
                 text += StreamMetrics(*options_.streams);
               text += RegionsPrometheus(options_.regions);
               if (options_.cluster_metrics) text += options_.cluster_metrics();
               res.set_content(text, "text/plain; version=0.0.4");
             });
  auto serve_asset = [](const httplib::Request& req, httplib::Response& res) {
    const DashboardAsset* asset =
        FindAsset(req.path == "/index.html" ? "/" : req.path);
    if (asset == nullptr) {
      SendError(res, 404, absl::StrCat("no file ", req.path));
      return;
    }
    res.set_content(asset->body.data(), asset->body.size(),
                    std::string(asset->content_type).c_str());
  };
  http_->Get("/", serve_asset);
  http_->Get("/index\\.html", serve_asset);
  http_->Get("/static/[A-Za-z0-9_.-]+", serve_asset);
}

absl::Status AdminServer::Start(const std::string& address,
                                std::string admin_token_sha256) {
  std::string host;
  int port = 0;
  if (auto status = ParseHostPort("--admin_listen", address, host, port);
      !status.ok())
    return status;
  auto token = AdminToken::FromSha256Hex(admin_token_sha256);
  if (!token.ok()) return token.status();
  if (!token->required() && !IsLoopbackHost(host))
    return absl::FailedPreconditionError(absl::StrCat(
        "admin address '", address,
        "' is reachable from other machines: configure an admin token "
        "(its sha256) or listen on loopback (127.0.0.1:PORT)"));
  if (options_.history_interval < kShortestInterval)
    return absl::InvalidArgumentError(
        absl::StrCat("--admin_history_interval must be at least ",
                     absl::FormatDuration(kShortestInterval), ", got ",
                     absl::FormatDuration(options_.history_interval)));
  token_ = *std::move(token);
  if (port == 0) {
    port_ = http_->bind_to_any_port(host);
  } else {
    port_ = http_->bind_to_port(host, port) ? port : -1;
  }
  if (port_ <= 0)
    return absl::UnavailableError(
        absl::StrCat("cannot listen on admin address ", address));
  TakeSample();
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  sampler_ = std::thread([this] { SampleLoop(); });
  return absl::OkStatus();
}

absl::Status AdminServer::StartProbes(const std::string& address) {
  std::string host;
  int port = 0;
  if (auto status = ParseHostPort("--probe_listen", address, host, port);
      !status.ok())
    return status;
  probe_http_ = std::make_unique<httplib::Server>();
  probe_http_->set_default_headers({{"Cache-Control", "no-store"}});
  probe_http_->set_read_timeout(std::chrono::seconds(5));
  probe_http_->set_write_timeout(std::chrono::seconds(5));
  AddProbeRoutes(*probe_http_, ready_, *engine_, options_.cluster_health_note);
  probe_port_ = port == 0 ? probe_http_->bind_to_any_port(host)
                : probe_http_->bind_to_port(host, port) ? port
                                                        : -1;
  if (probe_port_ <= 0)
    return absl::UnavailableError(
        absl::StrCat("cannot listen on probe address ", address));
  probe_thread_ = std::thread([this] { probe_http_->listen_after_bind(); });
  return absl::OkStatus();
}

void AdminServer::TakeSample() {
  const auto all = engine_->stats().SnapshotAll();
  std::map<std::string, uint64_t> quotas;
  for (const auto& [name, stats] : all)
    quotas[name] = QuotaBytes(*engine_, name);
  history_.Record(NowMillis(), all, quotas);
}

void AdminServer::SampleLoop() {
  absl::MutexLock lock(&stop_mutex_);
  while (true) {
    const absl::Time deadline = absl::Now() + options_.history_interval;
    while (!stopping_ && absl::Now() < deadline) {
      stop_mutex_.AwaitWithDeadline(absl::Condition(&stopping_), deadline);
    }
    if (stopping_) return;
    stop_mutex_.Unlock();
    TakeSample();
    stop_mutex_.Lock();
  }
}

void AdminServer::Stop() {
  {
    absl::MutexLock lock(&stop_mutex_);
    stopping_ = true;
  }
  if (sampler_.joinable()) sampler_.join();
  if (thread_.joinable()) {
    http_->stop();
    thread_.join();
  }
  if (probe_thread_.joinable()) {
    probe_http_->stop();
    probe_thread_.join();
  }
}

}  // namespace seqkv
