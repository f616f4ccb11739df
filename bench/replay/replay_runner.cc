#include "bench/replay/replay_runner.h"

#include <httplib.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <optional>
#include <random>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/load/local_server.h"
#include "bench/load/workload.h"
#include "cluster/member.h"
#include "codec/float_bits.h"
#include "codec/model_state.h"
#include "codec/predictive/rope.h"

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
    if (retention.contains("tiers") && retention["tiers"].is_object())
      report.tiers = retention["tiers"];
    if (retention.contains("demotions") &&
        retention["demotions"].is_number_integer())
      report.demotions = retention["demotions"].get<int64_t>();
    if (retention.contains("ghost_hits") &&
        retention["ghost_hits"].is_number_integer())
      report.ghost_hits = retention["ghost_hits"].get<int64_t>();
  }
}

// {tier: field} of the server's tiers, or null.
nlohmann::json TierField(const nlohmann::json& tiers, const char* field) {
  if (!tiers.is_object()) return nullptr;
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [tier, counts] : tiers.items())
    if (counts.is_object() && counts.contains(field)) out[tier] = counts[field];
  return out;
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

// Any-fidelity hits with the exact ones beside them.
nlohmann::json HitsJson(const HitCounts& any, const HitCounts& exact) {
  nlohmann::json json = HitsJson(any);
  json["blocks_hit_exact"] = exact.blocks_hit;
  json["tokens_hit_exact"] = exact.tokens_hit;
  json["hit_rate_blocks_exact"] = exact.block_rate();
  json["hit_rate_tokens_any"] = any.token_rate();
  json["hit_rate_tokens_exact"] = exact.token_rate();
  return json;
}

nlohmann::json LatencyJson(const LatencySummary& latency) {
  return {{"count", latency.count},   {"mean_ms", latency.mean_ms},
          {"p50_ms", latency.p50_ms}, {"p90_ms", latency.p90_ms},
          {"p99_ms", latency.p99_ms}, {"p999_ms", latency.p999_ms},
          {"max_ms", latency.max_ms}};
}

// One stored element as a float.
double ElementValue(DType dtype, const std::byte* p) {
  if (dtype == DType::kFP32) {
    float value;
    std::memcpy(&value, p, 4);
    return value;
  }
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return dtype == DType::kBF16 ? Bf16ToFloat(bits) : Fp16ToFloat(bits);
}

// A profile's view of a one-layer, one-head slice: per tensor its
// sensitivity and channel weights (empty: all 1).
struct SliceProfile {
  double sensitivity[2] = {0, 0};
  std::vector<double> weights[2];
};

