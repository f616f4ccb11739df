// seqkv-memcpy-bench: memcpy bandwidth of this machine, the ceiling for any
// store that moves bytes through memory. Reports bytes copied per second
// (each byte is read once and written once). With --fresh_pages every copy
// lands in memory mapped just before it: the ceiling for a store of new
// bytes, which must take pages from the kernel for them (on some virtual
// machines far slower than copying into pages already touched).
#include <sys/mman.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(uint64_t, bytes, 32 << 20, "bytes per copy");
ABSL_FLAG(int, threads, 1, "threads copying at once (each its own buffers)");
ABSL_FLAG(double, duration_s, 2, "seconds to run");
ABSL_FLAG(bool, fresh_pages, false,
          "copy into freshly mapped memory each time (new pages)");
ABSL_FLAG(bool, json, false, "print JSON");

namespace {

// An anonymous mapping, unmapped when it goes out of scope.
class FreshPages {
 public:
  explicit FreshPages(size_t bytes) : bytes_(bytes) {
    void* address = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (address != MAP_FAILED) data_ = static_cast<char*>(address);
  }
  ~FreshPages() {
    if (data_ != nullptr) munmap(data_, bytes_);
  }
  FreshPages(const FreshPages&) = delete;
  FreshPages& operator=(const FreshPages&) = delete;
  char* data() const { return data_; }

 private:
  size_t bytes_;
  char* data_ = nullptr;
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const uint64_t bytes = absl::GetFlag(FLAGS_bytes);
  const int threads = std::max(1, absl::GetFlag(FLAGS_threads));
  const double duration = absl::GetFlag(FLAGS_duration_s);
  const bool fresh_pages = absl::GetFlag(FLAGS_fresh_pages);
  std::vector<uint64_t> copies(threads, 0);
  std::vector<std::thread> workers;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline =
      start + std::chrono::milliseconds(static_cast<int64_t>(duration * 1000));
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::vector<char> from(bytes, 1), to(bytes, 0);
      while (std::chrono::steady_clock::now() < deadline) {
        char* target = to.data();
        std::unique_ptr<FreshPages> fresh;
        if (fresh_pages) {
          fresh = std::make_unique<FreshPages>(bytes);
          if (fresh->data() == nullptr) {
            std::cerr << "mmap failed\n";
            std::abort();
          }
          target = fresh->data();
        }
        std::memcpy(target, from.data(), bytes);
        // Keep the copy observable so it cannot be elided.
        from[copies[t] % bytes] = target[(copies[t] * 7) % bytes] + 1;
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
  nlohmann::json json = {
      {"command", "memcpy"},
      {"config",
       {{"bytes", bytes}, {"threads", threads}, {"fresh_pages", fresh_pages}}},
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
