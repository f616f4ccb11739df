#include "storage/kv_store.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "rocksdb/listener.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/table.h"
#include "spdlog/spdlog.h"

namespace seqkv {
namespace {

constexpr const char* kColumnNames[] = {"default", "nodes", "children",
                                        "payloads", "node_stats"};

// Sums visits and keeps the latest use.
class NodeStatsMergeOperator : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice& key, const rocksdb::Slice* existing,
             const rocksdb::Slice& value, std::string* new_value,
             rocksdb::Logger* logger) const override {
    NodeStats merged;
    if (existing != nullptr)
      merged =
          DecodeNodeStats(std::string_view(existing->data(), existing->size()));
    const NodeStats added =
        DecodeNodeStats(std::string_view(value.data(), value.size()));
    merged.visits += added.visits;
    merged.last_used_micros =
        std::max(merged.last_used_micros, added.last_used_micros);
    merged.log_lookup_visits =
        std::max(merged.log_lookup_visits, added.log_lookup_visits);
    *new_value = EncodeNodeStats(merged);
    return true;
  }
  const char* Name() const override { return "seqkv.NodeStatsMerge"; }
};

// RocksDB's informational log, sent to the server's log rather than to a
// LOG file in the data directory. Debian's librocksdb keeps its debug
// assertions, and the LOG file's writer asserts when it is written to after
// a failed write: on a full disk, the first error RocksDB logged after its
// LOG file hit ENOSPC aborted the process.
class SpdlogLogger : public rocksdb::Logger {
 public:
  SpdlogLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const rocksdb::InfoLogLevel level, const char* format,
            va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char line[1024];
    std::vsnprintf(line, sizeof(line), format, ap);
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL)
      spdlog::error("rocksdb: {}", line);
    else
      spdlog::warn("rocksdb: {}", line);
  }
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
};

// Keeps RocksDB from recovering on its own from a full disk: its
// SstFileManager waits for as much free space as the largest memtable
// (64 MiB), which a small volume may never have, and answers Resume() with
// Busy meanwhile. KvStore::Heal resumes instead, once its reserve is free.
class ManualRecovery : public rocksdb::EventListener {
 public:
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason,
                            rocksdb::Status error,
                            bool* auto_recovery) override {
    spdlog::warn("rocksdb stopped writes: {}", error.ToString());
    *auto_recovery = false;
  }
};

struct RocksSetup {
  rocksdb::Options db;
  std::vector<rocksdb::ColumnFamilyDescriptor> columns;
};

RocksSetup MakeSetup(const KvStoreOptions& options) {
  RocksSetup setup;
  rocksdb::Options& db_options = setup.db;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.paranoid_checks = true;
  db_options.info_log = std::make_shared<SpdlogLogger>();
  db_options.listeners.push_back(std::make_shared<ManualRecovery>());
  db_options.IncreaseParallelism(2);
  // A WAL file is kept until every column family it covers is flushed, and
  // the small ones (nodes, children, stats) rarely fill a memtable: without
  // a cap, WAL files full of long-evicted payloads pile up on disk.
  db_options.max_total_wal_size = options.max_total_wal_bytes;

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  table.cache_index_and_filter_blocks = true;
  rocksdb::ColumnFamilyOptions small_records;
  small_records.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // Payloads are large and written once: keep them in blob files so
  // compaction does not rewrite them.
  rocksdb::ColumnFamilyOptions payloads = small_records;
  payloads.write_buffer_size = options.payload_memtable_bytes;
  payloads.enable_blob_files = true;
  payloads.min_blob_size = 4096;
  // Under eviction every blob file collects garbage, not only the oldest
  // quarter (the default): a blob file half garbage forces the compaction
  // that rewrites it. Replaying a trace at 10% capacity, blob files held 2.9x
  // the live bytes with the defaults and 1.4x with these.
  payloads.enable_blob_garbage_collection = true;
  payloads.blob_garbage_collection_age_cutoff = 1.0;
  payloads.blob_garbage_collection_force_threshold = 0.5;
  // Model records are small, but the codec state they carry can reach
  // hundreds of MB (a layer-0 table): such values go to a blob file, written
  // once, rather than into an SST block that compaction would rewrite.
  rocksdb::ColumnFamilyOptions meta = small_records;
  meta.enable_blob_files = true;
  meta.min_blob_size = 1 << 20;
  rocksdb::ColumnFamilyOptions node_stats = small_records;
  node_stats.merge_operator = std::make_shared<NodeStatsMergeOperator>();

  setup.columns = {
      {kColumnNames[0], meta},          {kColumnNames[1], small_records},
      {kColumnNames[2], small_records}, {kColumnNames[3], payloads},
      {kColumnNames[4], node_stats},
  };
  return setup;
}

