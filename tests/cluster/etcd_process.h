// Starts a real single-member etcd on loopback for a test, on free ports
// and a fresh data directory, and stops it on destruction.
#ifndef SEQKV_TESTS_CLUSTER_ETCD_PROCESS_H_
#define SEQKV_TESTS_CLUSTER_ETCD_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace seqkv::testing {

class EtcdProcess {
 public:
  // FAILED_PRECONDITION when no etcd binary is installed (etcd-server).
  static absl::StatusOr<std::unique_ptr<EtcdProcess>> Start();
  ~EtcdProcess();

  // "127.0.0.1:PORT" of its client API.
  std::string endpoint() const;
  // Kills it (SIGKILL) and starts it again on the same ports and data, for
  // tests of etcd going away.
  void Kill();
  absl::Status Restart();

 private:
  absl::Status Launch();

  std::string data_dir_;
  pid_t pid_ = -1;
  int client_port_ = 0;
  int peer_port_ = 0;
};

}  // namespace seqkv::testing

#endif  // SEQKV_TESTS_CLUSTER_ETCD_PROCESS_H_
