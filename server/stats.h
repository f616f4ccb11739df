// Per-namespace counters: request counters in memory (saved periodically),
// usage (chunks and bytes stored) persisted with every commit.
#ifndef SEQKV_SERVER_STATS_H_
#define SEQKV_SERVER_STATS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "storage/kv_store.h"
#include "storage/records.pb.h"

namespace seqkv {

struct Usage {
  int64_t chunks_stored = 0;
  int64_t bytes_logical = 0;
  int64_t bytes_stored = 0;
};

struct NamespaceStats {
  std::string name;
  storage::v1::CountersRecord counters;
  Usage usage;

  double hit_rate() const;
  double compression_ratio() const;  // logical / stored bytes
  double dedup_ratio() const;  // logical bytes put / logical bytes stored new
};

class StatsRegistry {
 public:
  explicit StatsRegistry(KvStore* store) : store_(store) {}

  // Loads saved counters and usage of every namespace.
  absl::Status Load();
  // Saves request counters (usage is saved with each commit).
  absl::Status Save();

  void CountLookup(const std::string& ns, uint64_t tokens, uint64_t hits);
  void CountPut(const std::string& ns, uint64_t tokens, uint64_t deduped,
                uint64_t bytes_logical, uint64_t bytes_new);
  void CountGet(const std::string& ns, uint64_t tokens);
  void CountEvictions(const std::string& ns, uint64_t chunks);

  // Adds the new usage of `ns` after `delta` to `batch`; call ApplyUsage
  // with the same delta once the batch is written.
  void StageUsage(const std::string& ns, const Usage& delta,
                  rocksdb::WriteBatch& batch);
  void ApplyUsage(const std::string& ns, const Usage& delta);

  Usage usage(const std::string& ns);
  NamespaceStats Snapshot(const std::string& ns);
  std::map<std::string, NamespaceStats> SnapshotAll();

 private:
  struct Entry {
    storage::v1::CountersRecord counters;
    Usage usage;
  };
  Entry& EntryLocked(const std::string& ns)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  KvStore* store_;
  absl::Mutex mutex_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_STATS_H_
