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

struct TimedLoopResult {
  uint64_t count = 0;
  uint64_t errors = 0;
  uint64_t bytes = 0;
  double elapsed_s = 0;
  LatencySummary latency;
  std::string first_error;
};

using Operation = std::function<absl::Status()>;

// Each of `clients` threads calls make_op(index) once (to connect; not
// timed), then repeats the operation for `duration_s` seconds. Every
// successful operation counts `bytes_per_op` bytes.
TimedLoopResult RunTimedLoop(int clients, double duration_s,
                             uint64_t bytes_per_op,
                             const std::function<Operation(int)>& make_op);

// {"count", "errors", "ops_per_s", "gbps", "p50_ms", ...}: the same fields
// as one operation of `seqkv bench --json`.
nlohmann::json TimedLoopJson(const TimedLoopResult& result);

}  // namespace seqkv::bench

#endif  // SEQKV_BENCH_LOAD_TIMED_LOOP_H_
