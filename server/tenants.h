// Who is calling, and which namespaces they may read and write.
//
// Every tenant owns a private namespace named after it; shared namespaces are
// declared in the config with explicit readers and writers. A request for a
// namespace the caller may not use is refused with PERMISSION_DENIED whether
// or not anything is stored there, so Lookup reveals nothing across tenants.
#ifndef SEQKV_SERVER_TENANTS_H_
#define SEQKV_SERVER_TENANTS_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/cache_engine.h"
#include "server/config.h"

namespace seqkv {

struct Caller {
  std::string tenant;
};

class TenantDirectory {
 public:
  // One tenant, "default", and no authentication: for a loopback server
  // without a config file.
  static std::unique_ptr<TenantDirectory> OpenAccess();
  static std::unique_ptr<TenantDirectory> FromConfig(
      const ServerConfig& config);

  // UNAUTHENTICATED when the call carries no valid credential (a Bearer API
  // key, or a client certificate subject named in the config);
  // RESOURCE_EXHAUSTED when the tenant is over its request rate.
  absl::StatusOr<Caller> Authenticate(const grpc::ServerContext& context) const;
  // The same for a raw "authorization" header value and certificate subject.
  absl::StatusOr<Caller> Identify(std::string_view authorization,
                                  std::string_view cert_subject) const;

  // Namespaces a read by `caller` searches: the requested one, or the
  // caller's own followed by the shared namespaces it may read.
  absl::StatusOr<ReadScope> ReadScopeFor(const Caller& caller,
                                         const std::string& requested) const;
  // The namespace a write by `caller` goes to; PERMISSION_DENIED if the
  // caller may not write `requested`.
  absl::StatusOr<std::string> WriteNamespaceFor(
      const Caller& caller, const std::string& requested) const;

  // The models `caller` may use: its own, those shared with it, and those
  // stored before models had owners (which only tenant "default" may
  // change: the one tenant of a server without a config).
  ModelScope ModelScopeFor(const Caller& caller) const;

  // Storage limits of every namespace, for the engine.
  std::map<std::string, NamespaceLimit> Limits() const;

  bool open_access() const { return open_access_; }

 private:
  struct Tenant {
    TenantConfig config;
    std::vector<std::string> readable_shared;
    // Model name → owner, for the shared models it reads.
    std::map<std::string, std::string, std::less<>> shared_models;
  };
  struct RateBucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point refilled;
  };
  absl::Status ChargeRate(const Tenant& tenant) const;

  bool open_access_ = true;
  std::map<std::string, Tenant> tenants_;
  std::map<std::string, SharedNamespaceConfig> shared_;
  // (key hash, tenant) pairs, compared in constant time.
  std::vector<std::pair<std::string, std::string>> keys_;
  std::map<std::string, std::string> cert_subjects_;
  mutable absl::Mutex rate_mutex_;
  mutable std::map<std::string, RateBucket> buckets_
      ABSL_GUARDED_BY(rate_mutex_);
};

// The current directory; replaced whole when the config is reloaded.
class TenantDirectoryHolder {
 public:
  explicit TenantDirectoryHolder(std::shared_ptr<const TenantDirectory> d)
      : directory_(std::move(d)) {}
  std::shared_ptr<const TenantDirectory> get() const {
    absl::MutexLock lock(&mutex_);
    return directory_;
  }
  void Replace(std::shared_ptr<const TenantDirectory> d) {
    absl::MutexLock lock(&mutex_);
    directory_ = std::move(d);
  }

 private:
  mutable absl::Mutex mutex_;
  std::shared_ptr<const TenantDirectory> directory_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_TENANTS_H_
