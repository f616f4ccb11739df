// Answers the region socket's requests (seqkv/v1/region.proto): who the
// caller is, and registering or unregistering its regions. No I/O: the
// socket server (region_socket_server.h) feeds it datagrams.
#ifndef SEQKV_TRANSPORT_REGION_SERVICE_H_
#define SEQKV_TRANSPORT_REGION_SERVICE_H_

#include <sys/types.h>

#include <functional>
#include <set>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "seqkv/v1/region.pb.h"
#include "transport/fd_passing.h"
#include "transport/region_registry.h"

namespace seqkv::transport {

// Maps a RegisterRegion's authorization value ("Bearer <key>", or empty)
// to a tenant, as the gRPC service authenticates its calls.
using Authenticator =
    std::function<absl::StatusOr<std::string>(std::string_view authorization)>;

struct RegionServiceOptions {
  // Peer user ids (SO_PEERCRED) that may register regions. Empty: the
  // server's own user and root.
  std::set<uid_t> allowed_uids;
};

// Thread-safe if the registry and authenticator are.
class RegionService {
 public:
  // Both must outlive the service.
  RegionService(RegionRegistry* registry, Authenticator authenticate,
                RegionServiceOptions options);

  // Answers one datagram of connection `connection` from `peer`, taking
  // ownership of its descriptor (mapped, or closed).
  v1::RegionResponse Handle(uint64_t connection, const PeerCredentials& peer,
                            Datagram datagram);
  // The connection closed: its regions go.
  void Closed(uint64_t connection) { registry_->DropConnection(connection); }

 private:
  absl::StatusOr<v1::RegionResponse> Register(uint64_t connection,
                                              const PeerCredentials& peer,
                                              const v1::RegisterRegion& request,
                                              int fd);

  RegionRegistry* const registry_;
  const Authenticator authenticate_;
  std::set<uid_t> allowed_uids_;
};

}  // namespace seqkv::transport

#endif  // SEQKV_TRANSPORT_REGION_SERVICE_H_
