// A cluster member as it is recorded in etcd, and where the records live.
//
// Layout of a cluster's keys (NAME is --cluster_name):
//   /seqkv/NAME/members/<node id>  one JSON record per live node, attached
//                                  to the node's lease (it vanishes when the
//                                  lease expires)
//   /seqkv/NAME/config             optional JSON of the cluster-wide
//                                  placement settings (cluster/placement.h)
#ifndef SEQKV_CLUSTER_MEMBER_H_
#define SEQKV_CLUSTER_MEMBER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace seqkv::cluster {

enum class MemberState {
  kServing,   // takes its share of requests
  kDraining,  // stopping: clients route its share elsewhere
};

// The most owners a hot head may be stored on.
inline constexpr uint32_t kMaxReplicasHot = 16;
// The most namespaces a record reports bytes of.
inline constexpr size_t kMaxReportedNamespaces = 4096;

struct Member {
  // Stable across restarts (kept in the node's data directory), so that a
  // node that comes back owns the same share, where its data still is.
  std::string id;
  std::string address;          // gRPC host:port clients dial
  std::string admin_address;    // admin HTTP host:port; empty if none
  uint64_t capacity_bytes = 0;  // 0: unlimited
  MemberState state = MemberState::kServing;
  // Reported by the node every few seconds (0 until then).
  uint64_t bytes_stored = 0;
  uint64_t chunks_stored = 0;
  uint64_t lookups = 0;
  uint64_t lookup_tokens = 0;
  uint64_t hit_tokens = 0;
  int64_t started_unix_ms = 0;
  // The node's --replicas_hot: how many owners its hot heads want (0: the
  // cluster config's).
  uint32_t replicas_hot = 0;
  // Bytes the node stores of each namespace that has a quota (reported
  // with the counters): what the other members leave of a cluster-wide
  // quota (server/retention.h).
  std::map<std::string, uint64_t> namespace_bytes;

  friend bool operator==(const Member&, const Member&) = default;
};

std::string MemberStateName(MemberState state);

// The JSON record of `member`, and back. ParseMember takes untrusted bytes:
// INVALID_ARGUMENT for anything that is not a well-formed record.
std::string MemberToJson(const Member& member);
absl::StatusOr<Member> ParseMember(std::string_view json);

std::string ClusterPrefix(const std::string& cluster_name);
std::string MembersPrefix(const std::string& cluster_name);
std::string MemberKey(const std::string& cluster_name, const std::string& id);
std::string ConfigKey(const std::string& cluster_name);

// A client's cluster target: "etcd://HOST:PORT[,HOST:PORT...]/NAME".
struct ClusterTarget {
  std::vector<std::string> endpoints;
  std::string name;
};

bool IsClusterTarget(std::string_view server);
// INVALID_ARGUMENT naming what is wrong.
absl::StatusOr<ClusterTarget> ParseClusterTarget(std::string_view server);

// Cluster names and node ids: 1 to 128 of [A-Za-z0-9._-].
bool ValidName(std::string_view name);

}  // namespace seqkv::cluster

#endif  // SEQKV_CLUSTER_MEMBER_H_
