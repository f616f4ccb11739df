// Starts a real seqkv-server on loopback for a test, on free ports and a
// fresh data directory, and stops it with SIGTERM (or kills it with SIGKILL,
// for crash tests).
#ifndef SEQKV_TESTS_INTEGRATION_SERVER_PROCESS_H_
#define SEQKV_TESTS_INTEGRATION_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/client.h"

namespace seqkv::testing {

class ServerProcess {
 public:
  // `data_dir` empty: a new temporary directory, removed on destruction.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      std::vector<std::string> extra_flags = {}, std::string data_dir = "");
  ~ServerProcess();

  // Stops with SIGTERM and waits; returns the exit status.
  int Stop();
  // Stops and starts again on the same data directory (after Kill(): starts
  // it again). New ports: connect again afterwards.
  absl::Status Restart();
  // Kills the server with SIGKILL and reaps it, as a crash would. An error
  // if it was not running or had already died otherwise (the status then
  // says how: an exit code or another signal, e.g. SIGABRT).
  absl::Status Kill();

  // Sends `signal` to the server (SIGHUP reloads its config).
  void Signal(int signal) const;
  // Whether the server process is still running (it neither exited nor
  // died by a signal).
  bool Alive();

  // The server's process id, -1 when it is not running.
  pid_t pid() const { return pid_; }
  std::string address() const;
  std::string admin_address() const;
  // The port of --probe_listen (/healthz and /readyz alone); 0 if none.
  int probe_port() const { return probe_port_; }
  const std::string& data_dir() const { return data_dir_; }
  absl::StatusOr<std::unique_ptr<Client>> Connect(
      std::string api_key = "") const;
  // GET on the admin port; returns the body or an error for non-200.
  absl::StatusOr<std::string> AdminGet(const std::string& path) const;

 private:
  absl::Status Launch();

  std::vector<std::string> flags_;
  std::string data_dir_;
  bool owns_data_dir_ = false;
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int admin_port_ = 0;
  int probe_port_ = 0;
};

// Path of a file in the shared data directory.
std::string DataPath(const std::string& relative);

}  // namespace seqkv::testing

#endif  // SEQKV_TESTS_INTEGRATION_SERVER_PROCESS_H_
