#include "server/config.h"

#include <openssl/sha.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/request_text.h"

namespace seqkv {
namespace {

absl::StatusOr<OnQuota> ParseOnQuota(const std::string& text,
                                     const std::string& where) {
  if (text.empty() || text == "evict") return OnQuota::kEvict;
  if (text == "reject") return OnQuota::kReject;
  return absl::InvalidArgumentError(absl::StrCat(
      where, ".on_quota must be 'evict' or 'reject', got '", text, "'"));
}

std::vector<std::string> StringList(const YAML::Node& node) {
  std::vector<std::string> out;
  if (!node) return out;
  if (node.IsScalar()) {
    out.push_back(node.as<std::string>());
  } else {
    for (const auto& item : node) out.push_back(item.as<std::string>());
  }
  return out;
}

bool IsSha256Hex(const std::string& text) {
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return absl::ascii_isxdigit(static_cast<unsigned char>(c));
         });
}

// yaml-cpp reports errors by exception; they stop here.
absl::StatusOr<ServerConfig> ParseUnchecked(const std::string& text) try {
  YAML::Node root = YAML::Load(text);
  ServerConfig config;
  if (!root || root.IsNull()) return config;
  if (!root.IsMap())
    return absl::InvalidArgumentError("config must be a YAML mapping");
  for (const auto& node : root["tenants"]) {
    TenantConfig tenant;
    tenant.name = node["name"].as<std::string>("");
    const std::string where = absl::StrCat("tenants[", tenant.name, "]");
    tenant.api_key_sha256 = StringList(node["api_key_sha256"]);
    for (std::string& hash : tenant.api_key_sha256) {
      hash = absl::AsciiStrToLower(hash);
      if (!IsSha256Hex(hash))
        return absl::InvalidArgumentError(absl::StrCat(
            where, ".api_key_sha256 entries must be 64 hex digits"));
    }
    tenant.client_cert_subjects = StringList(node["client_cert_subjects"]);
    tenant.quota_bytes = node["quota_bytes"].as<uint64_t>(0);
    auto on_quota = ParseOnQuota(node["on_quota"].as<std::string>(""), where);
    if (!on_quota.ok()) return on_quota.status();
    tenant.on_quota = *on_quota;
    if (node["tiers"]) {
      auto tiers = ParseTierPolicy(node["tiers"].as<std::string>(""));
      if (!tiers.ok())
        return absl::InvalidArgumentError(
            absl::StrCat(where, ".", tiers.status().message()));
      tenant.tiers = *tiers;
    }
    tenant.rate_limit_rps = node["rate_limit_rps"].as<double>(0);
    tenant.rate_limit_burst = node["rate_limit_burst"].as<double>(
        std::max(1.0, tenant.rate_limit_rps));
    config.tenants.push_back(std::move(tenant));
  }
  for (const auto& node : root["shared_namespaces"]) {
    SharedNamespaceConfig shared;
    shared.name = node["name"].as<std::string>("");
    shared.readers = StringList(node["readers"]);
    shared.writers = StringList(node["writers"]);
    shared.quota_bytes = node["quota_bytes"].as<uint64_t>(0);
    auto on_quota =
        ParseOnQuota(node["on_quota"].as<std::string>(""),
                     absl::StrCat("shared_namespaces[", shared.name, "]"));
    if (!on_quota.ok()) return on_quota.status();
    shared.on_quota = *on_quota;
    if (node["tiers"]) {
      auto tiers = ParseTierPolicy(node["tiers"].as<std::string>(""));
      if (!tiers.ok())
        return absl::InvalidArgumentError(
            absl::StrCat("shared_namespaces[", shared.name, "].",
                         tiers.status().message()));
      shared.tiers = *tiers;
    }
    config.shared_namespaces.push_back(std::move(shared));
  }
  for (const auto& node : root["shared_models"]) {
    SharedModelConfig shared;
    shared.name = node["name"].as<std::string>("");
    shared.owner = node["owner"].as<std::string>("");
    shared.readers = StringList(node["readers"]);
    config.shared_models.push_back(std::move(shared));
  }
  if (const auto tls = root["tls"]) {
    config.tls.cert_file = tls["cert_file"].as<std::string>("");
    config.tls.key_file = tls["key_file"].as<std::string>("");
    config.tls.client_ca_file = tls["client_ca_file"].as<std::string>("");
    config.tls.require_client_cert = tls["require_client_cert"].as<bool>(false);
  }
  if (const auto admin = root["admin"])
    config.admin_token_sha256 =
        absl::AsciiStrToLower(admin["token_sha256"].as<std::string>(""));
  config.capacity_bytes = root["capacity_bytes"].as<uint64_t>(0);
  return config;
} catch (const YAML::Exception& error) {
  return absl::InvalidArgumentError(
      absl::StrCat("config is not valid YAML: ", error.what()));
}

