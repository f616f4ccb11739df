#include "bench/load/timed_loop.h"

#include <atomic>
#include <chrono>
#include <latch>
#include <thread>
#include <vector>

namespace seqkv::bench {

TimedLoopResult RunTimedLoop(int clients, double duration_s,
                             uint64_t bytes_per_op,
                             const std::function<Operation(int)>& make_op) {
  using Clock = std::chrono::steady_clock;
  struct PerThread {
    LatencyRecorder latency;
    uint64_t count = 0, errors = 0;
    std::string first_error;
  };
  std::vector<PerThread> per_thread(clients);
  std::atomic<bool> stop{false};
  std::latch ready(clients);
  std::latch go(1);
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      Operation op = make_op(i);
      ready.count_down();
      go.wait();
      PerThread& mine = per_thread[i];
      while (!stop.load(std::memory_order_relaxed)) {
        const auto start = Clock::now();
        absl::Status status = op ? op() : absl::InternalError("no connection");
        const double ms =
            std::chrono::duration<double, std::milli>(Clock::now() - start)
                .count();
        if (status.ok()) {
          ++mine.count;
          mine.latency.Add(ms);
        } else {
          ++mine.errors;
          if (mine.first_error.empty()) mine.first_error = status.ToString();
          if (!op) break;
        }
      }
    });
  }
  ready.wait();
  const auto start = Clock::now();
  go.count_down();
  std::this_thread::sleep_for(
      std::chrono::milliseconds(static_cast<int64_t>(duration_s * 1000)));
  stop = true;
  for (std::thread& thread : threads) thread.join();
  TimedLoopResult result;
  result.elapsed_s =
      std::chrono::duration<double>(Clock::now() - start).count();
  LatencyRecorder all;
  for (const PerThread& t : per_thread) {
    all.Merge(t.latency);
    result.count += t.count;
    result.errors += t.errors;
    if (result.first_error.empty()) result.first_error = t.first_error;
  }
  result.bytes = result.count * bytes_per_op;
  result.latency = all.Summarize();
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
                         {"max_ms", result.latency.max_ms}};
  if (!result.first_error.empty()) json["first_error"] = result.first_error;
  return json;
}

}  // namespace seqkv::bench
