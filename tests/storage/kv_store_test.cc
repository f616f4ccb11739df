// KvStore on a real RocksDB: what it promises about its own files.
#include "storage/kv_store.h"

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
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

}  // namespace
}  // namespace seqkv
