#include "server/region_plane.h"

#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

ABSL_FLAG(std::string, shm_listen, "auto",
          "path of the region socket, where clients on this host register "
          "shared memory regions that Puts and Gets then name by offset "
          "instead of sending their bytes in messages. auto: PATH.shm beside "
          "a --listen of unix:PATH, none for a TCP --listen; none: off");
ABSL_FLAG(uint32_t, shm_max_regions_per_tenant, 16,
          "shared memory regions one tenant may hold registered at once");
ABSL_FLAG(uint64_t, shm_max_region_bytes, uint64_t{64} << 30,
          "the largest shared memory region a client may register, in bytes");
ABSL_FLAG(std::string, shm_allowed_uids, "",
          "comma-separated user ids whose processes may register regions "
          "(checked with SO_PEERCRED); empty: the server's own user and root");

namespace seqkv {

RegionPlane::RegionPlane(transport::RegistryOptions registry,
                         const TenantDirectoryHolder* tenants,
                         transport::RegionServiceOptions service)
    : registry_(registry),
      service_(
          &registry_,
          [tenants](
              std::string_view authorization) -> absl::StatusOr<std::string> {
            auto caller = tenants->get()->Identify(authorization, "");
            if (!caller.ok()) return caller.status();
            return caller->tenant;
          },
          std::move(service)),
      socket_(&service_, {}) {}

absl::StatusOr<std::unique_ptr<RegionPlane>> RegionPlane::StartFromFlags(
    const std::string& grpc_listen, const TenantDirectoryHolder* tenants) {
  std::string path = absl::GetFlag(FLAGS_shm_listen);
  if (path == "auto")
    path = absl::StartsWith(grpc_listen, "unix:")
               ? absl::StrCat(grpc_listen.substr(5), ".shm")
               : "none";
  if (path == "none" || path.empty()) return nullptr;
  transport::RegionServiceOptions service;
  for (absl::string_view uid :
       absl::StrSplit(absl::GetFlag(FLAGS_shm_allowed_uids), ',',
                      absl::SkipWhitespace())) {
    uint32_t parsed = 0;
    if (!absl::SimpleAtoi(uid, &parsed))
      return absl::InvalidArgumentError(
          absl::StrCat("--shm_allowed_uids: '", uid, "' is not a user id"));
    service.allowed_uids.insert(parsed);
  }
  const transport::RegistryOptions registry{
      .max_regions_per_tenant = absl::GetFlag(FLAGS_shm_max_regions_per_tenant),
      .max_region_bytes = absl::GetFlag(FLAGS_shm_max_region_bytes)};
  std::unique_ptr<RegionPlane> plane(
      new RegionPlane(registry, tenants, std::move(service)));
  if (auto status = plane->socket_.Start(path); !status.ok()) return status;
  plane->path_ = path;
  return plane;
}

}  // namespace seqkv
