#include "server/cluster_join.h"

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cluster/etcd_gateway.h"
#include "cluster/member.h"
#include "cluster/node_id.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, cluster_etcd, "",
          "join a seqkv cluster whose membership lives in etcd at these "
          "endpoints, host:port[,host:port...] (docs/SCALE.md); empty: serve "
          "alone");
ABSL_FLAG(std::string, cluster_name, "seqkv",
          "with --cluster_etcd: the cluster to join (its etcd keys are under "
          "/seqkv/NAME/)");
ABSL_FLAG(std::string, advertise, "",
          "with --cluster_etcd: host:port clients dial to reach this node "
          "(default: --listen's host with the bound port; needed when "
          "--listen is 0.0.0.0 or a unix: socket)");
ABSL_FLAG(double, drain_s, 0,
          "with --cluster_etcd: on SIGTERM, mark this node draining (clients "
          "send its share elsewhere) and go on serving this many seconds "
          "before stopping");
ABSL_FLAG(uint32_t, cluster_lease_s, 10,
          "with --cluster_etcd: seconds the node's record outlives its last "
          "keep-alive (how soon a dead node drops out)");

ABSL_FLAG(uint32_t, replicas_hot, 0,
          "with --cluster_etcd: store the hot prefixes this node owns (by its "
          "trie's visit statistics) on this many nodes, so that losing one "
          "keeps them hits (published in the node's record; clients use the "
          "largest of the members' and the cluster config's replicas_hot); "
          "0: the cluster config's (default 1)");

ABSL_FLAG(uint32_t, cluster_report_s, 5,
          "with --cluster_etcd: seconds between rewrites of the node's record "
          "with its counters and per-namespace bytes (how stale a "
          "cluster-wide quota's view of the other nodes may be)");

