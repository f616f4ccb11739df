#include "storage/estimator_record.h"

#include <string>

namespace seqkv {
namespace {

constexpr char kEstimatorKey[] = "estimator";

}  // namespace

absl::StatusOr<std::optional<EstimatorRecord>> LoadEstimatorRecord(
    const KvStore& store) {
  auto value = store.Get(Column::kMeta, kEstimatorKey);
  if (!value.ok()) return value.status();
  if (!value->has_value()) return std::optional<EstimatorRecord>();
  EstimatorRecord record;
  if (!record.ParseFromString(**value))
    return absl::DataLossError("corrupt record estimator");
  return std::optional<EstimatorRecord>(std::move(record));
}

void StageEstimatorRecord(const EstimatorRecord& record, WriteBatch& batch) {
  batch.Put(Column::kMeta, kEstimatorKey, record.SerializeAsString());
}

}  // namespace seqkv
