// The server's YAML config file: tenants, shared namespaces, TLS, limits.
// The `tenants` and `shared_namespaces` parts are a stable schema; see
// docs/CONFIG.md.
#ifndef SEQKV_SERVER_CONFIG_H_
#define SEQKV_SERVER_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/tiers.h"

namespace seqkv {

enum class OnQuota { kEvict, kReject };

struct TenantConfig {
  std::string name;
  std::vector<std::string> api_key_sha256;        // lowercase hex
  std::vector<std::string> client_cert_subjects;  // mTLS identities
  uint64_t quota_bytes = 0;                       // 0: none
  OnQuota on_quota = OnQuota::kEvict;
  // `tiers` of the tenant's namespace; unset: the server's --tiers.
  std::optional<TierPolicy> tiers;
  double rate_limit_rps = 0;  // requests per second; 0: none
  double rate_limit_burst = 0;
};

struct SharedNamespaceConfig {
  std::string name;
  std::vector<std::string> readers;
  std::vector<std::string> writers;
  uint64_t quota_bytes = 0;
  OnQuota on_quota = OnQuota::kEvict;
  std::optional<TierPolicy> tiers;
};

// A tenant's model that other tenants may use (read, and Put under) but
// not change.
struct SharedModelConfig {
  std::string name;
  std::string owner;  // the tenant that registers and may change it
  std::vector<std::string> readers;
};

struct TlsConfig {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // turns on client certificates
  bool require_client_cert = false;
  bool enabled() const { return !cert_file.empty(); }
};

struct ServerConfig {
  std::vector<TenantConfig> tenants;
  std::vector<SharedNamespaceConfig> shared_namespaces;
  std::vector<SharedModelConfig> shared_models;
  TlsConfig tls;
  std::string admin_token_sha256;
  uint64_t capacity_bytes = 0;  // 0: unlimited
};

// Parses and validates: unique names, known reader/writer tenants, 64-hex
// key hashes, no shared namespace named like a tenant, shared models with a
// valid name, a known owner and known readers, none of which is given two
// shared models of one name. INVALID_ARGUMENT
// names the offending entry.
absl::StatusOr<ServerConfig> LoadConfig(const std::string& path);
absl::StatusOr<ServerConfig> ParseConfig(const std::string& yaml_text);

// Lowercase hex SHA-256 of `text`.
std::string Sha256Hex(const std::string& text);

}  // namespace seqkv

#endif  // SEQKV_SERVER_CONFIG_H_
