// The server's part in a cluster (--cluster_etcd): its membership record,
// drain on SIGTERM, and what the admin endpoint shows of the cluster. The
// membership itself is cluster/membership.h.
//
// Thread-safety: the admin callbacks may run on any thread at any time;
// Start and Stop are called by the main thread.
#ifndef SEQKV_SERVER_CLUSTER_JOIN_H_
#define SEQKV_SERVER_CLUSTER_JOIN_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cluster/membership.h"
#include "server/admin_server.h"
#include "server/cache_engine.h"

namespace seqkv {

class ClusterJoin {
 public:
  // From the --cluster_* flags. INVALID_ARGUMENT for malformed ones;
  // enabled() is false without --cluster_etcd.
  static absl::StatusOr<std::unique_ptr<ClusterJoin>> FromFlags(
      const std::string& listen);
  bool enabled() const { return enabled_; }

  // /v1/cluster, the cluster's /metrics lines and /readyz's note.
  void AddAdminRoutes(AdminServerOptions& options);
  // Registers the node (once it serves): its id from `data_dir`, the
  // address clients dial, its capacity and counters. Errors only for an
  // unusable node id; etcd being down is not one.
  absl::Status Start(CacheEngine* engine, const std::string& data_dir,
                     int grpc_port, int admin_port, uint64_t capacity_bytes);
  // On SIGTERM: draining for --drain_s while serving, then leave.
  void Stop();

 private:
  bool enabled_ = false;
  std::vector<std::string> endpoints_;
  std::string name_;
  std::string advertise_;  // empty: --listen's host and the bound port
  std::string listen_host_;
  absl::Duration drain_ = absl::ZeroDuration();
  absl::Duration lease_ttl_ = absl::Seconds(10);
  uint32_t replicas_hot_ = 0;  // --replicas_hot
  absl::Duration report_interval_ = absl::Seconds(5);

  absl::Mutex mutex_;
  std::shared_ptr<cluster::Membership> membership_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_CLUSTER_JOIN_H_
