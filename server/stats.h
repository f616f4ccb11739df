// Per-namespace statistics: request counters, kept in memory and saved now
// and then, beside the usage the trie keeps in step with its commits.
#ifndef SEQKV_SERVER_STATS_H_
#define SEQKV_SERVER_STATS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "storage/kv_store.h"
#include "storage/namespace_records.h"

namespace seqkv {

// What a Put stored, and how (see PutResponse).
struct PutReuse {
  uint32_t tokens_new = 0;
  uint32_t tokens_deduped = 0;
  uint32_t tokens_split_deduped = 0;
  uint32_t tokens_cross_prefix = 0;
  uint64_t bytes_stored = 0;  // of the chunks stored anew
  uint32_t chunks_with_references = 0;
  uint64_t reference_bytes_logical = 0;
  uint64_t reference_bytes_stored = 0;
};

struct NamespaceStats {
  std::string name;
  CountersRecord counters;
  Usage usage;

  double hit_rate() const;
  double compression_ratio() const;  // logical / stored bytes
  double dedup_ratio() const;
  // Encoded bytes that coding chunks against others saved, estimated: what
  // those chunks would have cost at the bytes per logical byte of the
  // chunks coded on their own, less what they cost.
  double reference_bytes_saved()
      const;  // logical bytes put / logical bytes stored new
};

// Thread-safe.
class StatsRegistry {
 public:
  // `usage` is the trie's; both must outlive the registry.
  StatsRegistry(KvStore* store, const NamespaceUsage* usage)
      : store_(store), usage_(usage) {}

  // Loads the saved counters of every namespace.
  absl::Status Load();
  // Saves request counters (usage is saved with each commit).
  absl::Status Save();

  void CountLookup(const std::string& ns, uint64_t tokens, uint64_t hits);
  void CountPut(const std::string& ns, uint64_t tokens, uint64_t deduped,
                uint64_t bytes_logical, uint64_t bytes_new,
                const PutReuse& reuse);
  void CountGet(const std::string& ns, uint64_t tokens);
  void CountEvictions(const std::string& ns, uint64_t chunks);
  void CountQuarantined(const std::string& ns, uint64_t chunks);

  NamespaceStats Snapshot(const std::string& ns);
  std::map<std::string, NamespaceStats> SnapshotAll();

 private:
  KvStore* store_;
  const NamespaceUsage* usage_;
  absl::Mutex mutex_;
  std::map<std::string, CountersRecord> counters_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_STATS_H_
