#include "transport/region_service.h"

#include <unistd.h>

#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"

namespace seqkv::transport {
namespace {

v1::RegionResponse ErrorResponse(const absl::Status& status) {
  v1::RegionResponse response;
  response.set_code(static_cast<int>(status.code()));
  response.set_message(std::string(status.message()));
  return response;
}

}  // namespace

RegionService::RegionService(RegionRegistry* registry,
                             Authenticator authenticate,
                             RegionServiceOptions options)
    : registry_(registry),
      authenticate_(std::move(authenticate)),
      allowed_uids_(std::move(options.allowed_uids)) {
  if (allowed_uids_.empty()) {
    allowed_uids_.insert(geteuid());
    allowed_uids_.insert(0);
  }
}

v1::RegionResponse RegionService::Handle(uint64_t connection,
                                         const PeerCredentials& peer,
                                         Datagram datagram) {
  int fd = std::exchange(datagram.fd, -1);
  absl::Cleanup close_fd = [&fd] {
    if (fd >= 0) close(fd);
  };
  v1::RegionRequest request;
  if (!request.ParseFromString(datagram.bytes))
    return ErrorResponse(absl::InvalidArgumentError(
        "a region socket datagram must be one seqkv.v1.RegionRequest"));
  switch (request.request_case()) {
    case v1::RegionRequest::kRegisterRegion: {
      if (fd < 0)
        return ErrorResponse(absl::InvalidArgumentError(
            "RegisterRegion carries the region's memfd as SCM_RIGHTS "
            "ancillary data; this one carried none"));
      auto response = Register(connection, peer, request.register_region(),
                               std::exchange(fd, -1));
      if (!response.ok()) return ErrorResponse(response.status());
      return *std::move(response);
    }
    case v1::RegionRequest::kUnregisterRegion: {
      if (fd >= 0)
        return ErrorResponse(absl::InvalidArgumentError(
            "UnregisterRegion carries no descriptor"));
      absl::Status status = registry_->Unregister(
          connection, request.unregister_region().region());
      v1::RegionResponse response = ErrorResponse(status);
      response.set_region(request.unregister_region().region());
      return response;
    }
    default:
      return ErrorResponse(absl::InvalidArgumentError(
          "a RegionRequest must hold register_region or unregister_region"));
  }
}

absl::StatusOr<v1::RegionResponse> RegionService::Register(
    uint64_t connection, const PeerCredentials& peer,
    const v1::RegisterRegion& request, int fd) {
  absl::Cleanup close_fd = [fd] { close(fd); };
  if (!allowed_uids_.contains(peer.uid))
    return absl::PermissionDeniedError(
        absl::StrCat("user id ", peer.uid, " (pid ", peer.pid,
                     ") may not register regions (--shm_allowed_uids)"));
  auto tenant = authenticate_(request.authorization());
  if (!tenant.ok()) return tenant.status();
  std::move(close_fd).Cancel();
  std::string handle;
  auto region = registry_->Register(fd,
                                    {.tenant = *tenant,
                                     .connection = connection,
                                     .pid = peer.pid,
                                     .uid = peer.uid,
                                     .gid = peer.gid},
                                    handle);
  if (!region.ok()) return region.status();
  v1::RegionResponse response;
  response.set_region(handle);
  response.set_size((*region)->size());
  response.set_tenant(*tenant);
  return response;
}

}  // namespace seqkv::transport
