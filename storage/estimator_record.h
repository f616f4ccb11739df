// The store-wide record of what the node index has learned from requests
// (EstimatorRecord in records.proto). Written in the same batch as every
// flush of node visits (the decayed counts in node stats are relative to
// its lookup clocks), logged, unsynced: a crash loses at most the last
// second of both. This file owns the `estimator` key of the meta column.
#ifndef SEQKV_STORAGE_ESTIMATOR_RECORD_H_
#define SEQKV_STORAGE_ESTIMATOR_RECORD_H_

#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "storage/kv_store.h"
#include "storage/records.pb.h"

namespace seqkv {

using storage::v1::EstimatorRecord;

// The record as last saved; nullopt when none was (a new store, or one
// written before the record existed). DATA_LOSS when it does not parse.
absl::StatusOr<std::optional<EstimatorRecord>> LoadEstimatorRecord(
    const KvStore& store);
// Adds `record` to `batch`, replacing the one saved.
void StageEstimatorRecord(const EstimatorRecord& record, WriteBatch& batch);

}  // namespace seqkv

#endif  // SEQKV_STORAGE_ESTIMATOR_RECORD_H_
