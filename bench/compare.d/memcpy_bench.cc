// seqkv-memcpy-bench: memcpy bandwidth of this machine, the ceiling for any
// store that moves bytes through memory. Reports bytes copied per second
// (each byte is read once and written once).
#include <chrono>
#include <cstring>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(uint64_t, bytes, 32 << 20, "bytes per copy");
ABSL_FLAG(int, threads, 1, "threads copying at once (each its own buffers)");
ABSL_FLAG(double, duration_s, 2, "seconds to run");
ABSL_FLAG(bool, json, false, "print JSON");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const uint64_t bytes = absl::GetFlag(FLAGS_bytes);
  const int threads = std::max(1, absl::GetFlag(FLAGS_threads));
  const double duration = absl::GetFlag(FLAGS_duration_s);
  std::vector<uint64_t> copies(threads, 0);
  std::vector<std::thread> workers;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline =
      start + std::chrono::milliseconds(static_cast<int64_t>(duration * 1000));
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::vector<char> from(bytes, 1), to(bytes, 0);
      while (std::chrono::steady_clock::now() < deadline) {
        std::memcpy(to.data(), from.data(), bytes);
        // Keep the copy observable so it cannot be elided.
        from[copies[t] % bytes] = to[(copies[t] * 7) % bytes] + 1;
        ++copies[t];
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  uint64_t total = 0;
  for (uint64_t c : copies) total += c;
  const double gbps = total * static_cast<double>(bytes) / elapsed / 1e9;
  nlohmann::json json = {{"command", "memcpy"},
                         {"config", {{"bytes", bytes}, {"threads", threads}}},
                         {"ops",
                          {{"memcpy",
                            {{"count", total},
                             {"elapsed_s", elapsed},
                             {"ops_per_s", total / elapsed},
                             {"gbps", gbps}}}}}};
  std::cout << (absl::GetFlag(FLAGS_json) ? json.dump() : json.dump(2))
            << std::endl;
  return 0;
}
