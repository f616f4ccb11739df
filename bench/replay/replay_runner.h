// `seqkv replay`: drives a server with a request trace the way an inference
// worker would (Lookup the prompt, then Put it; the server stores only the
// blocks it lacks) and measures the prefix-cache hit rate it achieves.
#ifndef SEQKV_BENCH_REPLAY_REPLAY_RUNNER_H_
#define SEQKV_BENCH_REPLAY_REPLAY_RUNNER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/load/latency.h"
#include "bench/replay/cluster_report.h"
#include "bench/replay/kv_source.h"
#include "bench/replay/trace.h"
#include "client/client.h"
#include "codec/kv_layout.h"
#include "nlohmann/json.hpp"

namespace seqkv::bench {

struct ReplayOptions {
  std::string trace;
  size_t requests = 0;  // 0: all
  // Empty: start a seqkv-server of our own (server_binary) on a temporary
  // directory and stop it at the end.
  std::string server;
  std::string server_binary;
  // Admin HTTP address of an external server, for its stored bytes.
  std::string admin;
  // Server capacity: blocks of the trace, bytes, or a fraction of
  // bytes_unique_raw (what every distinct block of the replayed requests
  // takes raw); at most one, none means unlimited. Only applies to a server
  // we start.
  uint64_t capacity_blocks = 0;
  uint64_t capacity_bytes = 0;
  double capacity_raw_fraction = 0;
  // The server's --retention (plt or lru); empty: its default. Only
  // applies to a server we start.
  std::string retention;
  // The server's --tiers (none, lossy, lossy,tokens); empty: its default.
  // Only applies to a server we start.
  std::string tiers;
  // The server's --tier_shares (EXACT,LOSSY_1); empty: its default. Only
  // applies to a server we start.
  std::string tier_shares;
  // Requests are sent at this many times the pace of the trace's
  // timestamps (0: each as soon as the one before is done). A server's
  // background work (demotion) keeps up with a real arrival rate that a
  // replay as fast as it goes compresses many times.
  double speedup = 0;
  // Tokens per hash id of the trace (Mooncake's: 512; some traces use 64);
  // also the replayed model's chunk size.
  uint32_t block_tokens = 512;
  // Small so that the whole trace fits; the hit rate does not depend on it.
  // Replaced by the slice's layout under kv_source.
  KvLayout layout;
  // Real KV caches as the blocks' content (empty glob: random bytes, and
  // blocks of block_tokens tokens). Each block then stores
  // kv_source.slice_tokens tokens.
  KvSourceOptions kv_source;
  std::string codec = "raw";
  std::string model;  // empty: named after the layout
  uint64_t seed = 1;
  int windows = 10;  // hit rate over time: this many slices of the requests
  // A prompt's head: its first this many blocks (a cluster's placement
  // depth, --placement_chunks). The hottest 1% of heads are followed on
  // their own (HotHeads).
  uint32_t head_blocks = 2;
  // Every this many requests (0: never), Get the matched prefix before the
  // Put, at any fidelity and exact only, and compare it with the KV that
  // was Put: what the served chunks' errors are (ServedCheck).
  size_t verify_every = 0;
  std::function<void(const std::string&)> progress;
};

// Chunks a replay fetched back (ReplayOptions::verify_every) against what
// it Put: bit-exact ones, and the relative MSE (squared error over squared
// value, per chunk and tensor) of the others.
struct ServedCheck {
  uint64_t requests = 0;
  uint64_t chunks = 0;        // served at any fidelity
  uint64_t chunks_exact = 0;  // of those, bit-exact
  // Chunks an exact-only Get served that were not bit-exact: must be 0.
  uint64_t exact_only_chunks = 0;
  uint64_t exact_only_mismatches = 0;
  // Over the chunks that were not bit-exact, per tensor (K, V or latent).
  double rel_mse_sum[2] = {0, 0};
  double rel_mse_max[2] = {0, 0};
  // With a fidelity profile (a KV source's, cut to the slice): each lossy
  // chunk's error as the profile counts it, Σ sensitivity × weighted
  // relative MSE over its groups (the KL it predicts; channel weights
  // applied, keys in the pre-RoPE frame, as calibration measures), divided
  // by Σ sensitivity: a relative MSE comparable with a tier's target.
  bool profiled = false;
  double profile_rel_mse_sum = 0;
  double profile_rel_mse_max = 0;
};

// The requests whose head is among the hottest 1% of the replayed
// requests' distinct heads (by how many requests start with it, at least
// one), and whose head an earlier request already stored: could their
// head hit? Overall and per window, as requests and head hits.
struct HotHeads {
  uint64_t heads = 0;         // distinct hot heads
  uint64_t min_requests = 0;  // requests of the least hot of them
  uint64_t requests = 0;      // repeat requests of hot heads
  uint64_t head_hits = 0;     // of those, whose whole head hit
  std::vector<std::pair<uint64_t, uint64_t>> windows;  // requests, hits
};

// Picks the hot heads of `requests` (ReplayOptions::head_blocks): the
// returned set holds their hash ids' HeadKey.
uint64_t HeadKey(const TraceRequest& request, uint32_t head_blocks);
std::vector<uint64_t> HottestHeads(const std::vector<TraceRequest>& requests,
                                   uint32_t head_blocks, double fraction,
                                   uint64_t* min_requests);

struct ReplayReport {
  // Through an etcd:// target: each member's stored bytes at the end.
  std::vector<NodeUsage> nodes;
  // Hits at any fidelity the server holds KV at (Lookup's matched_tokens)
  // and exact ones only (matched_tokens_exact), overall and per window.
  HitCounts hits;
  HitCounts hits_exact;
  std::vector<HitCounts> windows;
  std::vector<HitCounts> windows_exact;
  HotHeads hot_heads;
  // The same trace through the reference LRU model at the same capacity.
  HitCounts reference;
  ServedCheck served;
  uint64_t distinct_blocks = 0;
  // Every distinct block of the replayed requests, raw, at the replay's
  // layout and tokens per block.
  uint64_t bytes_unique_raw = 0;
  // Tokens each (whole) block stores: block_tokens, or the KV slice's.
  uint32_t stored_block_tokens = 0;
  KvLayout layout;  // the replayed model's: options' or the KV slice's
  std::string model;
  nlohmann::json kv_source;     // KvSource::Describe(); null when synthetic
  uint64_t capacity_bytes = 0;  // 0: unlimited
  uint64_t capacity_blocks = 0;
  uint64_t bytes_put_new = 0;  // bytes_stored summed over Put responses
  uint64_t chunks_new = 0;
  uint64_t chunks_deduped = 0;
  // From the server's admin stats at the end (-1 when not available).
  int64_t bytes_stored = -1;
  int64_t chunks_stored = -1;
  int64_t evictions = -1;
  // Chunks stored again while the server remembered them (its /v1/stats
  // retention counters), and its policy.
  int64_t readmissions = -1;
  std::string server_retention;
  // The server's retention tiers (/v1/stats "retention": "tiers",
  // "demotions", "ghost_hits"); null where the server does not report them.
  nlohmann::json tiers;
  int64_t demotions = -1;
  int64_t ghost_hits = -1;
  uint64_t disk_bytes = 0;  // data directory of a server we started
  double elapsed_s = 0;
  LatencySummary lookup_latency;
  LatencySummary put_latency;
};

absl::StatusOr<ReplayReport> RunReplay(const ReplayOptions& options);

// The token ids of block `hash_id`: `count` (at most a block) of them, a
// function of the id alone so that equal ids give equal blocks (ids are chained
// hashes: an id fixes the whole prefix before it too).
void BlockTokens(uint64_t seed, uint64_t hash_id, uint32_t count,
                 std::vector<int32_t>& out);

// Tokens stored for a trace block of `trace_tokens` (at most block_tokens)
// when each whole block stores `stored_block_tokens`: in proportion, rounded
// up, so a partial last block stays partial and never empty.
uint32_t StoredTokens(uint32_t trace_tokens, uint32_t block_tokens,
                      uint32_t stored_block_tokens);

// The trace tokens of `request` covered by its first `matched` stored tokens
// (whole blocks only), when blocks store stored_block_tokens each.
uint32_t TraceTokensMatched(const TraceRequest& request, uint32_t matched,
                            uint32_t stored_block_tokens);

nlohmann::json ReplayToJson(const ReplayOptions& options,
                            const ReplayReport& report);
std::string ReplayToText(const ReplayOptions& options,
                         const ReplayReport& report);

}  // namespace seqkv::bench

#endif  // SEQKV_BENCH_REPLAY_REPLAY_RUNNER_H_
