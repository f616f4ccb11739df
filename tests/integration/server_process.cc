#include "tests/integration/server_process.h"

#include <httplib.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace seqkv::testing {

std::string DataPath(const std::string& relative) {
  return absl::StrCat(SEQKV_DATA_DIR, "/", relative);
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    std::vector<std::string> extra_flags, std::string data_dir) {
  auto server = std::unique_ptr<ServerProcess>(new ServerProcess());
  server->flags_ = std::move(extra_flags);
  if (data_dir.empty()) {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "seqkv-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr)
      return absl::InternalError("mkdtemp failed");
    data_dir = pattern;
    server->owns_data_dir_ = true;
  }
  server->data_dir_ = data_dir;
  if (auto status = server->Launch(); !status.ok()) return status;
  return server;
}

absl::Status ServerProcess::Launch() {
  const std::string ready = data_dir_ + ".ready";
  std::filesystem::remove(ready);
  std::vector<std::string> args = {
      absl::StrCat(SEQKV_BIN_DIR, "/seqkv-server"),
      absl::StrCat("--data_dir=", data_dir_ + "/db"),
      "--listen=127.0.0.1:0",
      "--admin_listen=127.0.0.1:0",
      absl::StrCat("--ready_file=", ready),
      "--sync_writes=false",
      "--log_level=warn"};
  args.insert(args.end(), flags_.begin(), flags_.end());
  pid_ = fork();
  if (pid_ < 0) return absl::InternalError("fork failed");
  if (pid_ == 0) {
    // Die with the test: a crashed test must not leave a server behind
    // holding ctest's output pipe open.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  for (int i = 0; i < 300; ++i) {
    std::ifstream in(ready);
    if (in) {
      nlohmann::json json = nlohmann::json::parse(in, nullptr, false);
      if (!json.is_discarded()) {
        grpc_port_ = json.value("grpc_port", 0);
        probe_port_ = json.value("probe_port", 0);
        admin_port_ = json.value("admin_port", 0);
        return absl::OkStatus();
      }
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(
          absl::StrCat("seqkv-server exited during startup, status ", status));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError("seqkv-server did not become ready");
}

int ServerProcess::Stop() {
  if (pid_ <= 0) return 0;
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

absl::Status ServerProcess::Kill() {
  if (pid_ <= 0) return absl::FailedPreconditionError("server not running");
  int status = 0;
  // Reap first: a server that died on its own must not pass for one killed.
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return absl::InternalError(
        WIFSIGNALED(status)
            ? absl::StrCat("seqkv-server died of signal ", WTERMSIG(status),
                           " before SIGKILL")
            : absl::StrCat("seqkv-server exited with ", WEXITSTATUS(status),
                           " before SIGKILL"));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  pid_ = -1;
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
    return absl::InternalError(absl::StrCat("seqkv-server ended with status ",
                                            status, " rather than by SIGKILL"));
  return absl::OkStatus();
}

absl::Status ServerProcess::Restart() {
  if (int status = Stop(); status != 0)
    return absl::InternalError(absl::StrCat("server exited with ", status));
  return Launch();
}

ServerProcess::~ServerProcess() {
  Stop();
  if (owns_data_dir_) {
    std::error_code ignored;
    std::filesystem::remove_all(data_dir_, ignored);
    std::filesystem::remove(data_dir_ + ".ready", ignored);
  }
}

void ServerProcess::Signal(int signal) const {
  if (pid_ > 0) kill(pid_, signal);
}

bool ServerProcess::Alive() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) != pid_) return true;
  pid_ = -1;
  return false;
}

std::string ServerProcess::address() const {
  return absl::StrCat("127.0.0.1:", grpc_port_);
}

std::string ServerProcess::admin_address() const {
  return absl::StrCat("127.0.0.1:", admin_port_);
}

absl::StatusOr<std::unique_ptr<Client>> ServerProcess::Connect(
    std::string api_key) const {
  ClientOptions options;
  options.server = address();
  options.api_key = std::move(api_key);
  options.timeout_s = 60;
  return Client::Connect(options);
}

absl::StatusOr<std::string> ServerProcess::AdminGet(
    const std::string& path) const {
  httplib::Client http("127.0.0.1", admin_port_);
  auto result = http.Get(path);
  if (!result) return absl::UnavailableError("admin endpoint unreachable");
  if (result->status != 200)
    return absl::FailedPreconditionError(
        absl::StrCat("HTTP ", result->status, ": ", result->body));
  return result->body;
}

}  // namespace seqkv::testing
