#include "storage/kv_store.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/table.h"

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
    uint64_t visits = 0, add_visits = 0;
    int64_t last = 0, add_last = 0;
    if (existing != nullptr)
      DecodeNodeStats(std::string_view(existing->data(), existing->size()),
                      visits, last);
    DecodeNodeStats(std::string_view(value.data(), value.size()), add_visits,
                    add_last);
    *new_value = EncodeNodeStats(visits + add_visits, std::max(last, add_last));
    return true;
  }
  const char* Name() const override { return "seqkv.NodeStatsMerge"; }
};

}  // namespace

std::string EncodeNodeStats(uint64_t visits, int64_t last_used_micros) {
  std::string out(16, '\0');
  std::memcpy(out.data(), &visits, 8);
  std::memcpy(out.data() + 8, &last_used_micros, 8);
  return out;
}

void DecodeNodeStats(std::string_view value, uint64_t& visits,
                     int64_t& last_used_micros) {
  visits = 0;
  last_used_micros = 0;
  if (value.size() != 16) return;
  std::memcpy(&visits, value.data(), 8);
  std::memcpy(&last_used_micros, value.data() + 8, 8);
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

absl::StatusOr<std::unique_ptr<KvStore>> KvStore::Open(
    const KvStoreOptions& options) {
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.paranoid_checks = true;
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

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors = {
      {kColumnNames[0], meta},          {kColumnNames[1], small_records},
      {kColumnNames[2], small_records}, {kColumnNames[3], payloads},
      {kColumnNames[4], node_stats},
  };
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw_db = nullptr;
  rocksdb::Status status = rocksdb::DB::Open(db_options, options.path,
                                             descriptors, &handles, &raw_db);
  if (!status.ok())
    return FromRocks(status, absl::StrCat("open RocksDB at ", options.path));
  std::unique_ptr<rocksdb::DB> db(raw_db);
  auto files = PayloadFiles::Open(
      std::filesystem::path(options.path) / "payloads", options.sync_commits);
  if (!files.ok()) {
    for (rocksdb::ColumnFamilyHandle* handle : handles)
      db->DestroyColumnFamilyHandle(handle);
    return files.status();
  }
  return std::unique_ptr<KvStore>(new KvStore(
      options, std::move(db), std::move(handles), std::move(*files)));
}

KvStore::KvStore(KvStoreOptions options, std::unique_ptr<rocksdb::DB> db,
                 std::vector<rocksdb::ColumnFamilyHandle*> handles,
                 std::unique_ptr<PayloadFiles> payload_files)
    : options_(std::move(options)),
      db_(std::move(db)),
      handles_(std::move(handles)),
      payload_files_(std::move(payload_files)) {}

KvStore::~KvStore() {
  // Persist memtables so a restart does not replay the whole WAL.
  rocksdb::FlushOptions flush;
  db_->Flush(flush, handles_);
  for (rocksdb::ColumnFamilyHandle* handle : handles_)
    db_->DestroyColumnFamilyHandle(handle);
  db_->Close();
}

rocksdb::ColumnFamilyHandle* KvStore::handle(Column column) const {
  return handles_[static_cast<size_t>(column)];
}

absl::StatusOr<std::optional<std::string>> KvStore::Get(
    Column column, std::string_view key, bool verify_checksums) const {
  std::string value;
  rocksdb::ReadOptions read;
  read.verify_checksums = verify_checksums;
  rocksdb::Status status = db_->Get(
      read, handle(column), rocksdb::Slice(key.data(), key.size()), &value);
  if (status.IsNotFound()) return std::optional<std::string>();
  if (!status.ok()) return FromRocks(status, "read");
  return std::optional<std::string>(std::move(value));
}

absl::Status KvStore::Put(Column column, std::string_view key,
                          std::string_view value) {
  rocksdb::WriteOptions write;
  return FromRocks(
      db_->Put(write, handle(column), rocksdb::Slice(key.data(), key.size()),
               rocksdb::Slice(value.data(), value.size())),
      "write");
}

void WriteBatch::Put(Column column, std::string_view key,
                     std::string_view value) {
  batch_.Put(store_->handle(column), rocksdb::Slice(key.data(), key.size()),
             rocksdb::Slice(value.data(), value.size()));
}

void WriteBatch::Delete(Column column, std::string_view key) {
  batch_.Delete(store_->handle(column), rocksdb::Slice(key.data(), key.size()));
}

void WriteBatch::Merge(Column column, std::string_view key,
                       std::string_view value) {
  batch_.Merge(store_->handle(column), rocksdb::Slice(key.data(), key.size()),
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
  rocksdb::WriteOptions write;
  write.sync = durable && options_.sync_commits;
  return FromRocks(db_->Write(write, &batch.batch_), "commit");
}

absl::Status KvStore::WriteUnlogged(WriteBatch& batch) {
  rocksdb::WriteOptions write;
  write.disableWAL = true;
  return FromRocks(db_->Write(write, &batch.batch_), "write counters");
}

std::unique_ptr<rocksdb::Iterator> KvStore::NewIterator(Column column) const {
  return std::unique_ptr<rocksdb::Iterator>(
      db_->NewIterator(rocksdb::ReadOptions(), handle(column)));
}

}  // namespace seqkv
