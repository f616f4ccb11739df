#include "server/retention.h"

#include <algorithm>
#include <array>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace seqkv {
namespace {

// Says where a quota smaller than the tenant's comes from.
std::string NoteFor(const NamespaceLimit& limit, uint64_t here) {
  if (here >= limit.quota_bytes) return "";
  return absl::StrCat(" (the cluster-wide quota of ", limit.quota_bytes,
                      " less what the other members store)");
}

}  // namespace

std::string Retention::QuotaNote(const std::string& name_space,
                                 uint64_t quota) const {
  return NoteFor(LimitFor(name_space), quota);
}

void Retention::SetLimits(std::map<std::string, NamespaceLimit> limits,
                          uint64_t capacity_bytes) {
  absl::MutexLock lock(&mutex_);
  limits_ = std::move(limits);
  capacity_bytes_ = capacity_bytes;
}

NamespaceLimit Retention::LimitFor(const std::string& name_space) const {
  absl::MutexLock lock(&mutex_);
  auto it = limits_.find(name_space);
  return it == limits_.end() ? NamespaceLimit{} : it->second;
}

void Retention::SetElsewhere(std::map<std::string, uint64_t> bytes,
                             uint32_t members) {
  absl::MutexLock lock(&mutex_);
  elsewhere_ = std::move(bytes);
  members_ = std::max<uint32_t>(members, 1);
}

uint64_t Retention::QuotaHere(const std::string& name_space,
                              const NamespaceLimit& limit) const {
  if (limit.quota_bytes == 0) return 0;
  uint64_t elsewhere = 0;
  uint32_t members = 1;
  {
    absl::MutexLock lock(&mutex_);
    if (auto it = elsewhere_.find(name_space); it != elsewhere_.end())
      elsewhere = it->second;
    members = members_;
  }
  const uint64_t left =
      limit.quota_bytes > elsewhere ? limit.quota_bytes - elsewhere : 0;
  // 1 byte, not 0 (no quota): a refusing quota the others used up admits
  // nothing here.
  if (limit.reject) return std::max<uint64_t>(left, 1);
  return std::max<uint64_t>({left, limit.quota_bytes / members, 1});
}

uint64_t Retention::capacity_bytes() const {
  absl::MutexLock lock(&mutex_);
  return capacity_bytes_;
}

void Retention::SetDefaultTiers(TierPolicy tiers) {
  absl::MutexLock lock(&mutex_);
  default_tiers_ = tiers;
}

TierPolicy Retention::TiersFor(const std::string& name_space) const {
  absl::MutexLock lock(&mutex_);
  auto it = limits_.find(name_space);
  if (it != limits_.end() && it->second.tiers) return *it->second.tiers;
  return default_tiers_;
}

std::vector<Retention::DemotionStep> Retention::DemotionsDue(
    const TierShares& shares) const {
  std::map<std::string, NamespaceLimit> limits;
  uint64_t capacity = 0;
  {
    absl::MutexLock lock(&mutex_);
    limits = limits_;
    capacity = capacity_bytes_;
  }
  const double share[kLossyTiers] = {shares.exact, shares.lossy_1};
  // Bytes held at each tier that may be demoted, per namespace with lossy
  // tiers and over all of them.
  using TierBytes = std::array<double, kLossyTiers>;
  std::map<std::string, TierBytes> held;
  TierBytes total{};
  for (const auto& [ns, stats] : index_->Stats()) {
    if (!TiersFor(ns).lossy) continue;
    TierBytes& bytes = held[ns];
    for (uint32_t tier = 0; tier < kLossyTiers; ++tier) {
      bytes[tier] = static_cast<double>(stats.tiers[tier].bytes);
      total[tier] += bytes[tier];
    }
  }
  std::vector<std::pair<double, DemotionStep>> due;
  // A tier of `bytes` under `limit`: a step when it holds over its share.
  auto consider = [&](const std::string& ns, const TierBytes& bytes,
                      double limit) {
    for (uint32_t tier = 0; tier < kLossyTiers; ++tier) {
      const double over = bytes[tier] - share[tier] * limit;
      if (over <= 0) continue;
      const bool tier_1_full = bytes[1] >= share[1] * limit;
      const uint32_t to = tier == 0 && !tier_1_full ? 1 : kLossyTiers;
      due.push_back({over, {ns, tier, to}});
    }
  };
  for (const auto& [ns, bytes] : held) {
    auto limit = limits.find(ns);
    if (limit != limits.end() && limit->second.quota_bytes > 0 &&
        !limit->second.reject)
      consider(ns, bytes, static_cast<double>(QuotaHere(ns, limit->second)));
  }
  if (capacity > 0) {
    // Against the capacity, the namespace holding the most at the tier
    // gives up the chunk; the others follow, in case it has none it may
    // demote (chunks that stay at their tier), so that it holds up no one.
    std::vector<std::pair<double, DemotionStep>> by_quota;
    std::swap(due, by_quota);
    consider("", total, static_cast<double>(capacity));
    std::vector<std::pair<double, DemotionStep>> by_capacity;
    for (const auto& [over, step] : due) {
      std::vector<std::pair<double, std::string>> holders;
      for (const auto& [ns, bytes] : held)
        if (bytes[step.from] > 0) holders.push_back({bytes[step.from], ns});
      std::sort(holders.begin(), holders.end(), std::greater<>());
      for (const auto& [bytes, ns] : holders)
        by_capacity.push_back({over, {ns, step.from, step.to}});
    }
    due = std::move(by_capacity);
    due.insert(due.end(), by_quota.begin(), by_quota.end());
  }
  std::stable_sort(due.begin(), due.end(), [](const auto& a, const auto& b) {
    return a.first > b.first;
  });
  std::vector<DemotionStep> steps;
  for (auto& [over, step] : due) steps.push_back(std::move(step));
  return steps;
}