// Compares the `got` prefix of `put` chunk by chunk (tensor-major layout
// of one layer and head per tensor, as replay's slices and default layouts
// are laid out [layer][head][token][dim]; with more layers or heads a chunk
// is compared over all of them), up to token `n`. `profile` applies to
// one-layer, one-head layouts only.
void CompareServed(const KvLayout& layout, uint32_t chunk_tokens,
                   const KvCache& put, const KvCache& got, uint32_t n,
                   bool exact_only, const std::optional<SliceProfile>& profile,
                   ServedCheck& check) {
  const uint32_t width = layout.head_dim;
  const size_t dsize = DTypeSize(layout.dtype);
  const size_t row = size_t{width} * dsize;
  const uint32_t planes = layout.num_layers * layout.num_kv_heads;
  const size_t put_plane = size_t{put.num_tokens()} * row;
  const size_t got_plane = size_t{got.num_tokens()} * row;
  std::vector<float> delta(width);
  for (uint32_t begin = 0; begin < n; begin += chunk_tokens) {
    const uint32_t end = std::min(n, begin + chunk_tokens);
    double error[2] = {0, 0}, energy[2] = {0, 0}, weighted[2] = {0, 0};
    bool exact = true;
    for (uint32_t tensor = 0; tensor < layout.tensors_per_layer(); ++tensor) {
      const std::vector<std::byte>& a = tensor == 0 ? put.k : put.v;
      const std::vector<std::byte>& b = tensor == 0 ? got.k : got.v;
      for (uint32_t plane = 0; plane < planes; ++plane) {
        const std::byte* x = a.data() + plane * put_plane + begin * row;
        const std::byte* y = b.data() + plane * got_plane + begin * row;
        const size_t bytes = (end - begin) * row;
        if (std::memcmp(x, y, bytes) == 0) {
          for (size_t e = 0; e < bytes; e += dsize) {
            const double v = ElementValue(layout.dtype, x + e);
            if (std::isfinite(v)) energy[tensor] += v * v;
          }
          continue;
        }
        exact = false;
        // Keys' errors in the pre-RoPE frame, where the weights apply.
        std::optional<predictive::RopeTable> rope;
        if (profile && tensor == 0 && !layout.latent &&
            layout.rope.style != RopeStyle::kNone)
          rope.emplace(layout.rope, width, begin, end - begin);
        for (uint32_t t = 0; t < end - begin; ++t) {
          for (uint32_t d = 0; d < width; ++d) {
            const size_t e = (size_t{t} * width + d) * dsize;
            const double v = ElementValue(layout.dtype, x + e);
            const double w = ElementValue(layout.dtype, y + e);
            energy[tensor] += v * v;
            error[tensor] += (w - v) * (w - v);
            delta[d] = static_cast<float>(w - v);
          }
          if (!profile) continue;
          if (rope) rope->Undo(t, delta.data());
          const std::vector<double>& weights = profile->weights[tensor];
          for (uint32_t d = 0; d < width; ++d)
            weighted[tensor] += double(delta[d]) * delta[d] *
                                (weights.empty() ? 1.0 : weights[d]);
        }
      }
    }
    if (exact_only) {
      ++check.exact_only_chunks;
      check.exact_only_mismatches += !exact;
      continue;
    }
    ++check.chunks;
    if (exact) {
      ++check.chunks_exact;
      continue;
    }
    double kl = 0, sensitivity = 0;
    for (uint32_t tensor = 0; tensor < layout.tensors_per_layer(); ++tensor) {
      const double rel = energy[tensor] > 0  ? error[tensor] / energy[tensor]
                         : error[tensor] > 0 ? 1.0
                                             : 0.0;
      check.rel_mse_sum[tensor] += rel;
      check.rel_mse_max[tensor] = std::max(check.rel_mse_max[tensor], rel);
      if (profile && energy[tensor] > 0) {
        kl += profile->sensitivity[tensor] * weighted[tensor] / energy[tensor];
        sensitivity += profile->sensitivity[tensor];
      }
    }
    if (profile && sensitivity > 0) {
      check.profiled = true;
      check.profile_rel_mse_sum += kl / sensitivity;
      check.profile_rel_mse_max =
          std::max(check.profile_rel_mse_max, kl / sensitivity);
    }
  }
}

nlohmann::json ServedJson(const KvLayout& layout, const ServedCheck& check) {
  if (check.requests == 0) return nullptr;
  const uint64_t lossy = check.chunks - check.chunks_exact;
  nlohmann::json json = {
      {"requests", check.requests},
      {"chunks", check.chunks},
      {"chunks_exact", check.chunks_exact},
      {"chunks_lossy", lossy},
      {"exact_only_chunks", check.exact_only_chunks},
      {"exact_only_mismatches", check.exact_only_mismatches}};
  const char* names[2] = {layout.latent ? "latent" : "k", "v"};
  for (uint32_t tensor = 0; tensor < layout.tensors_per_layer(); ++tensor)
    json[absl::StrCat("rel_mse_", names[tensor])] = {
        {"mean", lossy == 0 ? 0.0 : check.rel_mse_sum[tensor] / lossy},
        {"max", check.rel_mse_max[tensor]}};
  if (check.profiled)
    json["rel_mse_by_profile"] = {
        {"mean", lossy == 0 ? 0.0 : check.profile_rel_mse_sum / lossy},
        {"max", check.profile_rel_mse_max}};
  return json;
}

}  // namespace

void BlockTokens(uint64_t seed, uint64_t hash_id, uint32_t count,
                 std::vector<int32_t>& out) {
  for (uint32_t i = 0; i < count; ++i)
    out.push_back(static_cast<int32_t>(Mix64(seed, hash_id, i) % kVocabSize));
}

uint32_t StoredTokens(uint32_t trace_tokens, uint32_t block_tokens,
                      uint32_t stored_block_tokens) {
  if (stored_block_tokens == block_tokens) return trace_tokens;
  return static_cast<uint32_t>(
      (uint64_t{trace_tokens} * stored_block_tokens + block_tokens - 1) /
      block_tokens);
}