// Free bytes for unprivileged writers on the file system of `path`.
absl::StatusOr<uint64_t> FreeBytes(const std::string& path) {
  struct statvfs info;
  if (::statvfs(path.c_str(), &info) != 0)
    return absl::ErrnoToStatus(errno, absl::StrCat("statvfs ", path));
  return uint64_t{info.f_bavail} * info.f_frsize;
}

}  // namespace

std::string EncodeNodeStats(const NodeStats& stats) {
  std::string out(24, '\0');
  std::memcpy(out.data(), &stats.visits, 8);
  std::memcpy(out.data() + 8, &stats.last_used_micros, 8);
  std::memcpy(out.data() + 16, &stats.log_lookup_visits, 8);
  return out;
}

NodeStats DecodeNodeStats(std::string_view value) {
  NodeStats stats;
  if (value.size() != 16 && value.size() != 24) return stats;
  std::memcpy(&stats.visits, value.data(), 8);
  std::memcpy(&stats.last_used_micros, value.data() + 8, 8);
  if (value.size() == 24) {
    std::memcpy(&stats.log_lookup_visits, value.data() + 16, 8);
    // Not a number, or beyond any count a clock reaches: none.
    if (!(stats.log_lookup_visits > kNoLookupVisits &&
          stats.log_lookup_visits < 1e15))
      stats.log_lookup_visits = kNoLookupVisits;
  }
  return stats;
}

absl::Status FromRocks(const rocksdb::Status& status, std::string_view what) {
  if (status.ok()) return absl::OkStatus();
  std::string message =
      absl::StrCat(std::string(what), ": ", status.ToString());
  if (status.IsCorruption()) return absl::DataLossError(message);
  if (status.IsNotFound()) return absl::NotFoundError(message);
  if (status.IsNoSpace()) return absl::ResourceExhaustedError(message);
  if (status.IsBusy() || status.IsTryAgain())
    return absl::UnavailableError(message);
  return absl::InternalError(message);
}

struct KvStore::Rocks {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  // A write failed: closing must not flush the memtables, which would go
  // through the WAL writer whose append failed (see Reopen).
  std::atomic<bool> write_failed{false};

  rocksdb::Status Open(const RocksSetup& setup, const std::string& path) {
    rocksdb::DB* raw_db = nullptr;
    rocksdb::Status status =
        rocksdb::DB::Open(setup.db, path, setup.columns, &handles, &raw_db);
    db.reset(raw_db);
    return status;
  }
  rocksdb::ColumnFamilyHandle* handle(Column column) const {
    return handles[static_cast<size_t>(column)];
  }
  ~Rocks() {
    if (db == nullptr) return;
    if (write_failed)
      db->SetDBOptions({{"avoid_flush_during_shutdown", "true"}})
          .PermitUncheckedError();
    for (rocksdb::ColumnFamilyHandle* handle : handles)
      db->DestroyColumnFamilyHandle(handle);
    db->Close().PermitUncheckedError();
  }
};

