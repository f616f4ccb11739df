#include "client/cluster_client.h"

#include "absl/strings/str_cat.h"
#include "cluster/placement.h"
#include "cluster/rendezvous.h"

namespace seqkv {

bool IsMemberFailure(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kDataLoss:  // a Get stream that broke off
      return true;
    default:
      return false;
  }
}

absl::StatusOr<std::unique_ptr<ClusterClient>> ClusterClient::Connect(
    const ClientOptions& options) {
  auto target = cluster::ParseClusterTarget(options.server);
  if (!target.ok()) return target.status();
  auto watcher =
      std::make_unique<cluster::MemberWatcher>(target->endpoints, target->name);
  // etcd down at connect is not an error: calls fail as for a server that
  // is down, and the watcher picks the members up once etcd answers.
  (void)watcher->Start(absl::Seconds(2));
  return std::unique_ptr<ClusterClient>(
      new ClusterClient(options, std::move(watcher)));
}

ClusterClient::ClusterClient(const ClientOptions& options,
                             std::unique_ptr<cluster::MemberWatcher> watcher)
    : options_(options), watcher_(std::move(watcher)) {}

ClusterClient::~ClusterClient() { watcher_->Stop(); }

Client* ClusterClient::ClientFor(const cluster::Member& member) {
  absl::MutexLock lock(&mutex_);
  auto& [address, client] = clients_[member.id];
  if (client == nullptr || address != member.address) {
    ClientOptions member_options = options_;
    member_options.server = member.address;
    if (member_options.timeout_s <= 0)
      member_options.timeout_s = kDefaultMemberTimeoutS;
    auto connected = Client::Connect(member_options);
    if (!connected.ok()) return nullptr;
    client = std::move(*connected);
    address = member.address;
    // A new address is a restarted node: it may lack the registrations.
    for (auto it = registered_on_.begin(); it != registered_on_.end();)
      it = it->first == member.id ? registered_on_.erase(it) : std::next(it);
  }
  return client.get();
}

void ClusterClient::MarkDown(const std::string& member_id) {
  absl::MutexLock lock(&mutex_);
  down_until_[member_id] = absl::Now() + kDownFor;
}

std::vector<ClusterClient::Route> ClusterClient::Routes(uint64_t key,
                                                        size_t count) {
  const std::vector<cluster::Member> serving = watcher_->view()->Serving();
  std::vector<Route> routes;
  const absl::Time now = absl::Now();
  // The best few owners are enough: a Lookup or Get asks the first one up,
  // a Put tries the next ones while members fail.
  for (size_t index : cluster::RankMembers(
           key, serving, std::max<size_t>(count, kRouteCandidates))) {
    const cluster::Member& member = serving[index];
    {
      absl::MutexLock lock(&mutex_);
      auto down = down_until_.find(member.id);
      if (down != down_until_.end() && down->second > now) continue;
    }
    if (Client* client = ClientFor(member))
      routes.push_back({member.id, client});
  }
  return routes;
}

std::vector<ClusterClient::Route> ClusterClient::AllMembers() {
  std::vector<Route> routes;
  for (const cluster::Member& member : watcher_->view()->members)
    if (Client* client = ClientFor(member))
      routes.push_back({member.id, client});
  return routes;
}

uint32_t ClusterClient::ChunkTokens(const std::string& model) {
  {
    absl::MutexLock lock(&mutex_);
    if (auto it = chunk_tokens_.find(model); it != chunk_tokens_.end())
      return it->second;
  }
  for (const Route& route : Routes(0)) {
    auto described = route.client->GetModel(model);
    if (IsMemberFailure(described.status())) MarkDown(route.member_id);
    if (!described.ok()) continue;
    absl::MutexLock lock(&mutex_);
    chunk_tokens_[model] = described->chunk_tokens;
    return described->chunk_tokens;
  }
  return 0;
}

uint64_t ClusterClient::KeyOf(const std::string& model,
                              const std::string& name_space,
                              std::span<const int32_t> tokens) {
  return cluster::PlacementKey(model, name_space, tokens, ChunkTokens(model),
                               watcher_->view()->placement);
}

void ClusterClient::NoteHotness(uint64_t key, bool hot) {
  absl::MutexLock lock(&mutex_);
  if (!hot) {
    // Left in hot_order_ until it is trimmed: harmless.
    hot_heads_.erase(key);
    return;
  }
  if (!hot_heads_.insert(key).second) return;
  hot_order_.push_back(key);
  while (hot_order_.size() > kMaxHotHeads) {
    hot_heads_.erase(hot_order_.front());
    hot_order_.pop_front();
  }
}

bool ClusterClient::IsHot(uint64_t key) {
  absl::MutexLock lock(&mutex_);
  return hot_heads_.contains(key);
}

