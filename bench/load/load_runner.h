// The load generator behind `seqkv bench`: N client threads, each with its
// own connection, issuing a mix of Put, Get and Lookup for a fixed time or
// operation count, with per-operation throughput and latency percentiles.
#ifndef SEQKV_BENCH_LOAD_LOAD_RUNNER_H_
#define SEQKV_BENCH_LOAD_LOAD_RUNNER_H_

#include <array>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "bench/load/latency.h"
#include "bench/load/workload.h"
#include "client/client.h"
#include "nlohmann/json.hpp"

namespace seqkv::bench {

enum class OpKind { kPut = 0, kGet = 1, kLookup = 2 };
inline constexpr int kNumOpKinds = 3;
const char* OpName(OpKind kind);

struct LoadOptions {
  ClientOptions client;
  int clients = 4;
  // Relative weights of put, get, lookup; "--op put" is {1, 0, 0}.
  std::array<double, kNumOpKinds> weights = {1, 0, 0};
  WorkloadOptions workload;
  std::string layout_name;
  uint32_t chunk_tokens = 256;
  std::string codec;
  std::string model;  // registered with the layout and chunk_tokens
  // Stop after this long, or after `ops` operations when ops > 0 (whichever
  // comes first; duration_s 0 means no time limit).
  double duration_s = 10;
  uint64_t ops = 0;
  // Sequences stored before timing starts so that Get and Lookup have
  // something to read; 0 picks 2 per client when reads are in the mix.
  uint32_t prefill = 0;
  // How often each client runs every operation of the mix, untimed, after
  // the prefill: the first calls fault in fresh buffers on both ends and
  // would otherwise make up the tail of a short run. Reported apart.
  uint32_t warmup_ops = 1;
  // Compare each Get's bytes with what was put.
  bool verify = false;
  // Lookups send whole chunks as digests (Client::LookupByChunks).
  bool lookup_by_chunks = false;
  // Called about once a second with a one-line progress report.
  std::function<void(const std::string&)> progress;
};

struct OpReport {
  uint64_t count = 0;   // successful operations
  uint64_t errors = 0;  // failed (including short Gets and Lookups)
  uint64_t bytes = 0;   // logical KV bytes moved by successful operations
  double ops_per_s = 0;
  double gbps = 0;  // 1e9 bytes per second
  LatencySummary latency;
  LatencySummary warmup;  // of the untimed warm-up operations
  std::string first_error;
};

struct LoadReport {
  double elapsed_s = 0;
  std::array<OpReport, kNumOpKinds> ops;
  uint64_t prefill_sequences = 0;
  uint64_t bytes_stored = 0;  // as reported by the Puts
  uint64_t chunks_new = 0;
  uint64_t chunks_deduped = 0;
};

absl::StatusOr<LoadReport> RunLoad(const LoadOptions& options);

// Parses "put", "get", "lookup" or "mix" (with `mix` like
// "put:1,get:2,lookup:1") into weights.
absl::StatusOr<std::array<double, kNumOpKinds>> ParseOpWeights(
    const std::string& op, const std::string& mix);

nlohmann::json ReportToJson(const LoadOptions& options,
                            const LoadReport& report);
std::string ReportToText(const LoadOptions& options, const LoadReport& report);

}  // namespace seqkv::bench

#endif  // SEQKV_BENCH_LOAD_LOAD_RUNNER_H_
