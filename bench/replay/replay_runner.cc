#include "bench/replay/replay_runner.h"

#include <httplib.h>

#include <chrono>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/load/local_server.h"
#include "bench/load/workload.h"

namespace seqkv::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kVocabSize = 128256;

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

// Reads the server's global usage from its admin endpoint; best effort.
void ReadServerUsage(const std::string& admin, ReplayReport& report) {
  std::vector<std::string> parts = absl::StrSplit(admin, ':');
  int port = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &port)) return;
  httplib::Client http(parts[0], port);
  http.set_connection_timeout(5);
  http.set_read_timeout(30);
  auto response = http.Get("/v1/stats");
  if (!response || response->status != 200) return;
  nlohmann::json stats = nlohmann::json::parse(response->body, nullptr, false);
  if (stats.is_discarded() || !stats.contains("global")) return;
  const nlohmann::json& global = stats["global"];
  report.bytes_stored = global.value("bytes_stored", int64_t{-1});
  report.chunks_stored = global.value("chunks_stored", int64_t{-1});
  report.evictions = global.value("evictions", int64_t{-1});
  if (stats.contains("retention") && stats["retention"].is_object()) {
    const nlohmann::json& retention = stats["retention"];
    report.server_retention = retention.value("policy", "");
    int64_t readmissions = 0;
    if (retention.contains("namespaces"))
      for (const auto& [name, counts] : retention["namespaces"].items())
        readmissions += counts.value("readmissions", int64_t{0});
    report.readmissions = readmissions;
  }
}

nlohmann::json HitsJson(const HitCounts& hits) {
  return {{"requests", hits.requests},
          {"blocks", hits.blocks},
          {"blocks_hit", hits.blocks_hit},
          {"tokens", hits.tokens},
          {"tokens_hit", hits.tokens_hit},
          {"hit_rate_blocks", hits.block_rate()},
          {"hit_rate_tokens", hits.token_rate()}};
}

nlohmann::json LatencyJson(const LatencySummary& latency) {
  return {{"count", latency.count},   {"mean_ms", latency.mean_ms},
          {"p50_ms", latency.p50_ms}, {"p90_ms", latency.p90_ms},
          {"p99_ms", latency.p99_ms}, {"p999_ms", latency.p999_ms},
          {"max_ms", latency.max_ms}};
}

}  // namespace

void BlockTokens(uint64_t seed, uint64_t hash_id, uint32_t count,
                 std::vector<int32_t>& out) {
  for (uint32_t i = 0; i < count; ++i)
    out.push_back(static_cast<int32_t>(Mix64(seed, hash_id, i) % kVocabSize));
}

