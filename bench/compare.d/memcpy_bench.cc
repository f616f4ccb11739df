// seqkv-memcpy-bench: memcpy bandwidth of this machine, the ceiling for any
// store that moves bytes through memory. Reports bytes copied per second
// (each byte is read once and written once). With --fresh_pages every copy
// lands in memory mapped just before it: the ceiling for a store of new
// bytes, which must take pages from the kernel for them (on some virtual
// machines far slower than copying into pages already touched). With
// --durable_files DIR every copy is instead a new file of that size in DIR,
// written, fdatasync'ed and its directory fsync'ed: the least a store must
// do to keep new bytes across a power loss, so the ceiling for durable
// Puts on this disk.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
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
ABSL_FLAG(std::string, durable_files, "",
          "write each copy durably as a new file in this directory (removed "
          "at the end)");
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

// Writes `bytes` to a new file `path`, syncs it and its directory `dir`.
bool WriteDurably(const std::string& path, int dir, const char* bytes,
                  size_t size) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                      0644);
  if (fd < 0) return false;
  bool ok = true;
  for (size_t done = 0; ok && done < size;) {
    const ssize_t written = write(fd, bytes + done, size - done);
    ok = written > 0;
    if (ok) done += static_cast<size_t>(written);
  }
  ok = ok && fdatasync(fd) == 0;
  ok = close(fd) == 0 && ok;
  return ok && fsync(dir) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const uint64_t bytes = absl::GetFlag(FLAGS_bytes);
  const int threads = std::max(1, absl::GetFlag(FLAGS_threads));
  const double duration = absl::GetFlag(FLAGS_duration_s);
  const bool fresh_pages = absl::GetFlag(FLAGS_fresh_pages);
  const std::string durable_dir = absl::GetFlag(FLAGS_durable_files);
  int dir_fd = -1;
  if (!durable_dir.empty()) {
    std::filesystem::create_directories(durable_dir);
    dir_fd = open(durable_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
      std::cerr << "cannot open " << durable_dir << "\n";
      return 1;
    }
  }
  std::vector<uint64_t> copies(threads, 0);
  std::vector<std::thread> workers;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline =
      start + std::chrono::milliseconds(static_cast<int64_t>(duration * 1000));
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::vector<char> from(bytes, 1), to(bytes, 0);
      while (std::chrono::steady_clock::now() < deadline) {
        if (dir_fd >= 0) {
          const std::string path = durable_dir + "/" + std::to_string(t) +
                                   "-" + std::to_string(copies[t]);
          if (!WriteDurably(path, dir_fd, from.data(), bytes)) {
            std::cerr << "writing " << path << " failed\n";
            std::abort();
          }
          ++copies[t];
          continue;
        }
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
  if (dir_fd >= 0) {
    close(dir_fd);
    for (int t = 0; t < threads; ++t)
      for (uint64_t n = 0; n < copies[t]; ++n)
        std::filesystem::remove(durable_dir + "/" + std::to_string(t) + "-" +
                                std::to_string(n));
  }
  const char* op = dir_fd >= 0 ? "durable_files" : "memcpy";
  const double gbps = total * static_cast<double>(bytes) / elapsed / 1e9;
  nlohmann::json json = {
      {"command", "memcpy"},
      {"config",
       {{"bytes", bytes},
        {"threads", threads},
        {"fresh_pages", fresh_pages},
        {"durable_files", !durable_dir.empty()}}},
      {"ops",
       {{op,
         {{"count", total},
          {"elapsed_s", elapsed},
          {"ops_per_s", total / elapsed},
          {"gbps", gbps}}}}}};
  std::cout << (absl::GetFlag(FLAGS_json) ? json.dump() : json.dump(2))
            << std::endl;
  return 0;
}
