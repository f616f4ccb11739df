#include "cluster/member_watcher.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "spdlog/spdlog.h"

namespace seqkv::cluster {

std::vector<Member> MemberView::Serving() const {
  std::vector<Member> serving;
  for (const Member& member : members)
    if (member.state == MemberState::kServing) serving.push_back(member);
  return serving;
}

uint32_t MemberView::ReplicasHot() const {
  uint32_t replicas = placement.replicas_hot;
  for (const Member& member : members)
    if (member.state == MemberState::kServing)
      replicas = std::max(replicas, member.replicas_hot);
  return replicas;
}

MemberWatcher::MemberWatcher(std::vector<std::string> endpoints,
                             std::string cluster_name,
                             absl::Duration etcd_timeout)
    : etcd_(std::move(endpoints), etcd_timeout),
      cluster_name_(std::move(cluster_name)),
      view_(std::make_shared<MemberView>()) {}

MemberWatcher::~MemberWatcher() { Stop(); }

absl::Status MemberWatcher::Start(absl::Duration wait) {
  thread_ = std::thread([this] { Run(); });
  absl::MutexLock lock(&mutex_);
  auto loaded = [this]() ABSL_SHARED_LOCKS_REQUIRED(mutex_) { return loaded_; };
  if (!mutex_.AwaitWithTimeout(absl::Condition(&loaded), wait))
    return absl::UnavailableError(absl::StrCat(
        "etcd at ", etcd_.endpoints().front(), " did not answer within ",
        absl::FormatDuration(wait), "; following the cluster when it does"));
  return absl::OkStatus();
}

void MemberWatcher::Stop() {
  stop_ = true;
  cancel_.Cancel();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const MemberView> MemberWatcher::view() const {
  absl::MutexLock lock(&mutex_);
  return view_;
}

void MemberWatcher::Publish(bool reachable) {
  auto view = std::make_shared<MemberView>();
  for (const auto& [id, member] : members_) view->members.push_back(member);
  view->placement = placement_;
  view->etcd_reachable = reachable;
  view->last_contact = last_contact_;
  view->revision = revision_;
  view_ = std::move(view);
}

absl::StatusOr<int64_t> MemberWatcher::Reload() {
  auto range = etcd_.RangePrefix(ClusterPrefix(cluster_name_));
  if (!range.ok()) return range.status();
  std::map<std::string, Member> members;
  PlacementOptions placement;
  for (const EtcdKeyValue& kv : range->kvs) {
    if (kv.key == ConfigKey(cluster_name_)) {
      auto parsed = ParsePlacementConfig(kv.value);
      if (parsed.ok()) {
        placement = *parsed;
      } else {
        spdlog::warn("cluster {}: ignoring its config: {}", cluster_name_,
                     parsed.status().ToString());
      }
    } else if (absl::StartsWith(kv.key, MembersPrefix(cluster_name_))) {
      auto member = ParseMember(kv.value);
      if (member.ok()) {
        members[member->id] = std::move(*member);
      } else {
        spdlog::warn("cluster {}: ignoring {}: {}", cluster_name_, kv.key,
                     member.status().ToString());
      }
    }
  }
  absl::MutexLock lock(&mutex_);
  members_ = std::move(members);
  placement_ = placement;
  revision_ = range->revision;
  last_contact_ = absl::Now();
  loaded_ = true;
  Publish(true);
  return range->revision;
}

void MemberWatcher::Apply(const EtcdWatchEvent& event) {
  absl::MutexLock lock(&mutex_);
  last_contact_ = absl::Now();
  revision_ = std::max(revision_, event.kv.mod_revision);
  if (event.kv.key == ConfigKey(cluster_name_)) {
    if (event.deleted) {
      placement_ = PlacementOptions();
    } else if (auto parsed = ParsePlacementConfig(event.kv.value);
               parsed.ok()) {
      placement_ = *parsed;
    }
  } else if (absl::StartsWith(event.kv.key, MembersPrefix(cluster_name_))) {
    const std::string id =
        event.kv.key.substr(MembersPrefix(cluster_name_).size());
    if (event.deleted) {
      members_.erase(id);
    } else if (auto member = ParseMember(event.kv.value);
               member.ok() && member->id == id) {
      members_[id] = std::move(*member);
    }
  }
  Publish(true);
}

void MemberWatcher::Run() {
  absl::Duration backoff = absl::Milliseconds(100);
  bool reported = false;
  while (!stop_) {
    auto revision = Reload();
    absl::Status status = revision.status();
    if (revision.ok()) {
      backoff = absl::Milliseconds(100);
      if (reported)
        spdlog::info("cluster {}: etcd answers again", cluster_name_);
      reported = false;
      status = etcd_.Watch(
          ClusterPrefix(cluster_name_), *revision + 1,
          [this](const EtcdWatchEvent& event) { Apply(event); }, cancel_);
      if (stop_) break;
    }
    {
      absl::MutexLock lock(&mutex_);
      Publish(false);
    }
    if (!reported) {
      spdlog::warn("cluster {}: {}; keeping the last membership", cluster_name_,
                   status.ToString());
      reported = true;
    }
    for (absl::Time until = absl::Now() + backoff;
         !stop_ && absl::Now() < until;)
      absl::SleepFor(absl::Milliseconds(50));
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

}  // namespace seqkv::cluster
