// CacheEngine's idle report (EngineOptions::on_idle), which the server uses
// to hand freed memory back to the kernel: once per idle period, after
// `idle_after` without a Put, Get or Delete, on a real RocksDB.
#include <atomic>
#include <chrono>
#include <thread>

#include "base/allocator.h"
#include "gtest/gtest.h"
#include "proto/layout_convert.h"
#include "server/cache_engine.h"
#include "tests/engine_wire.h"
#include "tests/scoped_temp_dir.h"

namespace seqkv {
namespace {

// Waits up to `limit` for `count` to reach `want`.
bool WaitFor(const std::atomic<int>& count, int want,
             std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (count.load() < want) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

TEST(EngineIdle, ReportsEachIdlePeriodOnce) {
  testing::ScopedTempDir dir;
  auto store = KvStore::Open({.path = dir.path().string()});
  ASSERT_TRUE(store.ok()) << store.status();
  std::atomic<int> reports = 0;
  EngineOptions options;
  options.idle_after = absl::Milliseconds(300);
  options.on_idle = [&reports] { ++reports; };
  CacheEngine engine(store->get(), options);
  ASSERT_TRUE(engine.Start().ok());

  // Idle from the start: one report, and no second while nothing happens.
  ASSERT_TRUE(WaitFor(reports, 1, std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_EQ(reports.load(), 1);

  // A Put ends the idle period; the next one is reported again.
  const KvLayout layout{1, 1, 4, DType::kFP32};
  v1::PutHeader header;
  header.set_model("m");
  *header.mutable_layout() = LayoutToProto(layout);
  header.add_tokens(1);
  header.set_codec("raw");
  auto session = testing::WireBeginPut(engine, "ns", header);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE(
      (*session)->Append(std::string(layout.bytes_per_token(), 'x')).ok());
  ASSERT_TRUE(testing::WireFinishPut(engine, **session).ok());
  session->reset();
  ASSERT_TRUE(WaitFor(reports, 2, std::chrono::seconds(10)));

  // So does a failed Get: it was still work.
  v1::GetRequest get;
  get.set_model("unknown");
  get.add_tokens(1);
  EXPECT_FALSE(testing::WireGet(
                   engine, {{"ns"}}, get, 1 << 20,
                   [](const v1::GetHeader&) { return true; },
                   [](std::string&) { return true; })
                   .ok());
  ASSERT_TRUE(WaitFor(reports, 3, std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(reports.load(), 3);
}

TEST(EngineIdle, ReleasingFreedMemorySucceeds) {
  // The allocator this test links is the server's (jemalloc).
  auto buffer = std::make_unique_for_overwrite<char[]>(size_t{64} << 20);
  buffer[0] = 1;
  buffer.reset();
  EXPECT_TRUE(ReleaseFreedMemory().ok());
}

}  // namespace
}  // namespace seqkv