uint32_t TraceTokensMatched(const TraceRequest& request, uint32_t matched,
                            uint32_t stored_block_tokens) {
  uint64_t stored_end = 0;
  uint32_t trace_tokens = 0;
  for (size_t b = 0; b < request.hash_ids.size(); ++b) {
    const uint32_t tokens = request.BlockTokens(b);
    stored_end +=
        StoredTokens(tokens, request.block_tokens, stored_block_tokens);
    if (stored_end > matched) break;
    trace_tokens += tokens;
  }
  return trace_tokens;
}

uint64_t HeadKey(const TraceRequest& request, uint32_t head_blocks) {
  // Ids are chained: the last id of the head names the whole head.
  const size_t blocks = std::min<size_t>(std::max<uint32_t>(head_blocks, 1),
                                         request.hash_ids.size());
  return blocks == 0 ? 0 : request.hash_ids[blocks - 1];
}

std::vector<uint64_t> HottestHeads(const std::vector<TraceRequest>& requests,
                                   uint32_t head_blocks, double fraction,
                                   uint64_t* min_requests) {
  absl::flat_hash_map<uint64_t, uint64_t> counts;
  for (const TraceRequest& request : requests)
    if (!request.hash_ids.empty()) ++counts[HeadKey(request, head_blocks)];
  std::vector<std::pair<uint64_t, uint64_t>> ranked(counts.begin(),
                                                    counts.end());
  // Most requests first; ties by id, so the choice is reproducible.
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  const size_t keep = std::min<size_t>(
      ranked.size(),
      std::max<size_t>(1, static_cast<size_t>(ranked.size() * fraction)));
  std::vector<uint64_t> heads;
  for (size_t i = 0; i < keep; ++i) heads.push_back(ranked[i].first);
  if (min_requests != nullptr)
    *min_requests = keep == 0 ? 0 : ranked[keep - 1].second;
  return heads;
}

