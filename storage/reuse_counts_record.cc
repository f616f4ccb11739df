#include "storage/reuse_counts_record.h"

#include <string>

namespace seqkv {
namespace {

constexpr char kReuseCountsKey[] = "reuse_counts";

}  // namespace

absl::StatusOr<std::optional<ReuseCountsRecord>> LoadReuseCounts(
    const KvStore& store) {
  auto value = store.Get(Column::kMeta, kReuseCountsKey);
  if (!value.ok()) return value.status();
  if (!value->has_value()) return std::optional<ReuseCountsRecord>();
  ReuseCountsRecord record;
  if (!record.ParseFromString(**value))
    return absl::DataLossError("corrupt record reuse_counts");
  return std::optional<ReuseCountsRecord>(std::move(record));
}

absl::Status SaveReuseCounts(KvStore& store, const ReuseCountsRecord& record) {
  WriteBatch batch(store);
  batch.Put(Column::kMeta, kReuseCountsKey, record.SerializeAsString());
  return store.Write(batch, /*durable=*/false);
}

}  // namespace seqkv
