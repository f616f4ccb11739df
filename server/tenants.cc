#include "server/tenants.h"

#include "absl/strings/str_cat.h"

namespace seqkv {

TenantDirectory TenantDirectory::OpenAccess() { return TenantDirectory(); }

absl::StatusOr<Caller> TenantDirectory::Authenticate(
    const grpc::ServerContext& context) const {
  return Caller{"default"};
}

absl::StatusOr<ReadScope> TenantDirectory::ReadScopeFor(
    const Caller& caller, const std::string& requested) const {
  if (!requested.empty() && requested != caller.tenant)
    return absl::PermissionDeniedError(absl::StrCat(
        "tenant '", caller.tenant, "' may not read namespace '", requested,
        "'"));
  return ReadScope{{caller.tenant}};
}

absl::StatusOr<std::string> TenantDirectory::WriteNamespaceFor(
    const Caller& caller, const std::string& requested) const {
  if (!requested.empty() && requested != caller.tenant)
    return absl::PermissionDeniedError(absl::StrCat(
        "tenant '", caller.tenant, "' may not write namespace '", requested,
        "'"));
  return caller.tenant;
}

}  // namespace seqkv
