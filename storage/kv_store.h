// The RocksDB database behind seqkv, with one column family per kind of
// record. Everything seqkv persists goes through here.
#ifndef SEQKV_STORAGE_KV_STORE_H_
#define SEQKV_STORAGE_KV_STORE_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "storage/payload_files.h"

namespace seqkv {

enum class Column {
  kMeta,       // models, usage, counters
  kNodes,      // node key -> NodeRecord
  kChildren,   // parent key + first token + child key -> child tokens
  kPayloads,   // payload key -> encoded chunk
  kNodeStats,  // node key -> visits and last use (merged, not rewritten)
};

struct KvStoreOptions {
  std::string path;
  // fsync the WAL on commits, so an acknowledged Put survives power loss.
  bool sync_commits = true;
  size_t block_cache_bytes = 256 << 20;
  // Payloads of at least this many bytes are written to files of their own
  // under `path`/payloads rather than into RocksDB (0: none are; files
  // written before stay readable).
  uint64_t payload_file_min_bytes = 256 << 10;
  // Closed write-ahead logs on disk beyond which RocksDB flushes the
  // memtables that keep the oldest one alive, so that it can be deleted. The
  // log being written is not counted: it ends when a memtable fills.
  uint64_t max_total_wal_bytes = 256 << 20;
  // Memtable of the payloads column family (RocksDB's default size).
  size_t payload_memtable_bytes = 64 << 20;
};

class KvStore {
 public:
  static absl::StatusOr<std::unique_ptr<KvStore>> Open(
      const KvStoreOptions& options);
  ~KvStore();
  KvStore(const KvStore&) = delete;
  KvStore& operator=(const KvStore&) = delete;

  // NOT_FOUND is not an error here: it is std::nullopt. Without
  // `verify_checksums` the caller checks the value itself.
  absl::StatusOr<std::optional<std::string>> Get(
      Column column, std::string_view key, bool verify_checksums = true) const;
  absl::Status Put(Column column, std::string_view key, std::string_view value);
  // Applies `batch` atomically; `durable` syncs the WAL first.
  absl::Status Write(rocksdb::WriteBatch& batch, bool durable);
  // Applies `batch` without the WAL: for counters that may be lost on crash.
  absl::Status WriteUnlogged(rocksdb::WriteBatch& batch);
  std::unique_ptr<rocksdb::Iterator> NewIterator(Column column) const;

  rocksdb::ColumnFamilyHandle* handle(Column column) const;
  bool sync_commits() const { return options_.sync_commits; }
  const PayloadFiles& payload_files() const { return *payload_files_; }
  uint64_t payload_file_min_bytes() const {
    return options_.payload_file_min_bytes;
  }

 private:
  KvStore(KvStoreOptions options, std::unique_ptr<rocksdb::DB> db,
          std::vector<rocksdb::ColumnFamilyHandle*> handles,
          std::unique_ptr<PayloadFiles> payload_files);

  KvStoreOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::unique_ptr<PayloadFiles> payload_files_;
};

// Node stats values: visits (u64) and last use in unix micros (u64), merged
// by a RocksDB merge operator so a lookup never reads before it writes.
std::string EncodeNodeStats(uint64_t visits, int64_t last_used_micros);
void DecodeNodeStats(std::string_view value, uint64_t& visits,
                     int64_t& last_used_micros);

// RocksDB status to absl status; `what` names the operation.
absl::Status FromRocks(const rocksdb::Status& status, std::string_view what);

}  // namespace seqkv

#endif  // SEQKV_STORAGE_KV_STORE_H_