absl::StatusOr<ReplayReport> RunReplay(const ReplayOptions& options) {
  auto requests =
      ReadMooncakeTrace(options.trace, options.requests, options.block_tokens);
  if (!requests.ok()) return requests.status();
  if (requests->empty())
    return absl::InvalidArgumentError(
        absl::StrCat("trace ", options.trace, " holds no requests"));
  if (auto status = options.layout.Validate(); !status.ok()) return status;
  if (options.capacity_blocks > 0 && options.capacity_bytes > 0)
    return absl::InvalidArgumentError(
        "give --capacity_blocks or --capacity_bytes, not both");
  if (!options.server.empty() &&
      (options.capacity_blocks > 0 || options.capacity_bytes > 0))
    return absl::InvalidArgumentError(
        "--capacity_* applies to the server replay starts itself; set "
        "--capacity_bytes on your own server instead");
  if (!options.server.empty() && !options.retention.empty())
    return absl::InvalidArgumentError(
        "--retention applies to the server replay starts itself; set "
        "--retention on your own server instead");
  if (!options.retention.empty() && options.retention != "plt" &&
      options.retention != "lru")
    return absl::InvalidArgumentError(absl::StrCat(
        "--retention must be plt or lru, got '", options.retention, "'"));

  ReplayReport report;
  report.distinct_blocks = DistinctBlocks(*requests);
  const uint64_t block_bytes =
      uint64_t{options.block_tokens} * options.layout.bytes_per_token();
  report.capacity_bytes = options.capacity_bytes > 0
                              ? options.capacity_bytes
                              : options.capacity_blocks * block_bytes;
  report.capacity_blocks = options.capacity_blocks > 0
                               ? options.capacity_blocks
                               : options.capacity_bytes / block_bytes;
  if (options.capacity_bytes > 0 && report.capacity_blocks == 0)
    return absl::InvalidArgumentError(
        absl::StrCat("--capacity_bytes ", options.capacity_bytes,
                     " holds less than one block of ", block_bytes, " bytes"));
  report.reference = SimulateLruCache(*requests, report.capacity_blocks);

  std::unique_ptr<LocalServer> local;
  std::string address = options.server;
  std::string admin = options.admin;
  if (address.empty()) {
    LocalServerOptions server_options;
    server_options.binary = options.server_binary;
    // Raw chunks make stored bytes equal logical bytes, so a capacity in
    // blocks is exact; the WAL need not be synced for a measurement.
    server_options.flags = {
        "--sync_writes=false", "--default_codec=raw",
        absl::StrCat("--chunk_tokens=", options.block_tokens)};
    if (report.capacity_bytes > 0)
      server_options.flags.push_back(
          absl::StrCat("--capacity_bytes=", report.capacity_bytes));
    if (!options.retention.empty())
      server_options.flags.push_back(
          absl::StrCat("--retention=", options.retention));
    auto started = LocalServer::Start(server_options);
    if (!started.ok()) return started.status();
    local = std::move(*started);
    address = local->address();
    admin = absl::StrCat("127.0.0.1:", local->admin_port());
  }

  ClientOptions client_options;
  client_options.server = address;
  auto client = Client::Connect(client_options);
  if (!client.ok()) return client.status();
  ModelRegistration registration;
  registration.model = options.model;
  registration.layout = options.layout;
  registration.chunk_tokens = options.block_tokens;
  auto registered = (*client)->RegisterModel(registration);
  if (!registered.ok())
    return absl::Status(registered.status().code(),
                        absl::StrCat("registering model '", options.model,
                                     "': ", registered.status().message()));

  // KV values do not matter to a raw-coded hit-rate replay; one random pool
  // is sliced for every request.
  uint32_t longest = 0;
  for (const TraceRequest& request : *requests)
    longest = std::max(longest, request.input_length);
  const size_t tensor_bytes_per_token =
      options.layout.bytes_per_token() / options.layout.tensors_per_layer();
  std::vector<std::byte> pool(size_t{longest} * tensor_bytes_per_token);
  std::mt19937_64 rng(options.seed);
  for (std::byte& b : pool) b = static_cast<std::byte>(rng() & 0xff);

  const int windows = std::max(1, options.windows);
  report.windows.resize(windows);
  LatencyRecorder lookup_latency, put_latency;
  PutOptions put;
  put.model = options.model;
  put.codec = options.codec;
  KvCache cache;
  cache.layout = options.layout;
  const auto start = Clock::now();
  auto last_progress = start;
  for (size_t i = 0; i < requests->size(); ++i) {
    const TraceRequest& request = (*requests)[i];
    if (request.input_length == 0) continue;
    cache.tokens.clear();
    for (size_t b = 0; b < request.hash_ids.size(); ++b)
      BlockTokens(options.seed, request.hash_ids[b], request.BlockTokens(b),
                  cache.tokens);

    auto lookup_start = Clock::now();
    auto lookup = (*client)->Lookup(options.model, cache.tokens);
    if (!lookup.ok())
      return absl::Status(
          lookup.status().code(),
          absl::StrCat("request ", i, ": Lookup: ", lookup.status().message()));
    lookup_latency.Add(MillisSince(lookup_start));
    const HitCounts hits = CountPrefixHits(request, lookup->matched_tokens);
    report.hits.Add(hits);
    report.windows[i * windows / requests->size()].Add(hits);

    const size_t bytes = cache.tokens.size() * tensor_bytes_per_token;
    cache.k.assign(pool.begin(), pool.begin() + bytes);
    if (!options.layout.latent)
      cache.v.assign(pool.rbegin(), pool.rbegin() + bytes);
    auto put_start = Clock::now();
    auto stored = (*client)->Put(put, cache);
    if (!stored.ok())
      return absl::Status(
          stored.status().code(),
          absl::StrCat("request ", i, ": Put: ", stored.status().message()));
    put_latency.Add(MillisSince(put_start));
    report.bytes_put_new += stored->bytes_stored;
    report.chunks_new += stored->chunks_new;
    report.chunks_deduped += stored->chunks_deduped;

    if (options.progress &&
        std::chrono::duration<double>(Clock::now() - last_progress).count() >=
            1) {
      last_progress = Clock::now();
      options.progress(absl::StrFormat(
          "[%6.1fs] %zu/%zu requests, hit rate %.3f blocks %.3f tokens, %.1f "
          "MiB new",
          std::chrono::duration<double>(last_progress - start).count(), i + 1,
          requests->size(), report.hits.block_rate(), report.hits.token_rate(),
          report.bytes_put_new / 1048576.0));
    }
  }
  report.elapsed_s =
      std::chrono::duration<double>(Clock::now() - start).count();
  report.lookup_latency = lookup_latency.Summarize();
  report.put_latency = put_latency.Summarize();
  if (!admin.empty()) ReadServerUsage(admin, report);
  if (local) {
    report.disk_bytes = local->DiskBytes();
    if (auto status = local->Stop(); !status.ok()) return status;
  }
  return report;
}

