#include "tests/cluster/etcd_process.h"

#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace seqkv::testing {
namespace {

// A port the kernel considers free right now.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t size = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  close(fd);
  return ntohs(address.sin_port);
}

std::string FindEtcd() {
  for (const char* path : {"/usr/bin/etcd", "/usr/local/bin/etcd"})
    if (access(path, X_OK) == 0) return path;
  return "";
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdProcess>> EtcdProcess::Start() {
  if (FindEtcd().empty())
    return absl::FailedPreconditionError(
        "no etcd binary: apt-get install etcd-server (scripts/setup)");
  auto etcd = std::unique_ptr<EtcdProcess>(new EtcdProcess());
  std::string pattern =
      (std::filesystem::temp_directory_path() / "seqkv-etcd-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr)
    return absl::InternalError("mkdtemp failed");
  etcd->data_dir_ = pattern;
  etcd->client_port_ = FreePort();
  etcd->peer_port_ = FreePort();
  if (auto status = etcd->Launch(); !status.ok()) return status;
  return etcd;
}

absl::Status EtcdProcess::Launch() {
  const std::string client_url =
      absl::StrCat("http://127.0.0.1:", client_port_);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port_);
  std::vector<std::string> args = {
      FindEtcd(),
      absl::StrCat("--data-dir=", data_dir_, "/data"),
      "--name=test",
      absl::StrCat("--listen-client-urls=", client_url),
      absl::StrCat("--advertise-client-urls=", client_url),
      absl::StrCat("--listen-peer-urls=", peer_url),
      absl::StrCat("--initial-advertise-peer-urls=", peer_url),
      absl::StrCat("--initial-cluster=test=", peer_url),
      "--log-level=error",
      "--logger=zap"};
  pid_ = fork();
  if (pid_ < 0) return absl::InternalError("fork failed");
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  for (int i = 0; i < 200; ++i) {
    httplib::Client client("127.0.0.1", client_port_);
    client.set_connection_timeout(0, 200000);
    if (auto result = client.Get("/health");
        result && result->status == 200 &&
        result->body.find("true") != std::string::npos)
      return absl::OkStatus();
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(
          absl::StrCat("etcd exited during startup, status ", status));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError("etcd did not become healthy");
}

std::string EtcdProcess::endpoint() const {
  return absl::StrCat("127.0.0.1:", client_port_);
}

void EtcdProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

absl::Status EtcdProcess::Restart() {
  Kill();
  return Launch();
}

EtcdProcess::~EtcdProcess() {
  Kill();
  std::error_code ignored;
  std::filesystem::remove_all(data_dir_, ignored);
}

}  // namespace seqkv::testing
