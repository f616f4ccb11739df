// Offline repair of a data directory (seqkv-server --repair): RocksDB's
// RepairDB, then a consistency sweep that leaves only chunks that can be
// served, with usage recounted from them.
#ifndef SEQKV_STORAGE_STORE_REPAIR_H_
#define SEQKV_STORAGE_STORE_REPAIR_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "storage/kv_store.h"

namespace seqkv {

struct RepairReport {
  uint64_t nodes_checked = 0;
  // Chunks dropped because their payload, or one they were coded against,
  // is missing or fails its checksum, or their parent chunk is lost, with
  // the chunks below them.
  uint64_t nodes_removed = 0;
  // Reference records (payload_refs/) set to what the chunks that stay
  // reference, or deleted.
  uint64_t reference_records_rewritten = 0;
  // Node records that did not parse.
  uint64_t records_unreadable = 0;
  // Children-index and node-stats entries of chunks that are gone.
  uint64_t index_entries_removed = 0;
  // Payloads (files, RocksDB values) no chunk names or references.
  uint64_t payloads_removed = 0;
  // Namespaces whose usage record was rewritten.
  uint64_t usage_recounted = 0;

  // One line per step, for the operator.
  std::string Describe() const;
};

// Repairs the store at `options.path`, which no server may have open.
absl::StatusOr<RepairReport> RepairStore(const KvStoreOptions& options);

}  // namespace seqkv

#endif  // SEQKV_STORAGE_STORE_REPAIR_H_
