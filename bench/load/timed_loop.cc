#include "bench/load/timed_loop.h"

#include <atomic>
#include <chrono>
#include <latch>
#include <thread>
#include <vector>

namespace seqkv::bench {

namespace {

using Clock = std::chrono::steady_clock;

struct PerThread {
  LatencyRecorder latency;
  LatencyRecorder warmup;
  uint64_t errors = 0;
  std::string first_error;

  // Runs `op` once, recording its time in `recorder` when it succeeds;
  // false when there is no connection to go on with.
  bool RunOnce(const Operation& op, LatencyRecorder& recorder) {
    const auto start = Clock::now();
    absl::Status status = op ? op() : absl::InternalError("no connection");
    const double ms =
        std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (status.ok()) {
      recorder.Add(ms);
      return true;
    }
    ++errors;
    if (first_error.empty()) first_error = status.ToString();
    return static_cast<bool>(op);
  }
};

}  // namespace

TimedLoopResult RunTimedLoop(const TimedLoopOptions& options,
                             const std::function<Operation(int)>& make_op) {
  const int clients = options.clients;
  std::vector<PerThread> per_thread(clients);
  std::atomic<bool> stop{false};
  std::latch ready(clients);
  std::latch go(1);
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      Operation op = make_op(i);
      PerThread& mine = per_thread[i];
      bool connected = true;
      for (uint32_t n = 0; n < options.warmup_ops && connected; ++n)
        connected = mine.RunOnce(op, mine.warmup);
      ready.count_down();
      go.wait();
      while (connected && !stop.load(std::memory_order_relaxed))
        connected = mine.RunOnce(op, mine.latency);
    });
  }
  ready.wait();
  const auto start = Clock::now();
  go.count_down();
  std::this_thread::sleep_for(std::chrono::milliseconds(
      static_cast<int64_t>(options.duration_s * 1000)));
  stop = true;
  for (std::thread& thread : threads) thread.join();
  TimedLoopResult result;
  result.elapsed_s =
      std::chrono::duration<double>(Clock::now() - start).count();
  LatencyRecorder all, warmup;
  for (const PerThread& t : per_thread) {
    all.Merge(t.latency);
    warmup.Merge(t.warmup);
    result.count += t.latency.count();
    result.errors += t.errors;
    if (result.first_error.empty()) result.first_error = t.first_error;
  }
  result.bytes = result.count * options.bytes_per_op;
  result.latency = all.Summarize();
  result.warmup = warmup.Summarize();
  return result;
}

nlohmann::json TimedLoopJson(const TimedLoopResult& result) {
  nlohmann::json json = {{"count", result.count},
                         {"errors", result.errors},
                         {"bytes", result.bytes},
                         {"elapsed_s", result.elapsed_s},
                         {"ops_per_s", result.count / result.elapsed_s},
                         {"gbps", result.bytes / result.elapsed_s / 1e9},
                         {"mean_ms", result.latency.mean_ms},
                         {"p50_ms", result.latency.p50_ms},
                         {"p90_ms", result.latency.p90_ms},
                         {"p99_ms", result.latency.p99_ms},
                         {"p999_ms", result.latency.p999_ms},
                         {"max_ms", result.latency.max_ms},
                         {"warmup_count", result.warmup.count},
                         {"warmup_max_ms", result.warmup.max_ms}};
  if (!result.first_error.empty()) json["first_error"] = result.first_error;
  return json;
}

}  // namespace seqkv::bench
