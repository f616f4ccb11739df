// The RocksDB database behind seqkv, with one column family per kind of
// record. Everything seqkv persists goes through here, and only storage/
// uses it directly: the rest of the server goes through the trie, the model
// registry and the namespace records, which own the keys and records.
//
// Thread-safe: RocksDB serializes writes itself. Callers that check, then
// write (the trie's commits) serialize among themselves.
#ifndef SEQKV_STORAGE_KV_STORE_H_
#define SEQKV_STORAGE_KV_STORE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
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
  // Writes are refused with RESOURCE_EXHAUSTED while the file system of
  // `path` has less than this many bytes free beyond the write itself and
  // what the memtables will take once flushed, so that RocksDB never runs
  // out of space itself (0: no reserve; RocksDB's own NoSpace errors are
  // still recovered from, see Heal).
  uint64_t reserved_disk_bytes = 64 << 20;
};

// Whether the store takes writes, and why not. Reads are served either way.
struct StoreHealth {
  bool writable = true;
  // Why writes are refused (empty when writable).
  std::string write_refusal;
  uint64_t free_bytes = 0;
  // What the next write needs free besides its own bytes.
  uint64_t required_free_bytes = 0;
  // Damage found in the data (then the store is read-only); empty if none.
  std::string damage;
};

class KvStore;

// Writes to any columns, applied atomically by KvStore::Write. Not
// thread-safe; bound to the store it was made for.
class WriteBatch {
 public:
  explicit WriteBatch(const KvStore& store) : store_(&store) {}

  void Put(Column column, std::string_view key, std::string_view value);
  void Delete(Column column, std::string_view key);
  // The batch gives space back (removals): it is written even while the
  // disk is below its reserve.
  void MarkFreesSpace() { frees_space_ = true; }
  // Merged by the column's merge operator (node stats).
  void Merge(Column column, std::string_view key, std::string_view value);
  int Count() const { return batch_.Count(); }
  void Clear() { batch_.Clear(); }

 private:
  friend class KvStore;
  const KvStore* store_;
  rocksdb::WriteBatch batch_;
  bool frees_space_ = false;
};

class KvStore {
 public:
  // Opens the database, creating it when missing. A database RocksDB
  // finds damaged while opening (a table it cannot read) is opened again
  // without its paranoid checks, so that what is intact can be served:
  // `damage()` then says what was found; run Repair to rebuild it.
  static absl::StatusOr<std::unique_ptr<KvStore>> Open(
      const KvStoreOptions& options);
  // Rebuilds the database at `options.path` from the tables and logs it
  // can read (rocksdb::RepairDB); damaged tables move to `lost/` there.
  // Must not be open.
  static absl::Status Repair(const KvStoreOptions& options);
  ~KvStore();
  KvStore(const KvStore&) = delete;
  KvStore& operator=(const KvStore&) = delete;

  // NOT_FOUND is not an error here: it is std::nullopt. Without
  // `verify_checksums` the caller checks the value itself.
  absl::StatusOr<std::optional<std::string>> Get(
      Column column, std::string_view key, bool verify_checksums = true) const;
  absl::Status Put(Column column, std::string_view key, std::string_view value);
  // Applies `batch` atomically; `durable` syncs the WAL first.
  absl::Status Write(WriteBatch& batch, bool durable);
  // Calls `visit` with every key of `column` that starts with `prefix`, in
  // key order, until it returns false.
  absl::Status Scan(
      Column column, std::string_view prefix,
      const std::function<bool(std::string_view key, std::string_view value)>&
          visit) const;
  // A raw cursor, for scans that walk two columns side by side.
  std::unique_ptr<rocksdb::Iterator> NewIterator(Column column) const;

  // OK when the disk has room for `bytes` more and the store's reserve;
  // RESOURCE_EXHAUSTED otherwise (and the store reports itself not
  // writable until space comes back). Put and Write check it themselves;
  // callers writing elsewhere under `path` (payload files) call it first.
  absl::Status CheckFreeSpace(uint64_t bytes) const;
  // Recovers from a write error RocksDB stopped on (a full disk) once the
  // reserve is free again, and lets the memtables flush when they keep
  // the reserve from being met. Cheap; call every second or so.
  void Heal();
  StoreHealth health() const;
  // Makes the store read-only (FAILED_PRECONDITION on every write) for
  // damage found in its data, and says so in health(). At open, RocksDB's
  // own findings do this; callers report what they find in reading.
  void MarkDamaged(std::string what);
  // What was found damaged; empty when nothing was.
  std::string damage() const;

