// The store-wide record of what retention has learned of reuse
// (ReuseCountsRecord in records.proto). Like the request counters it is
// saved now and then and at shutdown; losing its last seconds to a crash is
// acceptable. This file owns the `reuse_counts` key of the meta column.
#ifndef SEQKV_STORAGE_REUSE_COUNTS_RECORD_H_
#define SEQKV_STORAGE_REUSE_COUNTS_RECORD_H_

#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "storage/kv_store.h"
#include "storage/records.pb.h"

namespace seqkv {

using storage::v1::ReuseCountsRecord;

// The record as last saved; nullopt when none was (a new store, or one
// written before the record existed). DATA_LOSS when it does not parse.
absl::StatusOr<std::optional<ReuseCountsRecord>> LoadReuseCounts(
    const KvStore& store);
// Saves `record` (not synced).
absl::Status SaveReuseCounts(KvStore& store, const ReuseCountsRecord& record);

}  // namespace seqkv

#endif  // SEQKV_STORAGE_REUSE_COUNTS_RECORD_H_