absl::StatusOr<ReplayReport> RunReplay(const ReplayOptions& options) {
  auto requests =
      ReadMooncakeTrace(options.trace, options.requests, options.block_tokens);
  if (!requests.ok()) return requests.status();
  if (requests->empty())
    return absl::InvalidArgumentError(
        absl::StrCat("trace ", options.trace, " holds no requests"));
  const int capacities = (options.capacity_blocks > 0) +
                         (options.capacity_bytes > 0) +
                         (options.capacity_raw_fraction > 0);
  if (capacities > 1)
    return absl::InvalidArgumentError(
        "give one of --capacity_blocks, --capacity_bytes and "
        "--capacity_raw_fraction");
  if (options.capacity_raw_fraction < 0 || options.capacity_raw_fraction > 1)
    return absl::InvalidArgumentError(
        absl::StrCat("--capacity_raw_fraction must be in [0, 1], got ",
                     options.capacity_raw_fraction));
  if (!options.server.empty() && capacities > 0)
    return absl::InvalidArgumentError(
        "--capacity_* applies to the server replay starts itself; set "
        "--capacity_bytes on your own server instead");
  if (!options.server.empty() &&
      (!options.retention.empty() || !options.tiers.empty()))
    return absl::InvalidArgumentError(
        "--retention and --tiers apply to the server replay starts itself; "
        "set them on your own server instead");
  if (!options.retention.empty() && options.retention != "plt" &&
      options.retention != "lru")
    return absl::InvalidArgumentError(absl::StrCat(
        "--retention must be plt or lru, got '", options.retention, "'"));

  ReplayReport report;
  // The blocks' content: a slice of real KV caches, or random bytes.
  std::optional<KvSource> source;
  KvLayout layout = options.layout;
  report.stored_block_tokens = options.block_tokens;
  if (!options.kv_source.glob.empty()) {
    if (options.kv_source.slice_tokens > options.block_tokens)
      return absl::InvalidArgumentError(absl::StrCat(
          "--kv_block_tokens ", options.kv_source.slice_tokens,
          " exceeds the trace's --block_tokens ", options.block_tokens));
    auto loaded = KvSource::Load(options.kv_source);
    if (!loaded.ok()) return loaded.status();
    source = *std::move(loaded);
    layout = source->layout();
    report.stored_block_tokens = source->slice_tokens();
    report.kv_source = source->Describe();
  }
  if (auto status = layout.Validate(); !status.ok()) return status;
  report.layout = layout;
  const uint32_t chunk_tokens = report.stored_block_tokens;
  report.model = options.model;
  if (report.model.empty())
    report.model =
        absl::StrCat("replay-", layout.num_layers, "x", layout.num_kv_heads,
                     "x", layout.head_dim, "-", DTypeName(layout.dtype), "-c",
                     chunk_tokens, source ? "-kv" : "");

  const auto stored_tokens = [&](const TraceRequest& request, size_t b) {
    return StoredTokens(request.BlockTokens(b), options.block_tokens,
                        chunk_tokens);
  };
  {
    absl::flat_hash_map<uint64_t, uint32_t> distinct;
    for (const TraceRequest& request : *requests)
      for (size_t b = 0; b < request.hash_ids.size(); ++b)
        distinct.try_emplace(request.hash_ids[b], stored_tokens(request, b));
    report.distinct_blocks = distinct.size();
    for (const auto& [id, tokens] : distinct)
      report.bytes_unique_raw += uint64_t{tokens} * layout.bytes_per_token();
  }
  const uint64_t block_bytes =
      uint64_t{chunk_tokens} * layout.bytes_per_token();
  report.capacity_bytes =
      options.capacity_bytes > 0 ? options.capacity_bytes
      : options.capacity_raw_fraction > 0
          ? static_cast<uint64_t>(options.capacity_raw_fraction *
                                  report.bytes_unique_raw)
          : options.capacity_blocks * block_bytes;
  report.capacity_blocks = options.capacity_blocks > 0
                               ? options.capacity_blocks
                               : report.capacity_bytes / block_bytes;
  if (report.capacity_bytes > 0 && report.capacity_blocks == 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "a capacity of ", report.capacity_bytes,
        " bytes holds less than one block of ", block_bytes, " bytes"));
  report.reference = SimulateLruCache(*requests, report.capacity_blocks);

  std::unique_ptr<LocalServer> local;
  std::string address = options.server;
  std::string admin = options.admin;
  if (address.empty()) {
    LocalServerOptions server_options;
    server_options.binary = options.server_binary;
    // Raw chunks make stored bytes equal logical bytes, so a capacity in
    // blocks is exact; the WAL need not be synced for a measurement.
    server_options.flags = {"--sync_writes=false", "--default_codec=raw",
                            absl::StrCat("--chunk_tokens=", chunk_tokens)};
    if (report.capacity_bytes > 0)
      server_options.flags.push_back(
          absl::StrCat("--capacity_bytes=", report.capacity_bytes));
    if (!options.retention.empty())
      server_options.flags.push_back(
          absl::StrCat("--retention=", options.retention));
    if (!options.tiers.empty())
      server_options.flags.push_back(absl::StrCat("--tiers=", options.tiers));
    if (!options.tier_shares.empty())
      server_options.flags.push_back(
          absl::StrCat("--tier_shares=", options.tier_shares));
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
  registration.model = report.model;
  registration.layout = layout;
  registration.chunk_tokens = chunk_tokens;
  if (source && !source->slice_profile().empty())
    registration.codec_state[std::string(kProfileKey)] =
        source->slice_profile();
  auto registered = (*client)->RegisterModel(registration);
  if (!registered.ok())
    return absl::Status(registered.status().code(),
                        absl::StrCat("registering model '", report.model,
                                     "': ", registered.status().message()));

  // The slice's profile, to count served errors as the codecs do.
  std::optional<SliceProfile> served_profile;
  if (source && !source->slice_profile().empty()) {
    auto profile = ParseFidelityProfile(source->slice_profile(), &layout);
    if (!profile.ok()) return profile.status();
    served_profile.emplace();
    for (uint32_t tensor = 0; tensor < layout.tensors_per_layer(); ++tensor)
      if (const auto* group = profile->Find(0, tensor)) {
        served_profile->sensitivity[tensor] = group->sensitivity;
        served_profile->weights[tensor] = group->channel_weights;
      }
  }

  // Without a KV source, values do not matter to a raw-coded hit-rate
  // replay; one random pool is sliced for every request.
  const size_t tensor_bytes_per_token =
      layout.bytes_per_token() / layout.tensors_per_layer();
  std::vector<std::byte> pool;
  if (!source) {
    uint32_t longest = 0;
    for (const TraceRequest& request : *requests)
      longest = std::max(longest, request.input_length);
    pool.resize(size_t{longest} * tensor_bytes_per_token);
    std::mt19937_64 rng(options.seed);
    for (std::byte& b : pool) b = static_cast<std::byte>(rng() & 0xff);
  }

  const int windows = std::max(1, options.windows);
  report.windows.resize(windows);
  report.windows_exact.resize(windows);
  // The hottest 1% of heads: do they stay hits (through a cluster that
  // loses a node, say)?
  const std::vector<uint64_t> hot_list = HottestHeads(
      *requests, options.head_blocks, 0.01, &report.hot_heads.min_requests);
  const absl::flat_hash_set<uint64_t> hot_heads(hot_list.begin(),
                                                hot_list.end());
  absl::flat_hash_set<uint64_t> heads_seen;
  report.hot_heads.heads = hot_heads.size();
  report.hot_heads.windows.resize(windows);
  LatencyRecorder lookup_latency, put_latency;
  PutOptions put;
  put.model = report.model;
  put.codec = options.codec;
  KvCache cache;
  cache.layout = layout;
  const auto start = Clock::now();
  auto last_progress = start;
  for (size_t i = 0; i < requests->size(); ++i) {
    const TraceRequest& request = (*requests)[i];
    if (request.input_length == 0) continue;
    if (options.speedup > 0) {
      const auto due =
          start + std::chrono::duration_cast<Clock::duration>(
                      std::chrono::duration<double, std::milli>(
                          static_cast<double>(request.timestamp_ms -
                                              requests->front().timestamp_ms) /
                          options.speedup));
      std::this_thread::sleep_until(due);
    }
    cache.tokens.clear();
    cache.k.clear();
    cache.v.clear();
    for (size_t b = 0; b < request.hash_ids.size(); ++b) {
      const uint32_t tokens = stored_tokens(request, b);
      if (source)
        source->Fill(request.hash_ids[b], cache.tokens.size(), tokens, cache.k,
                     cache.v);
      BlockTokens(options.seed, request.hash_ids[b], tokens, cache.tokens);
    }

    auto lookup_start = Clock::now();
    auto lookup = (*client)->Lookup(report.model, cache.tokens);
    if (!lookup.ok())
      return absl::Status(
          lookup.status().code(),
          absl::StrCat("request ", i, ": Lookup: ", lookup.status().message()));
    lookup_latency.Add(MillisSince(lookup_start));
    if (options.verify_every > 0 && i % options.verify_every == 0 &&
        lookup->matched_tokens > 0) {
      if (!source) {
        const size_t bytes = cache.tokens.size() * tensor_bytes_per_token;
        cache.k.assign(pool.begin(), pool.begin() + bytes);
        if (!layout.latent)
          cache.v.assign(pool.rbegin(), pool.rbegin() + bytes);
      }
      for (const bool exact_only : {false, true}) {
        GetOptions get;
        get.model = report.model;
        get.exact_only = exact_only;
        // A chunk demoted or evicted in the background while the Get read
        // it aborts the Get, which the server asks to retry.
        auto got = (*client)->Get(get, cache.tokens);
        for (int retry = 0;
             retry < 5 && got.status().code() == absl::StatusCode::kAborted;
             ++retry)
          got = (*client)->Get(get, cache.tokens);
        if (!got.ok())
          return absl::Status(
              got.status().code(),
              absl::StrCat("request ", i, ": Get", exact_only ? " (exact)" : "",
                           ": ", got.status().message()));
        // Whole blocks only: a match may run a few tokens into a chunk of
        // another block that starts with the same token ids, whose KV the
        // replay did not derive from those ids (a model's would be the
        // same), and hits count whole blocks anyway.
        uint32_t whole = 0;
        for (size_t b = 0; b < request.hash_ids.size(); ++b) {
          const uint32_t tokens = stored_tokens(request, b);
          if (whole + tokens > got->num_tokens()) break;
          whole += tokens;
        }
        CompareServed(layout, chunk_tokens, cache, *got, whole, exact_only,
                      served_profile, report.served);
      }
      ++report.served.requests;
    }
    const HitCounts hits = CountPrefixHits(
        request,
        TraceTokensMatched(request, lookup->matched_tokens, chunk_tokens));
    const HitCounts hits_exact = CountPrefixHits(
        request, TraceTokensMatched(request, lookup->matched_tokens_exact,
                                    chunk_tokens));
    report.hits.Add(hits);
    report.hits_exact.Add(hits_exact);
    report.windows[i * windows / requests->size()].Add(hits);
    report.windows_exact[i * windows / requests->size()].Add(hits_exact);
    if (const uint64_t head = HeadKey(request, options.head_blocks);
        hot_heads.contains(head) && !heads_seen.insert(head).second) {
      const bool head_hit =
          hits.blocks_hit >=
          std::min<size_t>(options.head_blocks, request.hash_ids.size());
      auto& [window_requests, window_hits] =
          report.hot_heads.windows[i * windows / requests->size()];
      ++window_requests, ++report.hot_heads.requests;
      if (head_hit) ++window_hits, ++report.hot_heads.head_hits;
    } else {
      heads_seen.insert(head);
    }

    if (!source) {
      const size_t bytes = cache.tokens.size() * tensor_bytes_per_token;
      cache.k.assign(pool.begin(), pool.begin() + bytes);
      if (!layout.latent) cache.v.assign(pool.rbegin(), pool.rbegin() + bytes);
    }
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
          "[%6.1fs] %zu/%zu requests, hit rate %.3f blocks %.3f tokens "
          "(%.3f exact), %.1f MiB new",
          std::chrono::duration<double>(last_progress - start).count(), i + 1,
          requests->size(), report.hits.block_rate(), report.hits.token_rate(),
          report.hits_exact.token_rate(), report.bytes_put_new / 1048576.0));
    }
  }
  report.elapsed_s =
      std::chrono::duration<double>(Clock::now() - start).count();
  report.lookup_latency = lookup_latency.Summarize();
  report.put_latency = put_latency.Summarize();
  if (!admin.empty()) ReadServerUsage(admin, report);
  if (cluster::IsClusterTarget(address)) {
    auto nodes = ReadClusterUsage(address);
    if (nodes.ok()) report.nodes = std::move(*nodes);
  }
  if (local) {
    report.disk_bytes = local->DiskBytes();
    if (auto status = local->Stop(); !status.ok()) return status;
  }
  return report;
}

