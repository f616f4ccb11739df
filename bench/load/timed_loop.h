// A timed closed loop for the peers measured next to seqkv (null gRPC,
// Redis): N threads each repeat one operation for a fixed time.
#ifndef SEQKV_BENCH_LOAD_TIMED_LOOP_H_
#define SEQKV_BENCH_LOAD_TIMED_LOOP_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "bench/load/latency.h"
#include "nlohmann/json.hpp"

namespace seqkv::bench {

struct TimedLoopOptions {
  int clients = 4;
  double duration_s = 5;
  // Untimed operations each client runs first: the first calls fault in
  // fresh buffers on both ends and would otherwise make up the tail.
  uint32_t warmup_ops = 1;
  uint64_t bytes_per_op = 0;  // counted for every successful operation
};

struct TimedLoopResult {
  uint64_t count = 0;
  uint64_t errors = 0;
  uint64_t bytes = 0;
  double elapsed_s = 0;
  LatencySummary latency;
  LatencySummary warmup;  // of the untimed operations
  std::string first_error;
};

using Operation = std::function<absl::Status()>;

// Each of `options.clients` threads calls make_op(index) once (to connect)
// and runs the operation `warmup_ops` times, all untimed; then every thread
// repeats it for `duration_s` seconds. A failed warm-up operation counts as
// an error.
TimedLoopResult RunTimedLoop(const TimedLoopOptions& options,
                             const std::function<Operation(int)>& make_op);

// {"count", "errors", "ops_per_s", "gbps", "p50_ms", ..., "warmup_count",
// "warmup_max_ms"}: the same fields as one operation of `seqkv bench
// --json`.
nlohmann::json TimedLoopJson(const TimedLoopResult& result);

}  // namespace seqkv::bench

#endif  // SEQKV_BENCH_LOAD_TIMED_LOOP_H_
