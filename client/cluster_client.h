// The client side of a seqkv cluster: Client::Connect hands a target
// "etcd://HOST:PORT[,HOST:PORT...]/NAME" to this class, which follows the
// cluster's membership in etcd and routes each call (cluster/placement.h):
// a prompt's Lookup, Get and Put go to the owner of its head by rendezvous
// hashing; Delete goes to every member; RegisterModel to every member, and
// again to members that join later before their first Put of the model.
//
// Hot heads are stored on several owners (MemberView::ReplicasHot: the
// cluster config's replicas_hot or the members' --replicas_hot). Hotness is
// the owner's: each Lookup asks its owner for the P̂ of the prompt's
// placement head (its trie's decayed visit counts), and a head whose P̂ is
// at least the config's hot_lookups / hot_window is hot; the next Put of a
// hot head also stores the head (its first placement_chunks chunks, not the
// rest of the prompt) on the next owners in rendezvous order. A Lookup or Get
// whose owner fails (or lacks a head held hot) asks the next owners, where
// the replicas are.
//
// A member that fails a call (unreachable, or past the per-call deadline)
// costs a miss, never an error: the Lookup or Get answers "nothing stored",
// a Put goes to the next owner in rendezvous order, and the member is left
// out of routing for a short while before it is tried again.
//
// Thread-safety: as Client, every method may be called from any thread.
#ifndef SEQKV_CLIENT_CLUSTER_CLIENT_H_
#define SEQKV_CLIENT_CLUSTER_CLIENT_H_

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "cluster/member_watcher.h"

namespace seqkv {

class ClusterClient {
 public:
  // Per-member call deadline when ClientOptions::timeout_s is 0.
  static constexpr double kDefaultMemberTimeoutS = 5;
  // How long a member that failed a call is left out of routing.
  static constexpr absl::Duration kDownFor = absl::Seconds(2);
  // Owners in rendezvous order a call may go to: the first that is not
  // left out serves it (a Put tries the rest while they fail).
  static constexpr size_t kRouteCandidates = 4;
  // Hot heads remembered between a Lookup and the Put that replicates.
  static constexpr size_t kMaxHotHeads = 1 << 16;

  // `options.server` is the etcd:// target; the rest (API key, TLS,
  // message size, timeout) applies to each member's connection. Waits up
  // to two seconds for the membership; fails only on a malformed target.
  static absl::StatusOr<std::unique_ptr<ClusterClient>> Connect(
      const ClientOptions& options);
  ~ClusterClient();

  absl::StatusOr<LookupResult> Lookup(const std::string& model,
                                      std::span<const int32_t> tokens,
                                      uint32_t alignment,
                                      const std::string& name_space,
                                      uint32_t digest_chunk_tokens);
  absl::StatusOr<PutResult> Put(const PutOptions& options,
                                const KvCache& cache);
  absl::Status GetInto(const GetOptions& options,
                       std::span<const int32_t> tokens, KvCache& cache);
  absl::StatusOr<DeleteResult> Delete(const std::string& model,
                                      std::span<const int32_t> tokens,
                                      const std::string& name_space);
  absl::StatusOr<bool> RegisterModel(const ModelRegistration& registration);
  absl::StatusOr<ModelRegistration> GetModel(const std::string& model);

  // The membership as last seen.
  std::shared_ptr<const cluster::MemberView> view() const {
    return watcher_->view();
  }

 private:
  struct Route {
    std::string member_id;
    Client* client = nullptr;
  };

  explicit ClusterClient(const ClientOptions& options,
                         std::unique_ptr<cluster::MemberWatcher> watcher);
  // Serving members not left out, best owner of `key` first, among its
  // best max(count, kRouteCandidates) owners.
  std::vector<Route> Routes(uint64_t key, size_t count = kRouteCandidates);
  // Every member (serving and draining), for Delete and RegisterModel.
  std::vector<Route> AllMembers();
  Client* ClientFor(const cluster::Member& member);
  void MarkDown(const std::string& member_id);
  // The model's chunk size, asking the members once; 0 if none knows it.
  uint32_t ChunkTokens(const std::string& model);
  uint64_t KeyOf(const std::string& model, const std::string& name_space,
                 std::span<const int32_t> tokens);
  // The head of `cache` (its first placement_chunks chunks, or all of a
  // shorter one): what a hot head's replicas hold.
  KvCache HeadOf(const KvCache& cache, const std::string& model);
  // Puts `cache` on up to `copies` of routes[from...] as well.
  void Replicate(const PutOptions& options, const KvCache& cache,
                 const std::vector<Route>& routes, size_t from,
                 uint32_t copies);
  // Notes what the owner said of head `key`: hot or not (placement.h).
  void NoteHotness(uint64_t key, bool hot);
  bool IsHot(uint64_t key);
  // Registers the model on `route` if this client registered it and has
  // not yet there.
  absl::Status EnsureRegistered(const Route& route, const std::string& model);

  const ClientOptions options_;
  std::unique_ptr<cluster::MemberWatcher> watcher_;

  absl::Mutex mutex_;
  // Connections by member id, with the address they dial.
  std::map<std::string, std::pair<std::string, std::unique_ptr<Client>>>
      clients_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, absl::Time> down_until_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, uint32_t> chunk_tokens_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, ModelRegistration> registrations_
      ABSL_GUARDED_BY(mutex_);
  std::set<std::pair<std::string, std::string>> registered_on_
      ABSL_GUARDED_BY(mutex_);
  // Heads their owners last called hot, the oldest first (at most
  // kMaxHotHeads: a head that stays hot is noted again by its lookups).
  std::deque<uint64_t> hot_order_ ABSL_GUARDED_BY(mutex_);
  std::set<uint64_t> hot_heads_ ABSL_GUARDED_BY(mutex_);
};

// Whether `status` says the member did not answer (as opposed to an answer
// refusing the request): such failures are routed around.
bool IsMemberFailure(const absl::Status& status);

}  // namespace seqkv

#endif  // SEQKV_CLIENT_CLUSTER_CLIENT_H_