nlohmann::json ReplayToJson(const ReplayOptions& options,
                            const ReplayReport& report) {
  nlohmann::json windows = nlohmann::json::array();
  for (size_t w = 0; w < report.windows.size(); ++w)
    windows.push_back(HitsJson(report.windows[w], report.windows_exact[w]));
  const uint64_t bytes_per_token = report.layout.bytes_per_token();
  nlohmann::json hot_windows = nlohmann::json::array();
  for (const auto& [requests, hits] : report.hot_heads.windows)
    hot_windows.push_back(requests == 0
                              ? nlohmann::json(nullptr)
                              : nlohmann::json(double(hits) / requests));
  const HotHeads& hot = report.hot_heads;
  return {
      {"command", "replay"},
      {"config",
       {{"trace", options.trace},
        {"requests", report.hits.requests},
        {"server", options.server.empty() ? "local" : options.server},
        {"layout", report.layout.DebugString()},
        {"block_tokens", options.block_tokens},
        {"stored_block_tokens", report.stored_block_tokens},
        {"bytes_per_block",
         uint64_t{report.stored_block_tokens} * bytes_per_token},
        {"content", report.kv_source.is_object() ? "kv_source" : "random"},
        {"kv_source", report.kv_source},
        {"codec", options.codec},
        {"model", report.model},
        {"capacity_blocks", report.capacity_blocks},
        {"capacity_bytes", report.capacity_bytes},
        {"retention",
         options.retention.empty() ? "server default" : options.retention},
        {"tiers", options.tiers.empty() ? "server default" : options.tiers},
        {"tier_shares",
         options.tier_shares.empty() ? "server default" : options.tier_shares},
        {"speedup", options.speedup},
        {"distinct_blocks", report.distinct_blocks},
        {"bytes_unique_raw", report.bytes_unique_raw},
        {"capacity_fraction",
         report.capacity_blocks == 0
             ? 1.0
             : double(report.capacity_blocks) / report.distinct_blocks},
        {"capacity_raw_fraction",
         report.capacity_bytes == 0 || report.bytes_unique_raw == 0
             ? 1.0
             : double(report.capacity_bytes) / report.bytes_unique_raw}}},
      {"hit_rate_blocks", report.hits.block_rate()},
      {"hit_rate_tokens", report.hits.token_rate()},
      {"hit_rate_tokens_any", report.hits.token_rate()},
      {"hit_rate_tokens_exact", report.hits_exact.token_rate()},
      {"hit_rate_blocks_exact", report.hits_exact.block_rate()},
      {"hits", HitsJson(report.hits, report.hits_exact)},
      {"windows", windows},
      {"hot_heads",
       {{"head_blocks", options.head_blocks},
        {"heads", hot.heads},
        {"min_requests_per_head", hot.min_requests},
        {"repeat_requests", hot.requests},
        {"head_hits", hot.head_hits},
        {"head_hit_rate",
         hot.requests == 0 ? 0.0 : double(hot.head_hits) / hot.requests},
        {"windows", hot_windows}}},
      {"reference_lru", HitsJson(report.reference)},
      {"served", ServedJson(report.layout, report.served)},
      {"bytes_unique_raw", report.bytes_unique_raw},
      {"bytes_stored", report.bytes_stored},
      {"bytes_by_tier", TierField(report.tiers, "bytes")},
      {"chunks_by_tier", TierField(report.tiers, "chunks")},
      {"demotions", report.demotions},
      {"ghost_hits", report.ghost_hits},
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
      {"cluster", report.nodes.empty() ? nlohmann::json(nullptr)
                                       : ClusterUsageJson(report.nodes)},
  };
}

