#include "storage/namespace_records.h"

#include <algorithm>

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
  record.set_bytes_models(
      static_cast<uint64_t>(std::max<int64_t>(0, usage.bytes_models)));
  return record;
}

}  // namespace

absl::Status NamespaceUsage::Load() {
  std::map<std::string, Usage> loaded;
  absl::Status corrupt;
  auto status =
      store_->Scan(Column::kMeta, std::string(kUsagePrefix),
                   [&](std::string_view key, std::string_view value) {
                     storage::v1::UsageRecord record;
                     if (!record.ParseFromArray(
                             value.data(), static_cast<int>(value.size()))) {
                       corrupt = absl::DataLossError(
                           absl::StrCat("corrupt record ", std::string(key)));
                       return false;
                     }
                     loaded[std::string(key.substr(kUsagePrefix.size()))] = {
                         static_cast<int64_t>(record.chunks_stored()),
                         static_cast<int64_t>(record.bytes_logical()),
                         static_cast<int64_t>(record.bytes_stored()),
                         static_cast<int64_t>(record.bytes_models())};
                     return true;
                   });
  if (!corrupt.ok()) return corrupt;
  if (!status.ok()) return status;
  absl::MutexLock lock(&mutex_);
  usage_ = std::move(loaded);
  return absl::OkStatus();
}

Usage NamespaceUsage::Get(const std::string& name_space) const {
  absl::MutexLock lock(&mutex_);
  auto it = usage_.find(name_space);
  return it == usage_.end() ? Usage{} : it->second;
}

std::map<std::string, Usage> NamespaceUsage::GetAll() const {
  absl::MutexLock lock(&mutex_);
  return usage_;
}

void NamespaceUsage::Stage(const std::string& name_space, const Usage& delta,
                           WriteBatch& batch) const {
  Usage next = Get(name_space);
  next += delta;
  batch.Put(Column::kMeta, absl::StrCat(kUsagePrefix, name_space),
            ToRecord(next).SerializeAsString());
}

void NamespaceUsage::Apply(const std::string& name_space, const Usage& delta) {
  absl::MutexLock lock(&mutex_);
  usage_[name_space] += delta;
}

absl::StatusOr<std::map<std::string, CountersRecord>> LoadCounters(
    const KvStore& store) {
  std::map<std::string, CountersRecord> counters;
  absl::Status corrupt;
  auto status = store.Scan(
      Column::kMeta, std::string(kCountersPrefix),
      [&](std::string_view key, std::string_view value) {
        CountersRecord& record =
            counters[std::string(key.substr(kCountersPrefix.size()))];
        if (!record.ParseFromArray(value.data(),
                                   static_cast<int>(value.size()))) {
          corrupt = absl::DataLossError(
              absl::StrCat("corrupt record ", std::string(key)));
          return false;
        }
        return true;
      });
  if (!corrupt.ok()) return corrupt;
  if (!status.ok()) return status;
  return counters;
}

absl::Status SaveCounters(
    KvStore& store, const std::map<std::string, CountersRecord>& counters) {
  WriteBatch batch(store);
  for (const auto& [name_space, record] : counters)
    batch.Put(Column::kMeta, absl::StrCat(kCountersPrefix, name_space),
              record.SerializeAsString());
  return store.Write(batch, /*durable=*/false);
}

}  // namespace seqkv
