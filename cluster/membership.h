// A node's membership in a cluster: it registers its record under a lease
// it keeps alive, refreshes the record's counters now and then, and leaves
// by revoking the lease. A node that dies drops out when its lease expires.
// While etcd does not answer the node goes on serving; it registers again
// once etcd is back (under a new lease if the old one expired meanwhile).
//
// Thread-safety: every method may be called from any thread.
#ifndef SEQKV_CLUSTER_MEMBERSHIP_H_
#define SEQKV_CLUSTER_MEMBERSHIP_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cluster/etcd_gateway.h"
#include "cluster/member.h"
#include "cluster/member_watcher.h"
#include "nlohmann/json.hpp"

namespace seqkv::cluster {

struct MembershipOptions {
  std::vector<std::string> etcd_endpoints;
  std::string cluster_name;
  // The record to register; its counters are refreshed by `fill_counters`.
  Member self;
  // How long the record outlives the node's last keep-alive.
  absl::Duration lease_ttl = absl::Seconds(10);
  // How often the record's counters are rewritten.
  absl::Duration report_interval = absl::Seconds(5);
  absl::Duration etcd_timeout = absl::Seconds(2);
  // Fills the counters of the record (bytes_stored...); may be empty.
  std::function<void(Member&)> fill_counters;
  // Called with the members as the node sees them after each keep-alive
  // (every third of lease_ttl) and at Start; may be empty.
  std::function<void(const MemberView&)> on_view;
};

class Membership {
 public:
  explicit Membership(MembershipOptions options);
  ~Membership();  // Leave()s
  Membership(const Membership&) = delete;
  Membership& operator=(const Membership&) = delete;

  // Registers (waiting up to the etcd timeout) and starts keeping the
  // lease alive. Never fails for etcd being down: the node serves anyway
  // and keeps trying; the returned status says whether it registered.
  absl::Status Start();
  // Marks the record draining (clients route elsewhere), waits `drain`, and
  // leaves.
  void Drain(absl::Duration drain);
  // Stops the keep-alives and deletes the record (revokes the lease).
  void Leave();

  // Whether the record is in etcd as far as the node knows, and whether
  // etcd answered the last call.
  bool registered() const;
  bool etcd_reachable() const;
  // /v1/cluster: this node, etcd's state and the members the node sees.
  nlohmann::json StatusJson() const;
  // Prometheus lines (seqkv_cluster_*).
  std::string PrometheusText() const;

 private:
  void KeepAliveLoop();
  // One step: register if not registered, else keep alive (and rewrite the
  // record when due).
  void Tick();
  absl::Status Register() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  Member Record() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void Note(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const MembershipOptions options_;
  EtcdGateway etcd_;
  MemberWatcher watcher_;
  std::atomic<bool> stop_{false};
  std::thread thread_;

  mutable absl::Mutex mutex_;
  int64_t lease_ ABSL_GUARDED_BY(mutex_) = 0;
  MemberState state_ ABSL_GUARDED_BY(mutex_) = MemberState::kServing;
  bool reachable_ ABSL_GUARDED_BY(mutex_) = false;
  bool left_ ABSL_GUARDED_BY(mutex_) = false;
  absl::Time last_contact_ ABSL_GUARDED_BY(mutex_) = absl::InfinitePast();
  absl::Time last_report_ ABSL_GUARDED_BY(mutex_) = absl::InfinitePast();
  std::string last_error_ ABSL_GUARDED_BY(mutex_);
  uint64_t registrations_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t etcd_errors_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace seqkv::cluster

#endif  // SEQKV_CLUSTER_MEMBERSHIP_H_
