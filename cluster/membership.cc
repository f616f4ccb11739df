#include "cluster/membership.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"

namespace seqkv::cluster {
namespace {

int64_t MillisSince(absl::Time when) {
  if (when == absl::InfinitePast()) return -1;
  return absl::ToInt64Milliseconds(absl::Now() - when);
}

}  // namespace

Membership::Membership(MembershipOptions options)
    : options_(std::move(options)),
      etcd_(options_.etcd_endpoints, options_.etcd_timeout),
      watcher_(options_.etcd_endpoints, options_.cluster_name,
               options_.etcd_timeout) {}

Membership::~Membership() { Leave(); }

absl::Status Membership::Start() {
  absl::Status status;
  {
    absl::MutexLock lock(&mutex_);
    status = Register();
  }
  if (status.ok()) {
    spdlog::info("cluster {}: registered as {} ({})", options_.cluster_name,
                 options_.self.id, options_.self.address);
  } else {
    spdlog::warn(
        "cluster {}: not registered yet, serving anyway and retrying: {}",
        options_.cluster_name, status.ToString());
  }
  // The node's own view of its peers, for /v1/cluster.
  (void)watcher_.Start(absl::ZeroDuration());
  thread_ = std::thread([this] { KeepAliveLoop(); });
  return status;
}

Member Membership::Record() const {
  Member record = options_.self;
  record.state = state_;
  if (options_.fill_counters) options_.fill_counters(record);
  return record;
}

void Membership::Note(const absl::Status& status) {
  if (status.ok()) {
    if (!reachable_ && last_contact_ != absl::InfinitePast())
      spdlog::info("cluster {}: etcd answers again", options_.cluster_name);
    reachable_ = true;
    last_contact_ = absl::Now();
    return;
  }
  ++etcd_errors_;
  last_error_ = status.ToString();
  if (status.code() == absl::StatusCode::kUnavailable ||
      status.code() == absl::StatusCode::kDeadlineExceeded) {
    if (reachable_)
      spdlog::warn(
          "cluster {}: etcd unavailable, serving with the last membership: {}",
          options_.cluster_name, last_error_);
    reachable_ = false;
  }
}

absl::Status Membership::Register() {
  auto lease = etcd_.GrantLease(
      std::max<int64_t>(1, absl::ToInt64Seconds(options_.lease_ttl)));
  Note(lease.status());
  if (!lease.ok()) return lease.status();
  const absl::Status put =
      etcd_.Put(MemberKey(options_.cluster_name, options_.self.id),
                MemberToJson(Record()), *lease);
  Note(put);
  if (!put.ok()) {
    (void)etcd_.RevokeLease(*lease);
    return put;
  }
  lease_ = *lease;
  last_report_ = absl::Now();
  ++registrations_;
  return absl::OkStatus();
}

void Membership::Tick() {
  absl::MutexLock lock(&mutex_);
  if (left_) return;
  if (lease_ == 0) {
    if (Register().ok())
      spdlog::info("cluster {}: registered as {} ({})", options_.cluster_name,
                   options_.self.id, options_.self.address);
    return;
  }
  absl::Status status = etcd_.KeepAlive(lease_);
  Note(status.code() == absl::StatusCode::kNotFound ? absl::OkStatus()
                                                    : status);
  if (status.code() == absl::StatusCode::kNotFound) {
    // Expired while etcd was away (or was revoked by hand): the record is
    // gone with it. Register anew right away.
    spdlog::warn("cluster {}: lease expired; registering again",
                 options_.cluster_name);
    lease_ = 0;
    (void)Register();
    return;
  }
  if (status.ok() && absl::Now() - last_report_ >= options_.report_interval) {
    const absl::Status put =
        etcd_.Put(MemberKey(options_.cluster_name, options_.self.id),
                  MemberToJson(Record()), lease_);
    Note(put);
    if (put.ok()) last_report_ = absl::Now();
  }
}

void Membership::KeepAliveLoop() {
  // A third of the TTL between keep-alives: two may fail before the lease
  // expires. Shorter while not registered, to rejoin soon.
  while (!stop_) {
    Tick();
    if (options_.on_view) options_.on_view(*watcher_.view());
    absl::Duration wait = options_.lease_ttl / 3;
    {
      absl::MutexLock lock(&mutex_);
      if (lease_ == 0) wait = std::min(wait, absl::Milliseconds(500));
    }
    for (absl::Time until = absl::Now() + wait; !stop_ && absl::Now() < until;)
      absl::SleepFor(absl::Milliseconds(20));
  }
}

void Membership::Drain(absl::Duration drain) {
  {
    absl::MutexLock lock(&mutex_);
    if (left_) return;
    state_ = MemberState::kDraining;
    if (lease_ != 0)
      Note(etcd_.Put(MemberKey(options_.cluster_name, options_.self.id),
                     MemberToJson(Record()), lease_));
  }
  spdlog::info("cluster {}: draining for {}", options_.cluster_name,
               absl::FormatDuration(drain));
  absl::SleepFor(drain);
  Leave();
}

void Membership::Leave() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  watcher_.Stop();
  absl::MutexLock lock(&mutex_);
  if (left_) return;
  left_ = true;
  if (lease_ != 0) {
    // Revoking the lease deletes the record at once.
    const absl::Status status = etcd_.RevokeLease(lease_);
    if (status.ok()) {
      spdlog::info("cluster {}: left", options_.cluster_name);
    } else {
      spdlog::warn(
          "cluster {}: leaving: {} (the record expires with its "
          "lease)",
          options_.cluster_name, status.ToString());
    }
    lease_ = 0;
  }
}