namespace seqkv {

absl::StatusOr<std::unique_ptr<ClusterJoin>> ClusterJoin::FromFlags(
    const std::string& listen) {
  auto join = std::make_unique<ClusterJoin>();
  const std::string etcd = absl::GetFlag(FLAGS_cluster_etcd);
  if (etcd.empty()) return join;
  auto endpoints = cluster::EtcdGateway::ParseEndpoints(etcd);
  if (!endpoints.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("--cluster_etcd: ", endpoints.status().message()));
  join->enabled_ = true;
  join->endpoints_ = std::move(*endpoints);
  join->name_ = absl::GetFlag(FLAGS_cluster_name);
  if (!cluster::ValidName(join->name_))
    return absl::InvalidArgumentError(
        "--cluster_name must be 1 to 128 of [A-Za-z0-9._-]");
  join->advertise_ = absl::GetFlag(FLAGS_advertise);
  const size_t colon = listen.rfind(':');
  join->listen_host_ =
      colon == std::string::npos ? "" : listen.substr(0, colon);
  if (join->advertise_.empty() &&
      (absl::StartsWith(listen, "unix:") || join->listen_host_ == "0.0.0.0" ||
       join->listen_host_ == "[::]" || join->listen_host_.empty()))
    return absl::InvalidArgumentError(absl::StrCat(
        "--cluster_etcd needs --advertise HOST:PORT when --listen is ", listen,
        ": clients on other machines cannot dial that"));
  if (!join->advertise_.empty() &&
      !cluster::EtcdGateway::ParseEndpoints(join->advertise_).ok())
    return absl::InvalidArgumentError(absl::StrCat(
        "--advertise must be host:port, got '", join->advertise_, "'"));
  const double drain = absl::GetFlag(FLAGS_drain_s);
  if (!(drain >= 0 && drain <= 3600))
    return absl::InvalidArgumentError("--drain_s must be in [0, 3600]");
  join->drain_ = absl::Seconds(drain);
  const uint32_t lease = absl::GetFlag(FLAGS_cluster_lease_s);
  if (lease < 2 || lease > 3600)
    return absl::InvalidArgumentError("--cluster_lease_s must be in [2, 3600]");
  join->lease_ttl_ = absl::Seconds(lease);
  const uint32_t report = absl::GetFlag(FLAGS_cluster_report_s);
  if (report < 1 || report > 3600)
    return absl::InvalidArgumentError(
        "--cluster_report_s must be in [1, 3600]");
  join->report_interval_ = absl::Seconds(report);
  join->replicas_hot_ = absl::GetFlag(FLAGS_replicas_hot);
  if (join->replicas_hot_ > cluster::kMaxReplicasHot)
    return absl::InvalidArgumentError(absl::StrCat(
        "--replicas_hot must be in [0, ", cluster::kMaxReplicasHot, "]"));
  return join;
}

void ClusterJoin::AddAdminRoutes(AdminServerOptions& options) {
  if (!enabled_) return;
  options.cluster_json = [this]() -> std::string {
    absl::MutexLock lock(&mutex_);
    if (membership_ == nullptr) return "";
    return membership_->StatusJson().dump();
  };
  options.cluster_metrics = [this]() -> std::string {
    absl::MutexLock lock(&mutex_);
    if (membership_ == nullptr) return "";
    return membership_->PrometheusText();
  };
  options.cluster_health_note = [this]() -> std::string {
    absl::MutexLock lock(&mutex_);
    if (membership_ == nullptr || membership_->etcd_reachable()) return "";
    return "cluster: etcd unreachable, serving with the last membership seen";
  };
}

absl::Status ClusterJoin::Start(CacheEngine* engine,
                                const std::string& data_dir, int grpc_port,
                                int admin_port, uint64_t capacity_bytes) {
  if (!enabled_) return absl::OkStatus();
  auto id = cluster::LoadOrCreateNodeId(data_dir);
  if (!id.ok()) return id.status();
  cluster::MembershipOptions options;
  options.etcd_endpoints = endpoints_;
  options.cluster_name = name_;
  options.lease_ttl = lease_ttl_;
  options.report_interval = report_interval_;
  options.self.id = *id;
  options.self.address = advertise_.empty()
                             ? absl::StrCat(listen_host_, ":", grpc_port)
                             : advertise_;
  // The admin port on the advertised host.
  if (admin_port > 0) {
    const std::string& address = options.self.address;
    options.self.admin_address =
        absl::StrCat(address.substr(0, address.rfind(':')), ":", admin_port);
  }
  options.self.capacity_bytes = capacity_bytes;
  options.self.replicas_hot = replicas_hot_;
  options.self.started_unix_ms = absl::ToUnixMillis(absl::Now());
  options.fill_counters = [engine](cluster::Member& member) {
    member.bytes_stored = member.chunks_stored = 0;
    member.lookups = member.lookup_tokens = member.hit_tokens = 0;
    member.namespace_bytes.clear();
    for (const auto& [name, stats] : engine->stats().SnapshotAll()) {
      member.bytes_stored += static_cast<uint64_t>(stats.usage.bytes_stored);
      member.chunks_stored += static_cast<uint64_t>(stats.usage.chunks_stored);
      member.lookups += stats.counters.lookups();
      member.lookup_tokens += stats.counters.lookup_tokens();
      member.hit_tokens += stats.counters.hit_tokens();
      // For the other members' share of cluster-wide quotas.
      if (engine->QuotaFor(name) > 0)
        member.namespace_bytes[name] = static_cast<uint64_t>(
            std::max<int64_t>(0, stats.usage.charged_bytes()));
    }
  };
  // A tenant's quota holds across the cluster: each node admits what the
  // other live members leave of it, as they last reported.
  options.on_view = [engine, self = *id](const cluster::MemberView& view) {
    std::map<std::string, uint64_t> elsewhere;
    uint32_t members = 1;
    for (const cluster::Member& member : view.members) {
      if (member.id == self) continue;
      ++members;
      for (const auto& [name, bytes] : member.namespace_bytes)
        elsewhere[name] += bytes;
    }
    engine->retention().SetElsewhere(std::move(elsewhere), members);
  };
  auto membership = std::make_shared<cluster::Membership>(std::move(options));
  (void)membership->Start();
  absl::MutexLock lock(&mutex_);
  membership_ = std::move(membership);
  return absl::OkStatus();
}

void ClusterJoin::Stop() {
  std::shared_ptr<cluster::Membership> membership;
  {
    absl::MutexLock lock(&mutex_);
    membership = membership_;
  }
  if (membership == nullptr) return;
  if (drain_ > absl::ZeroDuration()) {
    membership->Drain(drain_);
  } else {
    membership->Leave();
  }
}

}  // namespace seqkv