std::string ReplayToText(const ReplayOptions& options,
                         const ReplayReport& report) {
  std::string text = absl::StrFormat(
      "seqkv replay: %llu requests of %s, layout %s, capacity %s\n",
      static_cast<unsigned long long>(report.hits.requests), options.trace,
      absl::StrCat(
          report.layout.DebugString(),
          report.kv_source.is_object() ? " (a slice of real KV caches)" : ""),
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
  absl::StrAppend(
      &text, absl::StrFormat(
                 "token-weighted: %.4f at any fidelity, %.4f exact; %llu "
                 "distinct blocks take %llu bytes raw\n",
                 report.hits.token_rate(), report.hits_exact.token_rate(),
                 static_cast<unsigned long long>(report.distinct_blocks),
                 static_cast<unsigned long long>(report.bytes_unique_raw)));
  if (report.served.requests > 0)
    absl::StrAppend(&text, "served chunks fetched back: ",
                    ServedJson(report.layout, report.served).dump(), "\n");
  absl::StrAppend(&text, absl::StrFormat("reference LRU of blocks at the same "
                                         "capacity: %.4f blocks, %.4f tokens\n",
                                         report.reference.block_rate(),
                                         report.reference.token_rate()));
  absl::StrAppend(&text, "over time (block-weighted, per slice of requests):");
  for (const HitCounts& window : report.windows)
    absl::StrAppend(&text, absl::StrFormat(" %.3f", window.block_rate()));
  absl::StrAppend(&text, "\nover time (tokens any / exact):");
  for (size_t w = 0; w < report.windows.size(); ++w)
    absl::StrAppend(
        &text, absl::StrFormat(" %.3f/%.3f", report.windows[w].token_rate(),
                               report.windows_exact[w].token_rate()));
  absl::StrAppend(&text, "\n");
  const HotHeads& hot = report.hot_heads;
  absl::StrAppend(
      &text,
      absl::StrFormat(
          "hottest 1%% of heads (%llu heads of %u blocks, %llu+ requests "
          "each): head hit %.4f of %llu repeat requests; per slice:",
          static_cast<unsigned long long>(hot.heads), options.head_blocks,
          static_cast<unsigned long long>(hot.min_requests),
          hot.requests == 0 ? 0.0 : double(hot.head_hits) / hot.requests,
          static_cast<unsigned long long>(hot.requests)));
  for (const auto& [requests, hits] : hot.windows)
    absl::StrAppend(&text,
                    requests == 0
                        ? std::string(" -")
                        : absl::StrFormat(" %.3f", double(hits) / requests));
  absl::StrAppend(&text, "\n");
  if (report.tiers.is_object())
    absl::StrAppend(&text, "tiers: ", report.tiers.dump(), "; ",
                    report.demotions, " demotions, ", report.ghost_hits,
                    " ghost hits\n");
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
  if (!report.nodes.empty())
    absl::StrAppend(&text, ClusterUsageText(report.nodes));
  return text;
}

}  // namespace seqkv::bench