absl::Status ClusterClient::EnsureRegistered(const Route& route,
                                             const std::string& model) {
  ModelRegistration registration;
  {
    absl::MutexLock lock(&mutex_);
    auto it = registrations_.find(model);
    if (it == registrations_.end() ||
        registered_on_.contains({route.member_id, model}))
      return absl::OkStatus();
    registration = it->second;
  }
  auto registered = route.client->RegisterModel(registration);
  if (!registered.ok()) return registered.status();
  absl::MutexLock lock(&mutex_);
  registered_on_.insert({route.member_id, model});
  return absl::OkStatus();
}

absl::StatusOr<LookupResult> ClusterClient::Lookup(
    const std::string& model, std::span<const int32_t> tokens,
    uint32_t alignment, const std::string& name_space,
    uint32_t digest_chunk_tokens) {
  const uint32_t chunk_tokens = ChunkTokens(model);
  const std::shared_ptr<const cluster::MemberView> view = watcher_->view();
  const cluster::PlacementOptions& placement = view->placement;
  const uint32_t replicas = view->ReplicasHot();
  const uint64_t key = KeyOf(model, name_space, tokens);
  const std::vector<Route> routes = Routes(key, replicas);
  if (routes.empty()) {
    if (watcher_->view()->Serving().empty())
      return absl::UnavailableError(absl::StrCat(
          "cluster '", watcher_->cluster_name(), "' has no serving member"));
    return LookupResult{};  // every owner is down: a miss
  }
  // Hot heads have replicas on the next owners: they answer for a failed
  // one, and for one that lacks the head (it was away when the head was
  // stored on the others).
  const size_t attempts =
      std::min<size_t>(std::max<uint32_t>(replicas, 1), routes.size());
  const bool known_hot = replicas > 1 && IsHot(key);
  absl::StatusOr<LookupResult> result = LookupResult{};
  bool answered = false;
  size_t answered_by = 0;
  for (size_t i = 0; i < attempts; ++i) {
    const Route& owner = routes[i];
    auto answer =
        digest_chunk_tokens > 0
            ? owner.client->LookupByChunks(model, tokens, digest_chunk_tokens,
                                           alignment, name_space,
                                           placement.prefix_chunks)
            : owner.client->Lookup(model, tokens, alignment, name_space,
                                   placement.prefix_chunks);
    if (IsMemberFailure(answer.status())) {
      MarkDown(owner.member_id);
      continue;
    }
    // The first answer stands (an error included) unless a replica's
    // matches more.
    if (!answered ||
        (answer.ok() &&
         (!result.ok() || answer->matched_tokens > result->matched_tokens))) {
      result = std::move(answer);
      answered_by = i;
    }
    answered = true;
    if (!known_hot || (result.ok() && result->matched_tokens > 0)) break;
  }
  // Only the first owner sees the head's traffic: a replica's answer (it
  // serves the head only while the owner is away) leaves it as it was.
  if (replicas > 1 && result.ok() && result->matched_tokens > 0 &&
      answered_by == 0)
    NoteHotness(key, result->head_probability >= placement.HotProbability());
  // A member that has not stored the model yet, where another has: a miss.
  if (result.status().code() == absl::StatusCode::kNotFound && chunk_tokens > 0)
    return LookupResult{};
  return result;
}

absl::StatusOr<PutResult> ClusterClient::Put(const PutOptions& options,
                                             const KvCache& cache) {
  const uint32_t replicas = watcher_->view()->ReplicasHot();
  const uint64_t key = KeyOf(options.model, options.name_space, cache.tokens);
  // The owner, the replicas and a few more to fall back on.
  const std::vector<Route> routes =
      Routes(key, replicas + kRouteCandidates - 1);
  absl::Status last = absl::UnavailableError(absl::StrCat(
      "cluster '", watcher_->cluster_name(), "' has no reachable member"));
  for (size_t i = 0; i < routes.size(); ++i) {
    const Route& route = routes[i];
    absl::Status registered = EnsureRegistered(route, options.model);
    if (!registered.ok() && !IsMemberFailure(registered)) return registered;
    if (registered.ok()) {
      auto stored = route.client->Put(options, cache);
      if (!IsMemberFailure(stored.status())) {
        if (stored.ok() && replicas > 1 && IsHot(key))
          Replicate(options, HeadOf(cache, options.model), routes, i + 1,
                    replicas - 1);
        return stored;
      }
      last = stored.status();
    } else {
      last = registered;
    }
    MarkDown(route.member_id);  // and store on the next owner instead
  }
  return last;
}

KvCache ClusterClient::HeadOf(const KvCache& cache, const std::string& model) {
  // Without the model's chunk size (no member knows it) the whole prompt.
  const uint32_t chunk_tokens = ChunkTokens(model);
  const uint32_t head_tokens =
      chunk_tokens == 0
          ? cache.num_tokens()
          : static_cast<uint32_t>(std::min<uint64_t>(
                cache.num_tokens(),
                uint64_t{watcher_->view()->placement.prefix_chunks} *
                    chunk_tokens));
  KvCache head;
  head.layout = cache.layout;
  head.tokens.assign(cache.tokens.begin(), cache.tokens.begin() + head_tokens);
  head.AllocateTensors();
  std::vector<std::byte> wire(size_t{head_tokens} *
                              cache.layout.bytes_per_token());
  cache.CopyTokenMajor(0, head_tokens, wire);
  head.ScatterTokenMajor(0, wire);
  return head;
}

