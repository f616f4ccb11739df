#include "server/tenants.h"

#include <openssl/crypto.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/request_text.h"

namespace seqkv {
namespace {

constexpr char kDefaultTenant[] = "default";

bool Contains(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

}  // namespace

std::unique_ptr<TenantDirectory> TenantDirectory::OpenAccess() {
  auto directory = std::make_unique<TenantDirectory>();
  directory->tenants_[kDefaultTenant].config.name = kDefaultTenant;
  return directory;
}

std::unique_ptr<TenantDirectory> TenantDirectory::FromConfig(
    const ServerConfig& config) {
  auto directory = std::make_unique<TenantDirectory>();
  directory->open_access_ = false;
  for (const TenantConfig& tenant : config.tenants) {
    directory->tenants_[tenant.name].config = tenant;
    for (const std::string& hash : tenant.api_key_sha256)
      directory->keys_.emplace_back(hash, tenant.name);
    for (const std::string& subject : tenant.client_cert_subjects)
      directory->cert_subjects_[subject] = tenant.name;
  }
  for (const SharedNamespaceConfig& shared : config.shared_namespaces) {
    directory->shared_[shared.name] = shared;
    for (const std::string& reader : shared.readers)
      directory->tenants_[reader].readable_shared.push_back(shared.name);
  }
  for (const SharedModelConfig& model : config.shared_models)
    for (const std::string& reader : model.readers)
      if (reader != model.owner)
        directory->tenants_[reader].shared_models[model.name] = model.owner;
  return directory;
}

absl::StatusOr<Caller> TenantDirectory::Identify(
    std::string_view authorization, std::string_view cert_subject) const {
  if (open_access_) return Caller{kDefaultTenant};
  const std::string_view bearer = "Bearer ";
  if (authorization.starts_with(bearer)) {
    const std::string presented =
        Sha256Hex(std::string(authorization.substr(bearer.size())));
    // Compare against every key, always, so timing does not tell which
    // tenant (if any) a key almost matched.
    const std::string* tenant = nullptr;
    for (const auto& [hash, name] : keys_)
      if (CRYPTO_memcmp(hash.data(), presented.data(), presented.size()) == 0)
        tenant = &name;
    if (tenant != nullptr) {
      const Tenant& found = tenants_.at(*tenant);
      if (auto status = ChargeRate(found); !status.ok()) return status;
      return Caller{*tenant};
    }
    return absl::UnauthenticatedError("unknown API key");
  }
  if (!authorization.empty())
    return absl::UnauthenticatedError(
        "authorization metadata must be 'Bearer <api key>'");
  if (!cert_subject.empty()) {
    auto it = cert_subjects_.find(std::string(cert_subject));
    if (it == cert_subjects_.end())
      return absl::UnauthenticatedError(absl::StrCat(
          "client certificate ", Quoted(std::string(cert_subject)),
          " belongs to no tenant"));
    if (auto status = ChargeRate(tenants_.at(it->second)); !status.ok())
      return status;
    return Caller{it->second};
  }
  return absl::UnauthenticatedError(
      "missing credentials: send 'authorization: Bearer <api key>'");
}

absl::StatusOr<Caller> TenantDirectory::Authenticate(
    const grpc::ServerContext& context) const {
  if (open_access_) return Caller{kDefaultTenant};
  std::string_view authorization;
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end())
    authorization = std::string_view(it->second.data(), it->second.size());
  std::string subject;
  if (auto auth = context.auth_context(); auth && auth->IsPeerAuthenticated()) {
    for (const auto& value : auth->FindPropertyValues("x509_subject"))
      subject.assign(value.data(), value.size());
  }
  return Identify(authorization, subject);
}

absl::Status TenantDirectory::ChargeRate(const Tenant& tenant) const {
  const double rate = tenant.config.rate_limit_rps;
  if (rate <= 0) return absl::OkStatus();
  const auto now = std::chrono::steady_clock::now();
  absl::MutexLock lock(&rate_mutex_);
  auto [it, fresh] = buckets_.try_emplace(tenant.config.name);
  RateBucket& bucket = it->second;
  if (fresh) {
    bucket.tokens = tenant.config.rate_limit_burst;
  } else {
    const double elapsed =
        std::chrono::duration<double>(now - bucket.refilled).count();
    bucket.tokens = std::min(tenant.config.rate_limit_burst,
                             bucket.tokens + elapsed * rate);
  }
  bucket.refilled = now;
  if (bucket.tokens < 1)
    return absl::ResourceExhaustedError(absl::StrCat(
        "tenant '", tenant.config.name, "' is over its rate limit of ", rate,
        " requests per second"));
  bucket.tokens -= 1;
  return absl::OkStatus();
}

absl::StatusOr<ReadScope> TenantDirectory::ReadScopeFor(
    const Caller& caller, const std::string& requested) const {
  const Tenant& tenant = tenants_.at(caller.tenant);
  if (requested.empty()) {
    ReadScope scope{{caller.tenant}, ModelScopeFor(caller)};
    scope.namespaces.insert(scope.namespaces.end(),
                            tenant.readable_shared.begin(),
                            tenant.readable_shared.end());
    return scope;
  }
  if (requested == caller.tenant || Contains(tenant.readable_shared, requested))
    return ReadScope{{requested}, ModelScopeFor(caller)};
  return absl::PermissionDeniedError(absl::StrCat(
      "tenant '", caller.tenant, "' may not read namespace ", Quoted(requested)));
}

absl::StatusOr<std::string> TenantDirectory::WriteNamespaceFor(
    const Caller& caller, const std::string& requested) const {
  if (requested.empty() || requested == caller.tenant) return caller.tenant;
  if (auto it = shared_.find(requested);
      it != shared_.end() && Contains(it->second.writers, caller.tenant))
    return requested;
  return absl::PermissionDeniedError(absl::StrCat(
      "tenant '", caller.tenant, "' may not write namespace ", Quoted(requested)));
}

ModelScope TenantDirectory::ModelScopeFor(const Caller& caller) const {
  const Tenant& tenant = tenants_.at(caller.tenant);
  return ModelScope{.tenant = caller.tenant,
                    .shared = tenant.shared_models,
                    .may_change_unowned = caller.tenant == kDefaultTenant};
}

std::map<std::string, NamespaceLimit> TenantDirectory::Limits() const {
  std::map<std::string, NamespaceLimit> limits;
  for (const auto& [name, tenant] : tenants_)
    limits[name] = {tenant.config.quota_bytes,
                    tenant.config.on_quota == OnQuota::kReject,
                    tenant.config.tiers};
  for (const auto& [name, shared] : shared_)
    limits[name] = {shared.quota_bytes, shared.on_quota == OnQuota::kReject,
                    shared.tiers};
  return limits;
}

}  // namespace seqkv
