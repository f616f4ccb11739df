// KvStore on a real RocksDB: what it promises about its own files.
#include "storage/kv_store.h"

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/estimator_record.h"
#include "tests/scoped_temp_dir.h"

namespace seqkv {
namespace {

uint64_t WalBytes(const std::filesystem::path& dir) {
  uint64_t total = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().extension() == ".log") total += entry.file_size();
  return total;
}

// Payloads that stay in RocksDB go through its write-ahead log, and the
// small column families beside them rarely fill a memtable, so each log
// stays alive until they do. Without the cap the logs would keep every
// payload written since the last restart. With it, the closed logs stay
// under the cap and the open one under a memtable or so.
TEST(KvStoreTest, WriteAheadLogStaysNearItsCap) {
  testing::ScopedTempDir dir;
  constexpr uint64_t kCap = 2 << 20;
  constexpr size_t kMemtable = 1 << 20;
  auto store = KvStore::Open({.path = dir.path().string(),
                              .sync_commits = false,
                              .max_total_wal_bytes = kCap,
                              .payload_memtable_bytes = kMemtable});
  ASSERT_TRUE(store.ok()) << store.status();
  const std::string payload(64 << 10, 'p');
  uint64_t written = 0;
  for (int i = 0; i < 400; ++i) {
    const std::string key = absl::StrCat("chunk-", i);
    ASSERT_TRUE((*store)->Put(Column::kPayloads, key, payload).ok());
    ASSERT_TRUE((*store)->Put(Column::kNodes, key, "record").ok());
    written += payload.size();
  }
  ASSERT_GT(written, 5 * (kCap + kMemtable));
  // Obsolete logs are deleted in the background after their flush.
  constexpr uint64_t kBound = kCap + 2 * kMemtable;
  uint64_t wal = WalBytes(dir.path());
  for (int i = 0; i < 200 && wal > kBound; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    wal = WalBytes(dir.path());
  }
  EXPECT_LE(wal, kBound) << "of " << written << " bytes written";

  // Nothing was lost on the way.
  for (int i = 0; i < 400; i += 57) {
    auto value = (*store)->Get(Column::kPayloads, absl::StrCat("chunk-", i));
    ASSERT_TRUE(value.ok()) << value.status();
    ASSERT_TRUE(value->has_value());
    EXPECT_EQ(**value, payload);
  }
}

// Reopening (what Heal does after a write error) waits for the iterators
// still reading the database, fails the calls made meanwhile with
// UNAVAILABLE, and keeps everything written, unlogged counters included
// only as RocksDB promises (not asserted here). Batches built before the
// reopen are written to the reopened database.
TEST(KvStoreTest, ReopenWaitsForReadersAndKeepsTheData) {
  testing::ScopedTempDir dir;
  auto store =
      KvStore::Open({.path = dir.path().string(), .sync_commits = false});
  ASSERT_TRUE(store.ok()) << store.status();
  KvStore& kv = **store;
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(kv.Put(Column::kNodes, absl::StrCat("node-", i), "r").ok());
  WriteBatch built_before(kv);
  built_before.Put(Column::kPayloads, "payload-late", "bytes");

  // An iterator holds the database: the reopen gives up and changes
  // nothing.
  auto it = kv.NewIterator(Column::kNodes);
  it->SeekToFirst();
  ASSERT_TRUE(it->Valid());
  absl::Status held = kv.Reopen(absl::Milliseconds(50));
  EXPECT_TRUE(absl::IsUnavailable(held)) << held;
  EXPECT_EQ(kv.reopens(), 0u);
  it->Next();
  EXPECT_TRUE(it->Valid());

  // Released while the reopen waits: calls made meanwhile are refused,
  // and the reopen then goes through.
  std::thread reopen([&] { held = kv.Reopen(absl::Seconds(10)); });
  absl::Status meanwhile;
  for (int i = 0; i < 1000 && meanwhile.ok(); ++i) {
    meanwhile = kv.Get(Column::kNodes, "node-3").status();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(absl::IsUnavailable(meanwhile)) << meanwhile;
  it.reset();
  reopen.join();
  ASSERT_TRUE(held.ok()) << held;
  EXPECT_EQ(kv.reopens(), 1u);

  ASSERT_TRUE(kv.Write(built_before, /*durable=*/true).ok());
  for (int i = 0; i < 20; ++i) {
    auto value = kv.Get(Column::kNodes, absl::StrCat("node-", i));
    ASSERT_TRUE(value.ok()) << value.status();
    EXPECT_EQ(value->value_or(""), "r");
  }
  auto late = kv.Get(Column::kPayloads, "payload-late");
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_EQ(late->value_or(""), "bytes");
  EXPECT_TRUE(kv.health().writable);
}

// What the node index learned comes back as saved; a store without it says
// so; a record that does not parse is DATA_LOSS, not zeros.
TEST(EstimatorRecordTest, SavedRecordComesBackAndDamageIsDataLoss) {
  testing::ScopedTempDir dir;
  auto store =
      KvStore::Open({.path = dir.path().string(), .sync_commits = false});
  ASSERT_TRUE(store.ok()) << store.status();
  KvStore& kv = **store;
  auto none = LoadEstimatorRecord(kv);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());

  EstimatorRecord saved;
  for (uint64_t n : {0, 16, 4, 4}) saved.add_reached_whole(n);
  saved.add_reached_partial(0);
  saved.add_reached_partial(3);
  auto& clock = (*saved.mutable_lookup_clocks())["ns"];
  clock.set_lookups(7);
  clock.set_log_lookups(2.5);
  WriteBatch batch(kv);
  StageEstimatorRecord(saved, batch);
  ASSERT_TRUE(kv.Write(batch, /*durable=*/false).ok());
  auto loaded = LoadEstimatorRecord(kv);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->SerializeAsString(), saved.SerializeAsString());

  ASSERT_TRUE(kv.Put(Column::kMeta, "estimator", "\xff\xff\xff").ok());
  EXPECT_EQ(LoadEstimatorRecord(kv).status().code(),
            absl::StatusCode::kDataLoss);
}

// Node stats: visits add, the last use and the decayed lookup count take
// the larger; values written before the decayed count read as none.
TEST(NodeStatsTest, MergeAddsVisitsAndKeepsTheLargerCount) {
  testing::ScopedTempDir dir;
  auto store =
      KvStore::Open({.path = dir.path().string(), .sync_commits = false});
  ASSERT_TRUE(store.ok()) << store.status();
  KvStore& kv = **store;
  for (const NodeStats& stats :
       {NodeStats{2, 100, 3.5}, NodeStats{1, 50, 4.25}, NodeStats{0, 70}}) {
    WriteBatch batch(kv);
    batch.Merge(Column::kNodeStats, "node", EncodeNodeStats(stats));
    ASSERT_TRUE(kv.Write(batch, /*durable=*/false).ok());
  }
  auto value = kv.Get(Column::kNodeStats, "node");
  ASSERT_TRUE(value.ok() && value->has_value());
  const NodeStats merged = DecodeNodeStats(**value);
  EXPECT_EQ(merged.visits, 3u);
  EXPECT_EQ(merged.last_used_micros, 100);
  EXPECT_EQ(merged.log_lookup_visits, 4.25);
  std::string old_format(16, '\0');
  old_format[0] = 5;
  const NodeStats old = DecodeNodeStats(old_format);
  EXPECT_EQ(old.visits, 5u);
  EXPECT_EQ(old.log_lookup_visits, kNoLookupVisits);
  EXPECT_EQ(DecodeNodeStats("short").visits, 0u);
}

}  // namespace
}  // namespace seqkv
