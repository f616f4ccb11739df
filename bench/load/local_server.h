// A seqkv-server child process on loopback with its own temporary data
// directory, for benchmarks and tests that need a real server.
#ifndef SEQKV_BENCH_LOAD_LOCAL_SERVER_H_
#define SEQKV_BENCH_LOAD_LOCAL_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace seqkv::bench {

struct LocalServerOptions {
  // The seqkv-server executable.
  std::string binary;
  // Extra flags, e.g. "--capacity_bytes=1000000" or "--sync_writes=false".
  std::vector<std::string> flags;
  // Parent of the temporary data directory (default: $TMPDIR or /tmp).
  std::string temp_root;
  // Server output goes here (default: a log file in the data directory).
  std::string log_file;
  double start_timeout_s = 60;
};

class LocalServer {
 public:
  // Starts the server on free ports and waits until it serves.
  static absl::StatusOr<std::unique_ptr<LocalServer>> Start(
      const LocalServerOptions& options);
  // Stops the server (SIGTERM, then SIGKILL after 15 s) and removes its data.
  ~LocalServer();
  LocalServer(const LocalServer&) = delete;
  LocalServer& operator=(const LocalServer&) = delete;

  // "127.0.0.1:PORT".
  std::string address() const;
  int grpc_port() const { return grpc_port_; }
  int admin_port() const { return admin_port_; }
  const std::string& data_dir() const { return data_dir_; }
  // Bytes the data directory takes on disk now.
  uint64_t DiskBytes() const;
  // Stops it now; OK when it exits cleanly.
  absl::Status Stop();

 private:
  LocalServer() = default;

  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int admin_port_ = 0;
  std::string temp_dir_;
  std::string data_dir_;
};

// The seqkv-server next to the running executable (/proc/self/exe).
std::string ServerNextToSelf();

}  // namespace seqkv::bench

#endif  // SEQKV_BENCH_LOAD_LOCAL_SERVER_H_
