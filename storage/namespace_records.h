// The per-namespace records of the meta column family: usage (what a
// namespace's stored chunks take, written in the same batch as every change
// to them) and request counters (saved now and then; losing the last few
// seconds of them to a crash is acceptable). This file owns the `usage/`
// and `counters/` keys.
#ifndef SEQKV_STORAGE_NAMESPACE_RECORDS_H_
#define SEQKV_STORAGE_NAMESPACE_RECORDS_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "storage/kv_store.h"
#include "storage/records.pb.h"

namespace seqkv {

using storage::v1::CountersRecord;

// Chunks and bytes a namespace stores, or a change to them (then possibly
// negative).
struct Usage {
  int64_t chunks_stored = 0;
  int64_t bytes_logical = 0;
  int64_t bytes_stored = 0;
  // Model records and codec state the namespace's tenant owns.
  int64_t bytes_models = 0;

  Usage& operator+=(const Usage& other) {
    chunks_stored += other.chunks_stored;
    bytes_logical += other.bytes_logical;
    bytes_stored += other.bytes_stored;
    bytes_models += other.bytes_models;
    return *this;
  }
  // What counts against a quota: chunks and models.
  int64_t charged_bytes() const { return bytes_stored + bytes_models; }
};

// Usage of every namespace, in memory and on disk. Thread-safe. Changes
// are staged into the batch that makes them (StageUsage), then applied
// once it is written (ApplyUsage); callers serialize the pairs.
class NamespaceUsage {
 public:
  explicit NamespaceUsage(KvStore* store) : store_(store) {}

  // Reads every namespace's usage record.
  absl::Status Load();

  // Usage of `name_space`; zeros when it stores nothing.
  Usage Get(const std::string& name_space) const;
  std::map<std::string, Usage> GetAll() const;

  // Adds the usage of `name_space` after `delta` to `batch`.
  void Stage(const std::string& name_space, const Usage& delta,
             WriteBatch& batch) const;
  // Applies `delta` in memory once the batch that staged it is written.
  void Apply(const std::string& name_space, const Usage& delta);

 private:
  KvStore* store_;
  mutable absl::Mutex mutex_;
  std::map<std::string, Usage> usage_ ABSL_GUARDED_BY(mutex_);
};

// Request counters of every namespace, as last saved.
absl::StatusOr<std::map<std::string, CountersRecord>> LoadCounters(
    const KvStore& store);
// Saves `counters` (not synced: counters may lose their last seconds).
absl::Status SaveCounters(
    KvStore& store, const std::map<std::string, CountersRecord>& counters);

}  // namespace seqkv

#endif  // SEQKV_STORAGE_NAMESPACE_RECORDS_H_
