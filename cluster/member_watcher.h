// Follows a cluster's membership in etcd: reads the members and the
// cluster config once, then watches them. When etcd cannot be reached the
// last view stays in place (marked stale) and the watcher retries.
//
// Thread-safety: view() may be called from any thread at any time.
#ifndef SEQKV_CLUSTER_MEMBER_WATCHER_H_
#define SEQKV_CLUSTER_MEMBER_WATCHER_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cluster/etcd_gateway.h"
#include "cluster/member.h"
#include "cluster/placement.h"

namespace seqkv::cluster {

// One consistent picture of the cluster.
struct MemberView {
  std::vector<Member> members;  // sorted by id, every state
  PlacementOptions placement;
  // False while etcd does not answer: `members` is then the last seen.
  bool etcd_reachable = false;
  // When etcd last answered (absl::InfinitePast() if never).
  absl::Time last_contact = absl::InfinitePast();
  int64_t revision = 0;

  // Members a client routes to (state serving).
  std::vector<Member> Serving() const;
  // Owners a hot head is stored on: the cluster config's replicas_hot, or
  // more where a serving member's --replicas_hot asks so.
  uint32_t ReplicasHot() const;
};

class MemberWatcher {
 public:
  MemberWatcher(std::vector<std::string> endpoints, std::string cluster_name,
                absl::Duration etcd_timeout = absl::Seconds(2));
  ~MemberWatcher();  // Stop()s
  MemberWatcher(const MemberWatcher&) = delete;
  MemberWatcher& operator=(const MemberWatcher&) = delete;

  // Starts following the cluster in a background thread and waits up to
  // `wait` for the first view. UNAVAILABLE if etcd did not answer by then
  // (the watcher keeps trying; view() fills in once it does).
  absl::Status Start(absl::Duration wait);
  void Stop();

  std::shared_ptr<const MemberView> view() const;
  const std::string& cluster_name() const { return cluster_name_; }

 private:
  void Run();
  // Reads everything under the cluster's prefix into the view; the
  // revision to watch from.
  absl::StatusOr<int64_t> Reload();
  void Apply(const EtcdWatchEvent& event);
  void Publish(bool reachable) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  EtcdGateway etcd_;
  const std::string cluster_name_;
  std::atomic<bool> stop_{false};
  WatchCancel cancel_;
  std::thread thread_;

  mutable absl::Mutex mutex_;
  std::map<std::string, Member> members_ ABSL_GUARDED_BY(mutex_);
  PlacementOptions placement_ ABSL_GUARDED_BY(mutex_);
  absl::Time last_contact_ ABSL_GUARDED_BY(mutex_) = absl::InfinitePast();
  int64_t revision_ ABSL_GUARDED_BY(mutex_) = 0;
  bool loaded_ ABSL_GUARDED_BY(mutex_) = false;
  std::shared_ptr<const MemberView> view_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace seqkv::cluster

#endif  // SEQKV_CLUSTER_MEMBER_WATCHER_H_
