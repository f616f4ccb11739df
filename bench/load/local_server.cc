#include "bench/load/local_server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace seqkv::bench {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<std::string> MakeTempDir(const std::string& root) {
  std::string parent = root;
  if (parent.empty()) {
    const char* env = std::getenv("TMPDIR");
    parent = env != nullptr && *env != '\0' ? env : "/tmp";
  }
  std::string pattern = (fs::path(parent) / "seqkv-bench-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr)
    return absl::InternalError(
        absl::StrCat("cannot create a temporary directory under ", parent));
  return pattern;
}

// Waits up to `timeout_s` for the child to exit; true if it did.
bool WaitExit(pid_t pid, double timeout_s, int& wait_status) {
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  while (true) {
    const pid_t done = waitpid(pid, &wait_status, WNOHANG);
    if (done == pid) return true;
    if (done < 0) return true;  // already reaped
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

std::string ServerNextToSelf() {
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  if (error) return "seqkv-server";
  return (self.parent_path() / "seqkv-server").string();
}

absl::StatusOr<std::unique_ptr<LocalServer>> LocalServer::Start(
    const LocalServerOptions& options) {
  if (access(options.binary.c_str(), X_OK) != 0)
    return absl::NotFoundError(absl::StrCat(
        "seqkv-server binary '", options.binary, "' is not executable"));
  auto temp = MakeTempDir(options.temp_root);
  if (!temp.ok()) return temp.status();
  std::unique_ptr<LocalServer> server(new LocalServer());
  server->temp_dir_ = *temp;
  server->data_dir_ = (fs::path(*temp) / "data").string();
  const std::string ready_file = (fs::path(*temp) / "ready.json").string();
  const std::string log_file = options.log_file.empty()
                                   ? (fs::path(*temp) / "server.log").string()
                                   : options.log_file;
  std::vector<std::string> args = {options.binary,
                                   "--data_dir=" + server->data_dir_,
                                   "--listen=127.0.0.1:0",
                                   "--admin_listen=127.0.0.1:0",
                                   "--ready_file=" + ready_file,
                                   "--log_level=warn"};
  args.insert(args.end(), options.flags.begin(), options.flags.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    // Child: own process group so a terminal ^C reaches only the parent,
    // which then stops the server cleanly.
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the benchmark
    const int fd = open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      close(fd);
    }
    // The server blocks SIGTERM itself and waits for it with sigwait; the
    // parent's mask is inherited across exec, so clear it.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  server->pid_ = pid;

  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(
                            options.start_timeout_s * 1000));
  while (true) {
    int wait_status = 0;
    if (waitpid(pid, &wait_status, WNOHANG) == pid) {
      server->pid_ = -1;
      std::ifstream log(log_file);
      std::stringstream text;
      text << log.rdbuf();
      return absl::InternalError(
          absl::StrCat("seqkv-server exited during startup (status ",
                       wait_status, "); its log:\n", text.str()));
    }
    std::ifstream ready(ready_file);
    if (ready) {
      nlohmann::json info = nlohmann::json::parse(ready, nullptr, false);
      if (!info.is_discarded() && info.contains("grpc_port")) {
        server->grpc_port_ = info.value("grpc_port", 0);
        server->admin_port_ = info.value("admin_port", 0);
        return server;
      }
    }
    if (std::chrono::steady_clock::now() > deadline)
      return absl::DeadlineExceededError(
          absl::StrCat("seqkv-server did not become ready within ",
                       options.start_timeout_s, " s (log: ", log_file, ")"));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string LocalServer::address() const {
  return absl::StrCat("127.0.0.1:", grpc_port_);
}

uint64_t LocalServer::DiskBytes() const {
  uint64_t total = 0;
  std::error_code error;
  for (const auto& entry : fs::recursive_directory_iterator(data_dir_, error)) {
    std::error_code size_error;
    if (entry.is_regular_file(size_error)) total += entry.file_size(size_error);
  }
  return total;
}

absl::Status LocalServer::Stop() {
  if (pid_ <= 0) return absl::OkStatus();
  int wait_status = 0;
  kill(pid_, SIGTERM);
  if (!WaitExit(pid_, 15, wait_status)) {
    kill(pid_, SIGKILL);
    WaitExit(pid_, 5, wait_status);
    pid_ = -1;
    return absl::DeadlineExceededError("seqkv-server ignored SIGTERM; killed");
  }
  pid_ = -1;
  if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0)
    return absl::InternalError(
        absl::StrCat("seqkv-server stopped with status ", wait_status));
  return absl::OkStatus();
}

LocalServer::~LocalServer() {
  Stop().IgnoreError();
  std::error_code error;
  if (!temp_dir_.empty()) fs::remove_all(temp_dir_, error);
}

}  // namespace seqkv::bench