nlohmann::json ReplayToJson(const ReplayOptions& options,
                            const ReplayReport& report) {
  nlohmann::json windows = nlohmann::json::array();
  for (const HitCounts& window : report.windows)
    windows.push_back(HitsJson(window));
  return {
      {"command", "replay"},
      {"config",
       {{"trace", options.trace},
        {"requests", report.hits.requests},
        {"server", options.server.empty() ? "local" : options.server},
        {"layout", options.layout.DebugString()},
        {"block_tokens", options.block_tokens},
        {"bytes_per_block",
         uint64_t{options.block_tokens} * options.layout.bytes_per_token()},
        {"codec", options.codec},
        {"model", options.model},
        {"capacity_blocks", report.capacity_blocks},
        {"capacity_bytes", report.capacity_bytes},
        {"retention",
         options.retention.empty() ? "server default" : options.retention},
        {"distinct_blocks", report.distinct_blocks},
        {"capacity_fraction",
         report.capacity_blocks == 0
             ? 1.0
             : double(report.capacity_blocks) / report.distinct_blocks}}},
      {"hit_rate_blocks", report.hits.block_rate()},
      {"hit_rate_tokens", report.hits.token_rate()},
      {"hits", HitsJson(report.hits)},
      {"windows", windows},
      {"reference_lru", HitsJson(report.reference)},
      {"bytes_stored", report.bytes_stored},
      {"chunks_stored", report.chunks_stored},
      {"evictions", report.evictions},
      {"readmissions", report.readmissions},
      {"server_retention", report.server_retention},
      {"bytes_put_new", report.bytes_put_new},
      {"chunks_new", report.chunks_new},
      {"chunks_deduped", report.chunks_deduped},
      {"disk_bytes", report.disk_bytes},
      {"elapsed_s", report.elapsed_s},
      {"lookup_latency", LatencyJson(report.lookup_latency)},
      {"put_latency", LatencyJson(report.put_latency)},
  };
}

std::string ReplayToText(const ReplayOptions& options,
                         const ReplayReport& report) {
  std::string text = absl::StrFormat(
      "seqkv replay: %llu requests of %s, layout %s, capacity %s\n",
      static_cast<unsigned long long>(report.hits.requests), options.trace,
      options.layout.DebugString(),
      report.capacity_blocks == 0
          ? std::string("unlimited")
          : absl::StrFormat(
                "%llu blocks (%.1f%% of %llu distinct), %llu bytes",
                static_cast<unsigned long long>(report.capacity_blocks),
                100.0 * report.capacity_blocks / report.distinct_blocks,
                static_cast<unsigned long long>(report.distinct_blocks),
                static_cast<unsigned long long>(report.capacity_bytes)));
  absl::StrAppend(
      &text,
      absl::StrFormat(
          "hit rate: %.4f block-weighted (%llu/%llu), %.4f token-weighted\n",
          report.hits.block_rate(),
          static_cast<unsigned long long>(report.hits.blocks_hit),
          static_cast<unsigned long long>(report.hits.blocks),
          report.hits.token_rate()));
  absl::StrAppend(&text, absl::StrFormat("reference LRU of blocks at the same "
                                         "capacity: %.4f blocks, %.4f tokens\n",
                                         report.reference.block_rate(),
                                         report.reference.token_rate()));
  absl::StrAppend(&text, "over time (block-weighted, per slice of requests):");
  for (const HitCounts& window : report.windows)
    absl::StrAppend(&text, absl::StrFormat(" %.3f", window.block_rate()));
  absl::StrAppend(&text, "\n");
  absl::StrAppend(
      &text,
      absl::StrFormat(
          "stored: %lld bytes in %lld chunks (%lld evictions); Puts added %llu "
          "chunks, deduplicated %llu; disk %.1f MiB\n",
          static_cast<long long>(report.bytes_stored),
          static_cast<long long>(report.chunks_stored),
          static_cast<long long>(report.evictions),
          static_cast<unsigned long long>(report.chunks_new),
          static_cast<unsigned long long>(report.chunks_deduped),
          report.disk_bytes / 1048576.0));
  absl::StrAppend(
      &text,
      absl::StrFormat("%.1f s; lookup p50 %.3f ms p99 %.3f ms; put p50 %.3f ms "
                      "p99 %.3f ms\n",
                      report.elapsed_s, report.lookup_latency.p50_ms,
                      report.lookup_latency.p99_ms, report.put_latency.p50_ms,
                      report.put_latency.p99_ms));
  return text;
}

}  // namespace seqkv::bench