  // Closes RocksDB and opens it again, which replays its WAL into a new
  // one: what Heal does after a failed write, rather than RocksDB's
  // Resume(), which keeps the WAL writer whose append failed when no
  // memtable holds data (all flushed just before) so that the next write
  // aborts Debian's assertion-enabled RocksDB 7.8. Calls made meanwhile
  // fail with UNAVAILABLE; waits up to `wait` for the calls and iterators
  // holding the database to let go (UNAVAILABLE, nothing changed, if they
  // do not). Writes wait for it.
  absl::Status Reopen(absl::Duration wait);
  // How many times the database was reopened.
  uint64_t reopens() const { return reopens_.load(std::memory_order_relaxed); }

  bool sync_commits() const { return options_.sync_commits; }
  const PayloadFiles& payload_files() const { return *payload_files_; }
  uint64_t payload_file_min_bytes() const {
    return options_.payload_file_min_bytes;
  }

  // One open RocksDB: the database and its column family handles. Every
  // call holds the one it uses, so that Heal can close it once none does.
  struct Rocks;

 private:
  friend class WriteBatch;
  // A column family named by its id, which stays the same when the
  // database is reopened: batches are built with these.
  class ColumnId;

  KvStore(KvStoreOptions options, std::shared_ptr<Rocks> rocks,
          std::unique_ptr<PayloadFiles> payload_files);

  // The open database, or UNAVAILABLE while it is reopened.
  absl::StatusOr<std::shared_ptr<Rocks>> CurrentRocks() const;
  // Reopen with write_mutex_ held.
  absl::Status ReopenLocked(absl::Duration wait)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mutex_);
  rocksdb::ColumnFamilyHandle* column(Column c) const;

  // Notes a failed RocksDB write: NoSpace and I/O errors stop RocksDB's
  // writes until Heal resumes it.
  absl::Status NoteWrite(Rocks& rocks, const rocksdb::Status& status,
                         std::string_view what);
  uint64_t MemtableBytes() const;
  absl::Status CheckUndamaged() const;
  // RESOURCE_EXHAUSTED while RocksDB's writes are stopped, else as
  // CheckUndamaged.
  absl::Status CheckWritesRunning() const;

  KvStoreOptions options_;
  std::atomic<bool> damaged_{false};
  // Set by a refused or failed write, cleared by the next check or Heal
  // that finds the disk fit for writes again.
  mutable std::atomic<bool> writable_{true};
  mutable std::atomic<bool> rocks_stopped_{false};
  // Held across every RocksDB write, and by Heal's flush and resume: in
  // RocksDB 7.8 a write that follows a failed WAL append into the write
  // queue (a counters write beside a commit) may flush or switch the failed
  // WAL writer before the error stops writes, which its assertion-enabled
  // Debian build aborts on. Serialized, the write after a failure finds the
  // store stopped and never reaches RocksDB. The engine commits one at a
  // time already, so this costs no group commits.
  absl::Mutex write_mutex_;
  mutable absl::Mutex health_mutex_;
  mutable std::string write_refusal_ ABSL_GUARDED_BY(health_mutex_);
  std::string damage_ ABSL_GUARDED_BY(health_mutex_);
  mutable uint64_t last_free_bytes_ ABSL_GUARDED_BY(health_mutex_) = 0;
  mutable uint64_t last_required_bytes_ ABSL_GUARDED_BY(health_mutex_) = 0;
  // The write last refused for space.
  mutable uint64_t refused_bytes_ ABSL_GUARDED_BY(health_mutex_) = 0;
  mutable absl::Mutex rocks_mutex_;
  // Null while Heal reopens it.
  std::shared_ptr<Rocks> rocks_ ABSL_GUARDED_BY(rocks_mutex_);
  std::vector<std::unique_ptr<ColumnId>> column_ids_;
  std::atomic<uint64_t> reopens_{0};
  std::unique_ptr<PayloadFiles> payload_files_;
};

// A node's stats: its visits, its last use in unix micros, and its decayed
// count of lookups through it in the log form of server/prefix_estimator.h
// (log2 of the count plus the namespace's lookup clock over the half-life:
// it only grows). Stored as 24 bytes (16 before the decayed count, read as
// none) and merged by a RocksDB merge operator (visits add, the others take
// the larger), so a lookup never reads before it writes.
inline constexpr double kNoLookupVisits = -1e300;
struct NodeStats {
  uint64_t visits = 0;
  int64_t last_used_micros = 0;
  double log_lookup_visits = kNoLookupVisits;
};
std::string EncodeNodeStats(const NodeStats& stats);
// Values of other sizes read as no stats.
NodeStats DecodeNodeStats(std::string_view value);

// RocksDB status to absl status; `what` names the operation.
absl::Status FromRocks(const rocksdb::Status& status, std::string_view what);

}  // namespace seqkv

#endif  // SEQKV_STORAGE_KV_STORE_H_