class KvStore::ColumnId final : public rocksdb::ColumnFamilyHandle {
 public:
  ColumnId(std::string name, uint32_t id) : name_(std::move(name)), id_(id) {}
  const std::string& GetName() const override { return name_; }
  uint32_t GetID() const override { return id_; }
  rocksdb::Status GetDescriptor(rocksdb::ColumnFamilyDescriptor*) override {
    return rocksdb::Status::NotSupported("a column id has no descriptor");
  }
  const rocksdb::Comparator* GetComparator() const override {
    return rocksdb::BytewiseComparator();
  }

 private:
  std::string name_;
  uint32_t id_;
};

namespace {

// An iterator that holds the database it reads open.
class HeldIterator final : public rocksdb::Iterator {
 public:
  HeldIterator(std::shared_ptr<KvStore::Rocks> rocks,
               std::unique_ptr<rocksdb::Iterator> it)
      : rocks_(std::move(rocks)), it_(std::move(it)) {}
  bool Valid() const override { return it_->Valid(); }
  void SeekToFirst() override { it_->SeekToFirst(); }
  void SeekToLast() override { it_->SeekToLast(); }
  void Seek(const rocksdb::Slice& target) override { it_->Seek(target); }
  void SeekForPrev(const rocksdb::Slice& target) override {
    it_->SeekForPrev(target);
  }
  void Next() override { it_->Next(); }
  void Prev() override { it_->Prev(); }
  rocksdb::Slice key() const override { return it_->key(); }
  rocksdb::Slice value() const override { return it_->value(); }
  rocksdb::Status status() const override { return it_->status(); }

 private:
  std::shared_ptr<KvStore::Rocks> rocks_;  // outlives it_
  std::unique_ptr<rocksdb::Iterator> it_;
};

// Opens `rocks`; a database RocksDB finds damaged is opened again without
// paranoid checks, and `damage` says what was found.
rocksdb::Status OpenDamagedToo(const KvStoreOptions& options,
                               KvStore::Rocks& rocks, std::string& damage) {
  RocksSetup setup = MakeSetup(options);
  rocksdb::Status status = rocks.Open(setup, options.path);
  if (status.IsCorruption()) {
    // Without paranoid checks RocksDB opens what it can read and reports
    // damaged tables on the reads that reach them.
    damage =
        absl::StrCat("RocksDB found damage while opening: ", status.ToString());
    spdlog::error("{}; opening without paranoid checks, read-only", damage);
    setup.db.paranoid_checks = false;
    status = rocks.Open(setup, options.path);
  }
  return status;
}

}  // namespace

absl::StatusOr<std::unique_ptr<KvStore>> KvStore::Open(
    const KvStoreOptions& options) {
  auto rocks = std::make_shared<Rocks>();
  std::string damage;
  if (rocksdb::Status status = OpenDamagedToo(options, *rocks, damage);
      !status.ok())
    return FromRocks(status, absl::StrCat("open RocksDB at ", options.path));
  auto files = PayloadFiles::Open(
      std::filesystem::path(options.path) / "payloads", options.sync_commits);
  if (!files.ok()) return files.status();
  auto store = std::unique_ptr<KvStore>(
      new KvStore(options, std::move(rocks), std::move(*files)));
  if (!damage.empty()) store->MarkDamaged(std::move(damage));
  return store;
}

absl::Status KvStore::Repair(const KvStoreOptions& options) {
  RocksSetup setup = MakeSetup(options);
  return FromRocks(
      rocksdb::RepairDB(options.path, setup.db, setup.columns, setup.db),
      absl::StrCat("repair RocksDB at ", options.path));
}

KvStore::KvStore(KvStoreOptions options, std::shared_ptr<Rocks> rocks,
                 std::unique_ptr<PayloadFiles> payload_files)
    : options_(std::move(options)),
      rocks_(std::move(rocks)),
      payload_files_(std::move(payload_files)) {
  // Ids stay as they were created, across reopens.
  for (rocksdb::ColumnFamilyHandle* handle : rocks_->handles)
    column_ids_.push_back(
        std::make_unique<ColumnId>(handle->GetName(), handle->GetID()));
}

