#include "server/stats.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace seqkv {
namespace {

constexpr absl::string_view kCountersPrefix = "counters/";
constexpr absl::string_view kUsagePrefix = "usage/";

storage::v1::UsageRecord ToRecord(const Usage& usage) {
  storage::v1::UsageRecord record;
  record.set_chunks_stored(
      static_cast<uint64_t>(std::max<int64_t>(0, usage.chunks_stored)));
  record.set_bytes_logical(
      static_cast<uint64_t>(std::max<int64_t>(0, usage.bytes_logical)));
  record.set_bytes_stored(
      static_cast<uint64_t>(std::max<int64_t>(0, usage.bytes_stored)));
  return record;
}

}  // namespace

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

StatsRegistry::Entry& StatsRegistry::EntryLocked(const std::string& ns) {
  return entries_[ns];
}

absl::Status StatsRegistry::Load() {
  auto it = store_->NewIterator(Column::kMeta);
  absl::MutexLock lock(&mutex_);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string key = it->key().ToString();
    if (absl::StartsWith(key, kCountersPrefix)) {
      storage::v1::CountersRecord record;
      if (!record.ParseFromArray(it->value().data(),
                                 static_cast<int>(it->value().size())))
        return absl::DataLossError(absl::StrCat("corrupt record ", key));
      EntryLocked(key.substr(kCountersPrefix.size())).counters = record;
    } else if (absl::StartsWith(key, kUsagePrefix)) {
      storage::v1::UsageRecord record;
      if (!record.ParseFromArray(it->value().data(),
                                 static_cast<int>(it->value().size())))
        return absl::DataLossError(absl::StrCat("corrupt record ", key));
      Usage& usage = EntryLocked(key.substr(kUsagePrefix.size())).usage;
      usage.chunks_stored = static_cast<int64_t>(record.chunks_stored());
      usage.bytes_logical = static_cast<int64_t>(record.bytes_logical());
      usage.bytes_stored = static_cast<int64_t>(record.bytes_stored());
    }
  }
  return FromRocks(it->status(), "load counters");
}

absl::Status StatsRegistry::Save() {
  rocksdb::WriteBatch batch;
  {
    absl::MutexLock lock(&mutex_);
    for (const auto& [ns, entry] : entries_)
      batch.Put(store_->handle(Column::kMeta),
                absl::StrCat(kCountersPrefix, ns),
                entry.counters.SerializeAsString());
  }
  return store_->Write(batch, /*durable=*/false);
}

void StatsRegistry::CountLookup(const std::string& ns, uint64_t tokens,
                                uint64_t hits) {
  absl::MutexLock lock(&mutex_);
  auto& counters = EntryLocked(ns).counters;
  counters.set_lookups(counters.lookups() + 1);
  counters.set_lookup_tokens(counters.lookup_tokens() + tokens);
  counters.set_hit_tokens(counters.hit_tokens() + hits);
}

void StatsRegistry::CountPut(const std::string& ns, uint64_t tokens,
                             uint64_t deduped, uint64_t bytes_logical,
                             uint64_t bytes_new) {
  absl::MutexLock lock(&mutex_);
  auto& counters = EntryLocked(ns).counters;
  counters.set_puts(counters.puts() + 1);
  counters.set_put_tokens(counters.put_tokens() + tokens);
  counters.set_chunks_deduped(counters.chunks_deduped() + deduped);
  counters.set_put_bytes_logical(counters.put_bytes_logical() + bytes_logical);
  counters.set_put_bytes_new(counters.put_bytes_new() + bytes_new);
}

void StatsRegistry::CountGet(const std::string& ns, uint64_t tokens) {
  absl::MutexLock lock(&mutex_);
  auto& counters = EntryLocked(ns).counters;
  counters.set_gets(counters.gets() + 1);
  counters.set_get_tokens(counters.get_tokens() + tokens);
}

void StatsRegistry::CountEvictions(const std::string& ns, uint64_t chunks) {
  absl::MutexLock lock(&mutex_);
  auto& counters = EntryLocked(ns).counters;
  counters.set_evictions(counters.evictions() + chunks);
}

void StatsRegistry::StageUsage(const std::string& ns, const Usage& delta,
                               rocksdb::WriteBatch& batch) {
  absl::MutexLock lock(&mutex_);
  Usage next = EntryLocked(ns).usage;
  next.chunks_stored += delta.chunks_stored;
  next.bytes_logical += delta.bytes_logical;
  next.bytes_stored += delta.bytes_stored;
  batch.Put(store_->handle(Column::kMeta), absl::StrCat(kUsagePrefix, ns),
            ToRecord(next).SerializeAsString());
}

void StatsRegistry::ApplyUsage(const std::string& ns, const Usage& delta) {
  absl::MutexLock lock(&mutex_);
  Usage& usage = EntryLocked(ns).usage;
  usage.chunks_stored += delta.chunks_stored;
  usage.bytes_logical += delta.bytes_logical;
  usage.bytes_stored += delta.bytes_stored;
}

Usage StatsRegistry::usage(const std::string& ns) {
  absl::MutexLock lock(&mutex_);
  return EntryLocked(ns).usage;
}

NamespaceStats StatsRegistry::Snapshot(const std::string& ns) {
  absl::MutexLock lock(&mutex_);
  const Entry& entry = EntryLocked(ns);
  return {ns, entry.counters, entry.usage};
}

std::map<std::string, NamespaceStats> StatsRegistry::SnapshotAll() {
  absl::MutexLock lock(&mutex_);
  std::map<std::string, NamespaceStats> all;
  for (const auto& [ns, entry] : entries_)
    all[ns] = {ns, entry.counters, entry.usage};
  return all;
}

}  // namespace seqkv
