#include "cluster/member.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cluster/etcd_gateway.h"
#include "nlohmann/json.hpp"

namespace seqkv::cluster {
namespace {

using Json = nlohmann::json;

absl::Status ReadString(const Json& json, const char* name, bool required,
                        std::string& out) {
  if (!json.contains(name)) {
    if (required)
      return absl::InvalidArgumentError(
          absl::StrCat("member record lacks \"", name, "\""));
    return absl::OkStatus();
  }
  if (!json[name].is_string())
    return absl::InvalidArgumentError(
        absl::StrCat("member record's \"", name, "\" is not a string"));
  out = json[name].get<std::string>();
  return absl::OkStatus();
}

template <typename T>
absl::Status ReadNumber(const Json& json, const char* name, T& out) {
  if (!json.contains(name)) return absl::OkStatus();
  const Json& field = json[name];
  if (!field.is_number_integer() ||
      (std::is_unsigned_v<T> && !field.is_number_unsigned()))
    return absl::InvalidArgumentError(absl::StrCat(
        "member record's \"", name, "\" is not a non-negative integer"));
  out = field.get<T>();
  return absl::OkStatus();
}

}  // namespace

std::string MemberStateName(MemberState state) {
  return state == MemberState::kDraining ? "draining" : "serving";
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name)
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
          c == '_' || c == '-'))
      return false;
  return true;
}

std::string MemberToJson(const Member& member) {
  return Json{{"id", member.id},
              {"address", member.address},
              {"admin_address", member.admin_address},
              {"capacity_bytes", member.capacity_bytes},
              {"state", MemberStateName(member.state)},
              {"bytes_stored", member.bytes_stored},
              {"chunks_stored", member.chunks_stored},
              {"lookups", member.lookups},
              {"lookup_tokens", member.lookup_tokens},
              {"hit_tokens", member.hit_tokens},
              {"started_unix_ms", member.started_unix_ms},
              {"replicas_hot", member.replicas_hot},
              {"namespace_bytes", member.namespace_bytes}}
      .dump();
}

absl::StatusOr<Member> ParseMember(std::string_view text) {
  const Json json = Json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.is_object())
    return absl::InvalidArgumentError("member record is not a JSON object");
  Member member;
  std::string state = "serving";
  uint64_t replicas_hot = 0;
  for (auto status :
       {ReadString(json, "id", true, member.id),
        ReadString(json, "address", true, member.address),
        ReadString(json, "admin_address", false, member.admin_address),
        ReadString(json, "state", false, state),
        ReadNumber(json, "capacity_bytes", member.capacity_bytes),
        ReadNumber(json, "bytes_stored", member.bytes_stored),
        ReadNumber(json, "chunks_stored", member.chunks_stored),
        ReadNumber(json, "lookups", member.lookups),
        ReadNumber(json, "lookup_tokens", member.lookup_tokens),
        ReadNumber(json, "hit_tokens", member.hit_tokens),
        ReadNumber(json, "started_unix_ms", member.started_unix_ms),
        ReadNumber(json, "replicas_hot", replicas_hot)})
    if (!status.ok()) return status;
  if (replicas_hot > kMaxReplicasHot)
    return absl::InvalidArgumentError(absl::StrCat(
        "member record's \"replicas_hot\" must be at most ", kMaxReplicasHot));
  member.replicas_hot = static_cast<uint32_t>(replicas_hot);
  if (json.contains("namespace_bytes")) {
    const Json& field = json["namespace_bytes"];
    if (!field.is_object() || field.size() > kMaxReportedNamespaces)
      return absl::InvalidArgumentError(absl::StrCat(
          "member record's \"namespace_bytes\" must be an object of at most ",
          kMaxReportedNamespaces, " namespaces"));
    for (const auto& [name, bytes] : field.items()) {
      if (!bytes.is_number_unsigned())
        return absl::InvalidArgumentError(
            absl::StrCat("member record's \"namespace_bytes\" of '", name,
                         "' is not a non-negative integer"));
      member.namespace_bytes[name] = bytes.get<uint64_t>();
    }
  }
  if (!ValidName(member.id))
    return absl::InvalidArgumentError(
        "member record's \"id\" must be 1 to 128 of [A-Za-z0-9._-]");
  if (member.address.empty())
    return absl::InvalidArgumentError("member record's \"address\" is empty");
  if (state == "serving") {
    member.state = MemberState::kServing;
  } else if (state == "draining") {
    member.state = MemberState::kDraining;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "member record's \"state\" must be serving or draining, got '", state,
        "'"));
  }
  return member;
}

std::string ClusterPrefix(const std::string& cluster_name) {
  return absl::StrCat("/seqkv/", cluster_name, "/");
}
std::string MembersPrefix(const std::string& cluster_name) {
  return absl::StrCat(ClusterPrefix(cluster_name), "members/");
}
std::string MemberKey(const std::string& cluster_name, const std::string& id) {
  return absl::StrCat(MembersPrefix(cluster_name), id);
}
std::string ConfigKey(const std::string& cluster_name) {
  return absl::StrCat(ClusterPrefix(cluster_name), "config");
}

bool IsClusterTarget(std::string_view server) {
  return server.substr(0, 7) == "etcd://";
}

absl::StatusOr<ClusterTarget> ParseClusterTarget(std::string_view server) {
  if (!IsClusterTarget(server))
    return absl::InvalidArgumentError(
        absl::StrCat("a cluster target is etcd://HOST:PORT/NAME, got '",
                     std::string(server), "'"));
  std::string_view rest = server.substr(7);
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos)
    return absl::InvalidArgumentError(
        absl::StrCat("cluster target '", std::string(server),
                     "' names no cluster (etcd://HOST:PORT/NAME)"));
  ClusterTarget target;
  target.name = std::string(rest.substr(slash + 1));
  if (!ValidName(target.name))
    return absl::InvalidArgumentError(absl::StrCat(
        "cluster name '", target.name, "' must be 1 to 128 of [A-Za-z0-9._-]"));
  auto endpoints =
      EtcdGateway::ParseEndpoints(std::string(rest.substr(0, slash)));
  if (!endpoints.ok()) return endpoints.status();
  target.endpoints = std::move(*endpoints);
  return target;
}

}  // namespace seqkv::cluster
