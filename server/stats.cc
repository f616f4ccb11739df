#include "server/stats.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace seqkv {

double NamespaceStats::hit_rate() const {
  return counters.lookup_tokens() == 0
             ? 0.0
             : static_cast<double>(counters.hit_tokens()) /
                   static_cast<double>(counters.lookup_tokens());
}

double NamespaceStats::compression_ratio() const {
  return usage.bytes_stored <= 0 ? 0.0
                                 : static_cast<double>(usage.bytes_logical) /
                                       static_cast<double>(usage.bytes_stored);
}

double NamespaceStats::dedup_ratio() const {
  // Bytes Puts sent over the bytes they had to store: eviction does not move
  // it.
  return counters.put_bytes_new() == 0
             ? 0.0
             : static_cast<double>(counters.put_bytes_logical()) /
                   static_cast<double>(counters.put_bytes_new());
}

double NamespaceStats::reference_bytes_saved() const {
  const auto& c = counters;
  const double plain_logical = static_cast<double>(c.put_bytes_new()) -
                               static_cast<double>(c.reference_bytes_logical());
  const double plain_stored = static_cast<double>(c.put_bytes_stored()) -
                              static_cast<double>(c.reference_bytes_stored());
  if (plain_logical <= 0 || c.chunks_with_references() == 0) return 0;
  return static_cast<double>(c.reference_bytes_logical()) * plain_stored /
             plain_logical -
         static_cast<double>(c.reference_bytes_stored());
}

absl::Status StatsRegistry::Load() {
  auto loaded = LoadCounters(*store_);
  if (!loaded.ok()) return loaded.status();
  absl::MutexLock lock(&mutex_);
  counters_ = std::move(*loaded);
  return absl::OkStatus();
}

absl::Status StatsRegistry::Save() {
  std::map<std::string, CountersRecord> counters;
  {
    absl::MutexLock lock(&mutex_);
    counters = counters_;
  }
  return SaveCounters(*store_, counters);
}

void StatsRegistry::CountLookup(const std::string& ns, uint64_t tokens,
                                uint64_t hits) {
  absl::MutexLock lock(&mutex_);
  auto& counters = counters_[ns];
  counters.set_lookups(counters.lookups() + 1);
  counters.set_lookup_tokens(counters.lookup_tokens() + tokens);
  counters.set_hit_tokens(counters.hit_tokens() + hits);
}

void StatsRegistry::CountPut(const std::string& ns, uint64_t tokens,
                             uint64_t deduped, uint64_t bytes_logical,
                             uint64_t bytes_new, const PutReuse& reuse) {
  absl::MutexLock lock(&mutex_);
  auto& counters = counters_[ns];
  counters.set_tokens_new(counters.tokens_new() + reuse.tokens_new);
  counters.set_tokens_deduped(counters.tokens_deduped() + reuse.tokens_deduped);
  counters.set_tokens_split_deduped(counters.tokens_split_deduped() +
                                    reuse.tokens_split_deduped);
  counters.set_tokens_cross_prefix(counters.tokens_cross_prefix() +
                                   reuse.tokens_cross_prefix);
  counters.set_put_bytes_stored(counters.put_bytes_stored() +
                                reuse.bytes_stored);
  counters.set_chunks_with_references(counters.chunks_with_references() +
                                      reuse.chunks_with_references);
  counters.set_reference_bytes_logical(counters.reference_bytes_logical() +
                                       reuse.reference_bytes_logical);
  counters.set_reference_bytes_stored(counters.reference_bytes_stored() +
                                      reuse.reference_bytes_stored);
  counters.set_puts(counters.puts() + 1);
  counters.set_put_tokens(counters.put_tokens() + tokens);
  counters.set_chunks_deduped(counters.chunks_deduped() + deduped);
  counters.set_put_bytes_logical(counters.put_bytes_logical() + bytes_logical);
  counters.set_put_bytes_new(counters.put_bytes_new() + bytes_new);
}

void StatsRegistry::CountGet(const std::string& ns, uint64_t tokens) {
  absl::MutexLock lock(&mutex_);
  auto& counters = counters_[ns];
  counters.set_gets(counters.gets() + 1);
  counters.set_get_tokens(counters.get_tokens() + tokens);
}

void StatsRegistry::CountEvictions(const std::string& ns, uint64_t chunks) {
  absl::MutexLock lock(&mutex_);
  auto& counters = counters_[ns];
  counters.set_evictions(counters.evictions() + chunks);
}

void StatsRegistry::CountQuarantined(const std::string& ns, uint64_t chunks) {
  absl::MutexLock lock(&mutex_);
  auto& counters = counters_[ns];
  counters.set_chunks_quarantined(counters.chunks_quarantined() + chunks);
}

NamespaceStats StatsRegistry::Snapshot(const std::string& ns) {
  NamespaceStats stats{ns, {}, usage_->Get(ns)};
  absl::MutexLock lock(&mutex_);
  if (auto it = counters_.find(ns); it != counters_.end())
    stats.counters = it->second;
  return stats;
}

std::map<std::string, NamespaceStats> StatsRegistry::SnapshotAll() {
  std::map<std::string, NamespaceStats> all;
  for (auto& [ns, usage] : usage_->GetAll()) all[ns] = {ns, {}, usage};
  absl::MutexLock lock(&mutex_);
  for (const auto& [ns, counters] : counters_) {
    NamespaceStats& stats = all[ns];
    stats.name = ns;
    stats.counters = counters;
  }
  return all;
}

}  // namespace seqkv