absl::Status Validate(const ServerConfig& config) {
  std::set<std::string> tenants;
  for (const TenantConfig& tenant : config.tenants) {
    if (tenant.name.empty() || tenant.name.find('/') != std::string::npos)
      return absl::InvalidArgumentError(
          "every tenant needs a name without '/'");
    if (!tenants.insert(tenant.name).second)
      return absl::InvalidArgumentError(
          absl::StrCat("tenant '", tenant.name, "' is declared twice"));
    if (tenant.api_key_sha256.empty() && tenant.client_cert_subjects.empty())
      return absl::InvalidArgumentError(absl::StrCat(
          "tenant '", tenant.name,
          "' has neither api_key_sha256 nor client_cert_subjects"));
  }
  std::set<std::string> shared;
  for (const SharedNamespaceConfig& ns : config.shared_namespaces) {
    if (ns.name.empty() || tenants.contains(ns.name) ||
        !shared.insert(ns.name).second)
      return absl::InvalidArgumentError(absl::StrCat(
          "shared namespace '", ns.name,
          "' needs a name unique among tenants and shared namespaces"));
    for (const auto* list : {&ns.readers, &ns.writers})
      for (const std::string& name : *list)
        if (!tenants.contains(name))
          return absl::InvalidArgumentError(
              absl::StrCat("shared namespace '", ns.name,
                           "' names unknown tenant '", name, "'"));
  }
  std::set<std::pair<std::string, std::string>> granted;  // (reader, model)
  for (const SharedModelConfig& model : config.shared_models) {
    if (auto status = CheckName("shared model name", model.name); !status.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("shared_models: ", status.message()));
    if (!tenants.contains(model.owner))
      return absl::InvalidArgumentError(
          absl::StrCat("shared model '", model.name, "' needs an owner among "
                       "the tenants, got '", model.owner, "'"));
    for (const std::string& reader : model.readers) {
      if (!tenants.contains(reader))
        return absl::InvalidArgumentError(
            absl::StrCat("shared model '", model.name,
                         "' names unknown tenant '", reader, "'"));
      if (reader != model.owner && !granted.insert({reader, model.name}).second)
        return absl::InvalidArgumentError(
            absl::StrCat("tenant '", reader, "' is a reader of two shared "
                         "models named '", model.name, "'"));
    }
  }
  if (config.tls.enabled() && config.tls.key_file.empty())
    return absl::InvalidArgumentError("tls.cert_file needs tls.key_file");
  if (config.tls.require_client_cert && config.tls.client_ca_file.empty())
    return absl::InvalidArgumentError(
        "tls.require_client_cert needs tls.client_ca_file");
  if (!config.admin_token_sha256.empty() &&
      !IsSha256Hex(config.admin_token_sha256))
    return absl::InvalidArgumentError(
        "admin.token_sha256 must be 64 hex digits");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ServerConfig> ParseConfig(const std::string& yaml_text) {
  auto config = ParseUnchecked(yaml_text);
  if (!config.ok()) return config;
  if (auto status = Validate(*config); !status.ok()) return status;
  return config;
}

absl::StatusOr<ServerConfig> LoadConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return absl::NotFoundError(absl::StrCat("cannot read config ", path));
  std::stringstream text;
  text << in.rdbuf();
  auto config = ParseConfig(text.str());
  if (!config.ok())
    return absl::Status(config.status().code(),
                        absl::StrCat(path, ": ", config.status().message()));
  return config;
}

std::string Sha256Hex(const std::string& text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(),
         digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

}  // namespace seqkv