bool Membership::registered() const {
  absl::MutexLock lock(&mutex_);
  return lease_ != 0;
}

bool Membership::etcd_reachable() const {
  absl::MutexLock lock(&mutex_);
  return reachable_;
}

nlohmann::json Membership::StatusJson() const {
  const std::shared_ptr<const MemberView> view = watcher_.view();
  nlohmann::json members = nlohmann::json::array();
  uint64_t total_bytes = 0;
  for (const Member& member : view->members) total_bytes += member.bytes_stored;
  for (const Member& member : view->members) {
    members.push_back(
        {{"id", member.id},
         {"address", member.address},
         {"admin_address", member.admin_address},
         {"state", MemberStateName(member.state)},
         {"capacity_bytes", member.capacity_bytes},
         {"bytes_stored", member.bytes_stored},
         {"chunks_stored", member.chunks_stored},
         {"bytes_share",
          total_bytes == 0 ? 0.0 : double(member.bytes_stored) / total_bytes},
         {"lookups", member.lookups},
         {"replicas_hot", member.replicas_hot},
         {"hit_rate", member.lookup_tokens == 0
                          ? 0.0
                          : double(member.hit_tokens) / member.lookup_tokens},
         {"self", member.id == options_.self.id}});
  }
  absl::MutexLock lock(&mutex_);
  return {
      {"cluster", options_.cluster_name},
      {"etcd_endpoints", options_.etcd_endpoints},
      {"node_id", options_.self.id},
      {"advertise", options_.self.address},
      {"state", MemberStateName(state_)},
      {"registered", lease_ != 0},
      {"etcd_reachable", reachable_},
      // The membership below is the last seen while etcd is away.
      {"membership_stale", !view->etcd_reachable},
      {"last_etcd_contact_ms_ago", MillisSince(last_contact_)},
      {"last_etcd_error", last_error_},
      {"placement_chunks", view->placement.prefix_chunks},
      {"replicas_hot", view->ReplicasHot()},
      {"hot_probability", view->placement.HotProbability()},
      {"members", members},
  };
}

std::string Membership::PrometheusText() const {
  const std::shared_ptr<const MemberView> view = watcher_.view();
  size_t serving = 0;
  for (const Member& member : view->members)
    if (member.state == MemberState::kServing) ++serving;
  absl::MutexLock lock(&mutex_);
  std::string text;
  absl::StrAppend(
      &text,
      "# HELP seqkv_cluster_etcd_reachable 1 while etcd answers; 0: serving "
      "with the last membership seen\n"
      "# TYPE seqkv_cluster_etcd_reachable gauge\n",
      "seqkv_cluster_etcd_reachable ", reachable_ ? 1 : 0, "\n",
      "# HELP seqkv_cluster_registered 1 while this node's record is in etcd\n"
      "# TYPE seqkv_cluster_registered gauge\n",
      "seqkv_cluster_registered ", lease_ != 0 ? 1 : 0, "\n",
      "# HELP seqkv_cluster_members Members this node sees, by state\n"
      "# TYPE seqkv_cluster_members gauge\n",
      "seqkv_cluster_members{state=\"serving\"} ", serving, "\n",
      "seqkv_cluster_members{state=\"draining\"} ",
      view->members.size() - serving, "\n",
      "# HELP seqkv_cluster_etcd_errors_total etcd calls that failed\n"
      "# TYPE seqkv_cluster_etcd_errors_total counter\n",
      "seqkv_cluster_etcd_errors_total ", etcd_errors_, "\n",
      "# HELP seqkv_cluster_registrations_total Times this node registered "
      "(again after a lease expired)\n"
      "# TYPE seqkv_cluster_registrations_total counter\n",
      "seqkv_cluster_registrations_total ", registrations_, "\n",
      "# HELP seqkv_cluster_last_etcd_contact_seconds Seconds since etcd last "
      "answered (-1: never)\n"
      "# TYPE seqkv_cluster_last_etcd_contact_seconds gauge\n",
      "seqkv_cluster_last_etcd_contact_seconds ",
      last_contact_ == absl::InfinitePast()
          ? -1.0
          : absl::ToDoubleSeconds(absl::Now() - last_contact_),
      "\n");
  return text;
}

}  // namespace seqkv::cluster
