#include "server/admin_server.h"

#include <httplib.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace seqkv {
namespace {

nlohmann::json StatsObject(const NamespaceStats& stats) {
  const auto& c = stats.counters;
  return {
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
      {"put_bytes_logical", c.put_bytes_logical()},
      {"dedup_ratio", stats.dedup_ratio()},
      {"compression_ratio", stats.compression_ratio()},
      {"evictions", c.evictions()},
  };
}

NamespaceStats Sum(const std::map<std::string, NamespaceStats>& all) {
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
    t.set_evictions(t.evictions() + c.evictions());
    total.usage.chunks_stored += s.usage.chunks_stored;
    total.usage.bytes_logical += s.usage.bytes_logical;
    total.usage.bytes_stored += s.usage.bytes_stored;
  }
  return total;
}

}  // namespace

std::string StatsJson(CacheEngine& engine) {
  const auto all = engine.stats().SnapshotAll();
  nlohmann::json doc;
  doc["global"] = StatsObject(Sum(all));
  doc["tenants"] = nlohmann::json::object();
  for (const auto& [name, stats] : all)
    doc["tenants"][name] = StatsObject(stats);
  return doc.dump(2);
}

std::string PrometheusMetrics(CacheEngine& engine) {
  const auto all = engine.stats().SnapshotAll();
  std::string out;
  auto family = [&](absl::string_view name, absl::string_view type,
                    absl::string_view help, auto value_of) {
    absl::StrAppend(&out, "# HELP seqkv_", name, " ", help, "\n# TYPE seqkv_",
                    name, " ", type, "\n");
    for (const auto& [tenant, stats] : all)
      absl::StrAppend(&out, "seqkv_", name, "{tenant=\"", tenant, "\"} ",
                      value_of(stats), "\n");
  };
  family("lookups_total", "counter", "Lookup calls.",
         [](const NamespaceStats& s) { return s.counters.lookups(); });
  family("lookup_tokens_total", "counter", "Tokens asked for by lookups.",
         [](const NamespaceStats& s) { return s.counters.lookup_tokens(); });
  family("hit_tokens_total", "counter", "Tokens lookups found stored.",
         [](const NamespaceStats& s) { return s.counters.hit_tokens(); });
  family("puts_total", "counter", "Put calls that committed.",
         [](const NamespaceStats& s) { return s.counters.puts(); });
  family("put_tokens_total", "counter", "Tokens received by Puts.",
         [](const NamespaceStats& s) { return s.counters.put_tokens(); });
  family("chunks_deduped_total", "counter", "Chunks Puts found already stored.",
         [](const NamespaceStats& s) { return s.counters.chunks_deduped(); });
  family("evictions_total", "counter", "Chunks evicted.",
         [](const NamespaceStats& s) { return s.counters.evictions(); });
  family("chunks_stored", "gauge", "Chunks stored now.",
         [](const NamespaceStats& s) { return s.usage.chunks_stored; });
  family("bytes_logical", "gauge", "Uncompressed bytes of the stored chunks.",
         [](const NamespaceStats& s) { return s.usage.bytes_logical; });
  family("bytes_stored", "gauge", "Encoded bytes of the stored chunks.",
         [](const NamespaceStats& s) { return s.usage.bytes_stored; });
  return out;
}

AdminServer::AdminServer(CacheEngine* engine)
    : engine_(engine), http_(std::make_unique<httplib::Server>()) {
  Routes();
}

AdminServer::~AdminServer() { Stop(); }

void AdminServer::Routes() {
  http_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  http_->Get("/readyz",
             [this](const httplib::Request&, httplib::Response& res) {
               res.status = ready_ ? 200 : 503;
               res.set_content(ready_ ? "ready\n" : "starting\n", "text/plain");
             });
  http_->Get("/v1/stats",
             [this](const httplib::Request&, httplib::Response& res) {
               res.set_content(StatsJson(*engine_), "application/json");
             });
  http_->Get("/metrics", [this](const httplib::Request&,
                                httplib::Response& res) {
    res.set_content(PrometheusMetrics(*engine_), "text/plain; version=0.0.4");
  });
}

absl::Status AdminServer::Start(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535)
    return absl::InvalidArgumentError(
        absl::StrCat("--admin_listen must be host:port, got '", address, "'"));
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[')
    host = host.substr(1, host.size() - 2);
  if (port == 0) {
    port_ = http_->bind_to_any_port(host);
  } else {
    port_ = http_->bind_to_port(host, port) ? port : -1;
  }
  if (port_ <= 0)
    return absl::UnavailableError(
        absl::StrCat("cannot listen on admin address ", address));
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  return absl::OkStatus();
}

void AdminServer::Stop() {
  if (thread_.joinable()) {
    http_->stop();
    thread_.join();
  }
}

}  // namespace seqkv
