// Who is calling, and which namespaces they may read and write.
#ifndef SEQKV_SERVER_TENANTS_H_
#define SEQKV_SERVER_TENANTS_H_

#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/cache_engine.h"

namespace seqkv {

struct Caller {
  std::string tenant;
};

class TenantDirectory {
 public:
  // One tenant, "default", and no authentication: for a loopback server
  // without a config file.
  static TenantDirectory OpenAccess();

  // UNAUTHENTICATED when the call carries no valid credential.
  absl::StatusOr<Caller> Authenticate(const grpc::ServerContext& context) const;

  // Namespaces a read by `caller` searches: the requested one, or the
  // caller's own followed by the shared namespaces it may read.
  absl::StatusOr<ReadScope> ReadScopeFor(const Caller& caller,
                                         const std::string& requested) const;
  // The namespace a write by `caller` goes to; PERMISSION_DENIED if the
  // caller may not write `requested`.
  absl::StatusOr<std::string> WriteNamespaceFor(
      const Caller& caller, const std::string& requested) const;

  bool open_access() const { return open_access_; }

 private:
  bool open_access_ = true;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_TENANTS_H_