void ClusterClient::Replicate(const PutOptions& options, const KvCache& cache,
                              const std::vector<Route>& routes, size_t from,
                              uint32_t copies) {
  // Best effort: a replica that fails is only a replica fewer.
  for (size_t i = from; i < routes.size() && copies > 0; ++i) {
    if (!EnsureRegistered(routes[i], options.model).ok()) continue;
    auto stored = routes[i].client->Put(options, cache);
    if (IsMemberFailure(stored.status())) {
      MarkDown(routes[i].member_id);
      continue;
    }
    --copies;
  }
}

absl::Status ClusterClient::GetInto(const GetOptions& options,
                                    std::span<const int32_t> tokens,
                                    KvCache& cache) {
  const uint32_t chunk_tokens = ChunkTokens(options.model);
  const uint32_t replicas = watcher_->view()->ReplicasHot();
  const uint64_t key = KeyOf(options.model, options.name_space, tokens);
  const std::vector<Route> routes = Routes(key, replicas);
  absl::Status status = absl::UnavailableError(absl::StrCat(
      "cluster '", watcher_->cluster_name(), "' has no serving member"));
  if (!routes.empty()) {
    // As Lookup: a hot head's replicas answer for an owner that failed or
    // lacks it.
    const size_t attempts =
        replicas > 1 ? std::min<size_t>(replicas, routes.size()) : 1;
    const bool known_hot = replicas > 1 && IsHot(key);
    for (size_t i = 0; i < attempts; ++i) {
      status = routes[i].client->GetInto(options, tokens, cache);
      if (IsMemberFailure(status)) {
        MarkDown(routes[i].member_id);
        continue;
      }
      const bool missed =
          (status.ok() && cache.tokens.empty()) ||
          (status.code() == absl::StatusCode::kNotFound && chunk_tokens > 0);
      if (!known_hot || !missed) break;
    }
  } else if (!watcher_->view()->Serving().empty()) {
    status = absl::UnavailableError("every owner is down");
  }
  const bool miss =
      IsMemberFailure(status) ||
      (status.code() == absl::StatusCode::kNotFound && chunk_tokens > 0);
  if (miss && !watcher_->view()->Serving().empty()) {
    // Nothing matched, as far as the caller can tell.
    cache.tokens.clear();
    cache.k.clear();
    cache.v.clear();
    return absl::OkStatus();
  }
  return status;
}

absl::StatusOr<DeleteResult> ClusterClient::Delete(
    const std::string& model, std::span<const int32_t> tokens,
    const std::string& name_space) {
  // The head of a prompt may be stored on several members (placement.h).
  DeleteResult total;
  absl::Status first_error;
  const std::vector<Route> routes = AllMembers();
  if (routes.empty())
    return absl::UnavailableError(
        absl::StrCat("cluster '", watcher_->cluster_name(), "' has no member"));
  for (const Route& route : routes) {
    auto deleted = route.client->Delete(model, tokens, name_space);
    if (deleted.ok()) {
      total.chunks_deleted += deleted->chunks_deleted;
      total.bytes_freed += deleted->bytes_freed;
    } else if (deleted.status().code() != absl::StatusCode::kNotFound &&
               first_error.ok()) {
      // A member that could not delete keeps what the caller asked to
      // remove: that is an error, not a miss.
      first_error = absl::Status(deleted.status().code(),
                                 absl::StrCat("member ", route.member_id, ": ",
                                              deleted.status().message()));
    }
  }
  if (!first_error.ok()) return first_error;
  return total;
}

absl::StatusOr<bool> ClusterClient::RegisterModel(
    const ModelRegistration& registration) {
  {
    absl::MutexLock lock(&mutex_);
    registrations_[registration.model] = registration;
    chunk_tokens_.erase(registration.model);
  }
  bool created = false;
  bool any = false;
  absl::Status last = absl::UnavailableError(absl::StrCat(
      "cluster '", watcher_->cluster_name(), "' has no reachable member"));
  for (const Route& route : AllMembers()) {
    auto registered = route.client->RegisterModel(registration);
    if (IsMemberFailure(registered.status())) {
      // Registered there before its first Put instead.
      last = registered.status();
      continue;
    }
    if (!registered.ok()) return registered.status();
    any = true;
    created = created || *registered;
    absl::MutexLock lock(&mutex_);
    registered_on_.insert({route.member_id, registration.model});
  }
  if (!any) return last;
  return created;
}

absl::StatusOr<ModelRegistration> ClusterClient::GetModel(
    const std::string& model) {
  absl::Status last = absl::UnavailableError(absl::StrCat(
      "cluster '", watcher_->cluster_name(), "' has no reachable member"));
  for (const Route& route : Routes(0)) {
    auto described = route.client->GetModel(model);
    if (described.ok()) return described;
    if (IsMemberFailure(described.status())) MarkDown(route.member_id);
    last = described.status();
  }
  return last;
}

}  // namespace seqkv