uint64_t Retention::RefusingQuotaFor(const std::string& name_space) const {
  const NamespaceLimit limit = LimitFor(name_space);
  return limit.reject ? QuotaHere(name_space, limit) : 0;
}

absl::Status Retention::CheckQuota(const std::string& name_space,
                                   uint64_t added_bytes) const {
  const uint64_t quota = RefusingQuotaFor(name_space);
  if (quota == 0) return absl::OkStatus();
  const int64_t used = trie_->usage().Get(name_space).charged_bytes();
  if (static_cast<uint64_t>(std::max<int64_t>(0, used)) + added_bytes > quota)
    return absl::ResourceExhaustedError(
        absl::StrCat("namespace '", name_space, "' is over its quota: ", used,
                     " bytes stored + ", added_bytes, " new > ", quota,
                     QuotaNote(name_space, quota)));
  return absl::OkStatus();
}

absl::Status Retention::CheckModelQuota(const std::string& name_space,
                                        int64_t added_bytes) const {
  const NamespaceLimit limit = LimitFor(name_space);
  if (limit.quota_bytes == 0 || added_bytes <= 0) return absl::OkStatus();
  const uint64_t quota = QuotaHere(name_space, limit);
  const Usage used = trie_->usage().Get(name_space);
  // Chunks can be evicted to make room, models cannot.
  const int64_t counted =
      limit.reject ? used.charged_bytes() : used.bytes_models;
  if (std::max<int64_t>(0, counted) + added_bytes > static_cast<int64_t>(quota))
    return absl::ResourceExhaustedError(absl::StrCat(
        "namespace '", name_space, "' is over its quota: ", counted,
        limit.reject ? " bytes stored" : " bytes of model records", " + ",
        added_bytes, " new model bytes > ", quota, NoteFor(limit, quota)));
  return absl::OkStatus();
}

absl::Status Retention::Evict() {
  std::map<std::string, NamespaceLimit> limits;
  uint64_t capacity = 0;
  {
    absl::MutexLock lock(&mutex_);
    limits = limits_;
    capacity = capacity_bytes_;
  }
  NodeRemovals removals = trie_->StartRemovals();
  // Bytes `ns` stores once the removals so far commit.
  auto stored_after = [&](const std::string& ns) {
    int64_t stored = trie_->usage().Get(ns).charged_bytes();
    if (auto it = removals.usage_deltas().find(ns);
        it != removals.usage_deltas().end())
      stored += it->second.bytes_stored;
    return stored;
  };
  // Evicts the least recently used leaf of `ns`; false when it has none.
  auto evict_one = [&](const std::string& ns) -> absl::StatusOr<bool> {
    auto victim = index_->NextVictim(ns);
    if (!victim) return false;
    auto record = trie_->ReadNode(*victim);
    if (!record.ok()) return record.status();
    if (!record->has_value()) {
      index_->Remove(*victim);
      return true;
    }
    if (TiersFor(ns).tokens_only) {
      index_->ChangeTier(*victim,
                         trie_->DropPayload(*victim, **record, removals));
    } else if (index_->HasTokensOnlyChildren(*victim)) {
      // Left by a server that kept tokens: they go with it.
      auto removal =
          trie_->RemoveSubtreeOf(*victim, (*record)->payload_key(), removals);
      if (!removal.ok()) return removal.status();
      for (const NodeKey& key : removal->keys) index_->Remove(key);
    } else {
      index_->Remove(*victim);
      trie_->RemoveLeaf(*victim, **record, removals);
    }
    return true;
  };
  for (const auto& [ns, limit] : limits) {
    if (limit.quota_bytes == 0 || limit.reject) continue;
    const uint64_t quota = QuotaHere(ns, limit);
    while (static_cast<uint64_t>(std::max<int64_t>(0, stored_after(ns))) >
           quota) {
      auto evicted = evict_one(ns);
      if (!evicted.ok()) return evicted.status();
      if (!*evicted) break;
    }
  }
  if (capacity > 0) {
    // Fair across tenants: always take from the namespace storing the most.
    while (true) {
      int64_t total = 0, largest = -1;
      std::string largest_ns;
      for (const auto& [ns, usage] : trie_->usage().GetAll()) {
        const int64_t used = stored_after(ns);
        total += used;
        if (used > largest) largest = used, largest_ns = ns;
      }
      if (total <= static_cast<int64_t>(capacity) || largest <= 0) break;
      auto evicted = evict_one(largest_ns);
      if (!evicted.ok()) return evicted.status();
      if (!*evicted) break;
    }
  }
  if (removals.empty()) return absl::OkStatus();
  const std::map<std::string, Usage> deltas = removals.usage_deltas();
  if (auto status = trie_->CommitRemovals(removals); !status.ok())
    return status;
  for (const auto& [ns, delta] : deltas)
    if (delta.chunks_stored < 0)
      stats_->CountEvictions(ns, static_cast<uint64_t>(-delta.chunks_stored));
  // Tokens-only chunks are bounded like the index's ghosts; the oldest go,
  // with what is below them (tokens only too: a chunk keeps its KV only
  // while its prefix does).
  for (const auto& [ns, delta] : deltas) {
    for (const NodeKey& key : index_->ExcessTokensOnly(ns)) {
      auto removal = trie_->RemoveSubtreeOf(key, "", removals);
      if (!removal.ok()) return removal.status();
      for (const NodeKey& gone : removal->keys) index_->Remove(gone);
    }
  }
  return trie_->CommitRemovals(removals);
}

}  // namespace seqkv
