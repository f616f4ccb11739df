#include "transport/region_registry.h"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace seqkv::transport {
namespace {

absl::StatusOr<std::string> NewHandle() {
  std::string handle(kRegionHandleBytes, '\0');
  size_t filled = 0;
  while (filled < handle.size()) {
    const ssize_t got =
        getrandom(handle.data() + filled, handle.size() - filled, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(
          absl::StrCat("getrandom: ", std::strerror(errno)));
    }
    filled += static_cast<size_t>(got);
  }
  return handle;
}

}  // namespace

std::string HandleHex(std::string_view handle) {
  return absl::BytesToHexString(
      absl::string_view(handle.data(), std::min<size_t>(handle.size(), 64)));
}

absl::StatusOr<std::shared_ptr<const MappedRegion>> RegionRegistry::Register(
    int fd, RegionOwner owner, std::string& handle) {
  const std::string tenant = owner.tenant;
  {
    absl::MutexLock lock(&mutex_);
    auto it = per_tenant_.find(tenant);
    if (it != per_tenant_.end() &&
        it->second >= options_.max_regions_per_tenant) {
      close(fd);
      return absl::ResourceExhaustedError(absl::StrCat(
          "tenant '", tenant, "' holds ", it->second,
          " regions, the most one tenant may (--shm_max_regions_per_tenant); "
          "unregister one first"));
    }
  }
  // Mapped outside the lock: populating a large region takes a while.
  auto region =
      MappedRegion::Map(fd, std::move(owner), options_.max_region_bytes);
  if (!region.ok()) return region.status();
  auto fresh = NewHandle();
  if (!fresh.ok()) return fresh.status();
  (*region)->set_name(HandleHex(*fresh));
  absl::MutexLock lock(&mutex_);
  uint32_t& count = per_tenant_[tenant];
  if (count >= options_.max_regions_per_tenant)  // raced with another
    return absl::ResourceExhaustedError(absl::StrCat(
        "tenant '", tenant,
        "' holds the most regions one tenant may (--shm_max_regions_per_"
        "tenant); unregister one first"));
  ++count;
  regions_.emplace(*fresh, *region);
  handle = *std::move(fresh);
  return std::shared_ptr<const MappedRegion>(*std::move(region));
}

absl::Status RegionRegistry::Unregister(uint64_t connection,
                                        std::string_view handle) {
  std::shared_ptr<MappedRegion> region;  // unmapped after the lock
  absl::MutexLock lock(&mutex_);
  auto it = regions_.find(handle);
  if (it == regions_.end() || it->second->owner().connection != connection)
    return absl::NotFoundError(absl::StrCat(
        "this connection registered no region ", HandleHex(handle)));
  region = std::move(it->second);
  regions_.erase(it);
  region->Revoke();
  if (--per_tenant_[region->owner().tenant] == 0)
    per_tenant_.erase(region->owner().tenant);
  return absl::OkStatus();
}

size_t RegionRegistry::DropConnection(uint64_t connection) {
  std::vector<std::shared_ptr<MappedRegion>> dropped;  // unmapped unlocked
  absl::MutexLock lock(&mutex_);
  for (auto it = regions_.begin(); it != regions_.end();) {
    if (it->second->owner().connection != connection) {
      ++it;
      continue;
    }
    it->second->Revoke();
    if (--per_tenant_[it->second->owner().tenant] == 0)
      per_tenant_.erase(it->second->owner().tenant);
    dropped.push_back(std::move(it->second));
    it = regions_.erase(it);
  }
  return dropped.size();
}

absl::StatusOr<RegionView> RegionRegistry::Resolve(std::string_view tenant,
                                                   std::string_view handle,
                                                   uint64_t offset,
                                                   uint64_t length) const {
  std::shared_ptr<const MappedRegion> region;
  {
    absl::MutexLock lock(&mutex_);
    auto it = regions_.find(handle);
    if (it == regions_.end())
      return absl::NotFoundError(
          absl::StrCat("no region ", HandleHex(handle),
                       " is registered (it never was, was unregistered, or the "
                       "connection that registered it closed)"));
    region = it->second;
  }
  if (region->owner().tenant != tenant)
    return absl::PermissionDeniedError(
        absl::StrCat("region ", region->name(), " belongs to another tenant"));
  auto bytes = region->Slice(offset, length);
  if (!bytes.ok()) return bytes.status();
  return RegionView{std::move(region), *bytes};
}

size_t RegionRegistry::regions() const {
  absl::MutexLock lock(&mutex_);
  return regions_.size();
}

uint64_t RegionRegistry::mapped_bytes() const {
  absl::MutexLock lock(&mutex_);
  uint64_t bytes = 0;
  for (const auto& [handle, region] : regions_) bytes += region->size();
  return bytes;
}

std::map<std::string, RegionRegistry::TenantRegions> RegionRegistry::PerTenant()
    const {
  std::map<std::string, TenantRegions> tenants;
  absl::MutexLock lock(&mutex_);
  for (const auto& [handle, region] : regions_) {
    TenantRegions& entry = tenants[region->owner().tenant];
    ++entry.regions;
    entry.mapped_bytes += region->size();
  }
  return tenants;
}

}  // namespace seqkv::transport
