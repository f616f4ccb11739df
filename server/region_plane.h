// The server's same-host data plane, as the flags configure it: the region
// registry that Puts and Gets resolve RegionSlices in, and the region
// socket that fills it. See docs/SHARED_MEMORY.md.
#ifndef SEQKV_SERVER_REGION_PLANE_H_
#define SEQKV_SERVER_REGION_PLANE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/tenants.h"
#include "transport/region_registry.h"
#include "transport/region_service.h"
#include "transport/region_socket_server.h"

namespace seqkv {

// Owns the registry, the socket and its thread; destroy it after the gRPC
// server has stopped.
class RegionPlane {
 public:
  // Starts the socket that --shm_listen names for `grpc_listen` (the
  // --listen address), authenticating registrations with `tenants` (which
  // must outlive the plane). Null when the flags turn it off.
  static absl::StatusOr<std::unique_ptr<RegionPlane>> StartFromFlags(
      const std::string& grpc_listen, const TenantDirectoryHolder* tenants);
  ~RegionPlane() { socket_.Stop(); }

  const transport::RegionRegistry* registry() const { return &registry_; }
  const std::string& path() const { return path_; }

 private:
  RegionPlane(transport::RegistryOptions registry,
              const TenantDirectoryHolder* tenants,
              transport::RegionServiceOptions service);

  transport::RegionRegistry registry_;
  transport::RegionService service_;
  transport::RegionSocketServer socket_;
  std::string path_;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_REGION_PLANE_H_