KvStore::~KvStore() {
  // Persist memtables so a restart does not replay the whole WAL (not on a
  // disk below its reserve: the WAL has them; not after a write error).
  if (!rocks_stopped_ && CheckFreeSpace(0).ok()) {
    if (auto rocks = CurrentRocks(); rocks.ok())
      (*rocks)
          ->db->Flush(rocksdb::FlushOptions(), (*rocks)->handles)
          .PermitUncheckedError();
  }
  absl::MutexLock lock(&rocks_mutex_);
  rocks_.reset();
}

rocksdb::ColumnFamilyHandle* KvStore::column(Column c) const {
  return column_ids_[static_cast<size_t>(c)].get();
}

absl::StatusOr<std::shared_ptr<KvStore::Rocks>> KvStore::CurrentRocks() const {
  absl::MutexLock lock(&rocks_mutex_);
  if (rocks_ == nullptr)
    return absl::UnavailableError(
        "the store is reopening its database after a write error; retry");
  return rocks_;
}

absl::Status KvStore::Reopen(absl::Duration wait) {
  absl::MutexLock lock(&write_mutex_);
  return ReopenLocked(wait);
}

absl::Status KvStore::ReopenLocked(absl::Duration wait) {
  std::shared_ptr<Rocks> old;
  {
    absl::MutexLock lock(&rocks_mutex_);
    old = std::move(rocks_);
  }
  if (old != nullptr) {
    const absl::Time deadline = absl::Now() + wait;
    while (old.use_count() > 1) {
      if (absl::Now() > deadline) {
        absl::MutexLock lock(&rocks_mutex_);
        rocks_ = std::move(old);
        return absl::UnavailableError(
            "reopening RocksDB: calls still hold the database");
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
    old.reset();
  }
  auto rocks = std::make_shared<Rocks>();
  std::string damage;
  if (rocksdb::Status status = OpenDamagedToo(options_, *rocks, damage);
      !status.ok())
    return FromRocks(status, absl::StrCat("reopen RocksDB at ", options_.path));
  if (!damage.empty()) MarkDamaged(std::move(damage));
  reopens_.fetch_add(1, std::memory_order_relaxed);
  absl::MutexLock lock(&rocks_mutex_);
  rocks_ = std::move(rocks);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> KvStore::Get(
    Column column, std::string_view key, bool verify_checksums) const {
  auto rocks = CurrentRocks();
  if (!rocks.ok()) return rocks.status();
  std::string value;
  rocksdb::ReadOptions read;
  read.verify_checksums = verify_checksums;
  rocksdb::Status status =
      (*rocks)->db->Get(read, (*rocks)->handle(column),
                        rocksdb::Slice(key.data(), key.size()), &value);
  if (status.IsNotFound()) return std::optional<std::string>();
  if (!status.ok()) return FromRocks(status, "read");
  return std::optional<std::string>(std::move(value));
}

absl::Status KvStore::Put(Column column, std::string_view key,
                          std::string_view value) {
  absl::MutexLock lock(&write_mutex_);
  if (auto status = CheckFreeSpace(key.size() + value.size()); !status.ok())
    return status;
  auto rocks = CurrentRocks();
  if (!rocks.ok()) return rocks.status();
  rocksdb::WriteOptions write;
  return NoteWrite(
      **rocks,
      (*rocks)->db->Put(write, (*rocks)->handle(column),
                        rocksdb::Slice(key.data(), key.size()),
                        rocksdb::Slice(value.data(), value.size())),
      "write");
}

void WriteBatch::Put(Column column, std::string_view key,
                     std::string_view value) {
  batch_.Put(store_->column(column), rocksdb::Slice(key.data(), key.size()),
             rocksdb::Slice(value.data(), value.size()));
}

void WriteBatch::Delete(Column column, std::string_view key) {
  batch_.Delete(store_->column(column), rocksdb::Slice(key.data(), key.size()));
}

void WriteBatch::Merge(Column column, std::string_view key,
                       std::string_view value) {
  batch_.Merge(store_->column(column), rocksdb::Slice(key.data(), key.size()),
               rocksdb::Slice(value.data(), value.size()));
}

absl::Status KvStore::Scan(
    Column column, std::string_view prefix,
    const std::function<bool(std::string_view key, std::string_view value)>&
        visit) const {
  auto it = NewIterator(column);
  const rocksdb::Slice start(prefix.data(), prefix.size());
  for (it->Seek(start); it->Valid() && it->key().starts_with(start);
       it->Next()) {
    if (!visit(std::string_view(it->key().data(), it->key().size()),
               std::string_view(it->value().data(), it->value().size())))
      break;
  }
  return FromRocks(it->status(), "scan");
}

absl::Status KvStore::Write(WriteBatch& batch, bool durable) {
  absl::MutexLock lock(&write_mutex_);
  if (auto status = batch.frees_space_
                        ? CheckWritesRunning()
                        : CheckFreeSpace(batch.batch_.GetDataSize());
      !status.ok())
    return status;
  auto rocks = CurrentRocks();
  if (!rocks.ok()) return rocks.status();
  rocksdb::WriteOptions write;
  write.sync = durable && options_.sync_commits;
  return NoteWrite(**rocks, (*rocks)->db->Write(write, &batch.batch_),
                   "commit");
}

absl::Status KvStore::NoteWrite(Rocks& rocks, const rocksdb::Status& status,
                                std::string_view what) {
  if (status.ok()) return absl::OkStatus();
  absl::Status error = FromRocks(status, what);
  // An I/O error stops RocksDB's writes (paranoid checks) until Heal
  // reopens it.
  if (status.IsIOError() || status.IsNoSpace()) {
    rocks.write_failed = true;
    rocks_stopped_ = true;
    writable_ = false;
    absl::MutexLock lock(&health_mutex_);
    write_refusal_ = std::string(error.message());
  }
  return error;
}

uint64_t KvStore::MemtableBytes() const {
  uint64_t bytes = 0;
  auto rocks = CurrentRocks();
  if (!rocks.ok()) return 0;
  (*rocks)->db->GetAggregatedIntProperty(
      rocksdb::DB::Properties::kCurSizeAllMemTables, &bytes);
  return bytes;
}

absl::Status KvStore::CheckFreeSpace(uint64_t bytes) const {
  if (auto status = CheckWritesRunning(); !status.ok()) return status;
  if (options_.reserved_disk_bytes == 0) {
    if (!writable_) {
      absl::MutexLock lock(&health_mutex_);
      writable_ = true;
      write_refusal_.clear();
    }
    return absl::OkStatus();
  }
  auto free_bytes = FreeBytes(options_.path);
  if (!free_bytes.ok()) return free_bytes.status();
  // Flushing the memtables writes their bytes once more before their logs
  // go: keep room for that too.
  const uint64_t required = options_.reserved_disk_bytes + MemtableBytes();
  absl::MutexLock lock(&health_mutex_);
  last_free_bytes_ = *free_bytes;
  last_required_bytes_ = required;
  // Once refused, writes resume only when the refused one would fit too:
  // else a small check would report the store writable between refusals.
  if (!writable_) bytes = std::max(bytes, refused_bytes_);
  if (*free_bytes >= required + bytes) {
    if (!writable_) {
      writable_ = true;
      refused_bytes_ = 0;
      write_refusal_.clear();
      spdlog::info("{} has {} bytes free again: writes resume", options_.path,
                   *free_bytes);
    }
    return absl::OkStatus();
  }
  std::string refusal = absl::StrCat(
      "the disk of ", options_.path, " has ", *free_bytes,
      " bytes free, less than the ", required,
      " it keeps free (the reserve and the memtables to flush) plus this "
      "write's ",
      bytes);
  if (writable_)
    spdlog::warn("{}: writes are refused until space comes back", refusal);
  writable_ = false;
  refused_bytes_ = bytes;
  write_refusal_ = refusal;
  return absl::ResourceExhaustedError(refusal);
}

absl::Status KvStore::CheckWritesRunning() const {
  if (rocks_stopped_) {
    absl::MutexLock lock(&health_mutex_);
    return absl::ResourceExhaustedError(absl::StrCat(
        "writes are stopped until the disk has room again: ", write_refusal_));
  }
  return CheckUndamaged();
}

absl::Status KvStore::CheckUndamaged() const {
  if (!damaged_) return absl::OkStatus();
  absl::MutexLock lock(&health_mutex_);
  return absl::FailedPreconditionError(
      absl::StrCat("the store is read-only: ", damage_,
                   "; stop the server and run seqkv-server --repair"));
}

void KvStore::MarkDamaged(std::string what) {
  spdlog::error("store damaged, serving read-only: {}", what);
  absl::MutexLock lock(&health_mutex_);
  if (!damage_.empty()) absl::StrAppend(&damage_, "; ");
  absl::StrAppend(&damage_, what);
  damaged_ = true;
}

std::string KvStore::damage() const {
  absl::MutexLock lock(&health_mutex_);
  return damage_;
}

void KvStore::Heal() {
  if (damaged_ || writable_) return;
  absl::MutexLock lock(&write_mutex_);
  auto free_bytes = FreeBytes(options_.path);
  if (!free_bytes.ok()) return;
  const uint64_t memtables = MemtableBytes();
  if (*free_bytes < options_.reserved_disk_bytes + memtables) {
    // Refused for the memtables' sake while their flush fits: flush them,
    // and their logs go.
    if (!rocks_stopped_ && memtables > 0 && *free_bytes > 2 * memtables) {
      rocksdb::FlushOptions flush;
      flush.wait = false;
      flush.allow_write_stall = true;
      if (auto rocks = CurrentRocks(); rocks.ok())
        (*rocks)->db->Flush(flush, (*rocks)->handles).PermitUncheckedError();
    }
    return;
  }
  if (rocks_stopped_) {
    // Reopening replays the WAL and flushes the memtables: only now is
    // there room for that.
    if (absl::Status reopened = ReopenLocked(absl::Seconds(5));
        !reopened.ok()) {
      spdlog::warn("reopening RocksDB after its write error failed: {}",
                   std::string(reopened.message()));
      return;
    }
    spdlog::warn("RocksDB reopened after its write error: writes resume");
    rocks_stopped_ = false;
  }
  CheckFreeSpace(0).IgnoreError();
}

StoreHealth KvStore::health() const {
  StoreHealth health;
  health.writable = writable_ && !rocks_stopped_ && !damaged_;
  absl::MutexLock lock(&health_mutex_);
  health.damage = damage_;
  if (!damage_.empty())
    health.write_refusal = absl::StrCat("read-only: ", damage_);
  else if (!health.writable)
    health.write_refusal = write_refusal_;
  health.free_bytes = last_free_bytes_;
  health.required_free_bytes = last_required_bytes_;
  return health;
}

std::unique_ptr<rocksdb::Iterator> KvStore::NewIterator(Column column) const {
  auto rocks = CurrentRocks();
  if (!rocks.ok())
    return std::unique_ptr<rocksdb::Iterator>(rocksdb::NewErrorIterator(
        rocksdb::Status::Busy(std::string(rocks.status().message()))));
  rocksdb::Iterator* it = (*rocks)->db->NewIterator(rocksdb::ReadOptions(),
                                                    (*rocks)->handle(column));
  return std::make_unique<HeldIterator>(*std::move(rocks),
                                        std::unique_ptr<rocksdb::Iterator>(it));
}

}  // namespace seqkv
