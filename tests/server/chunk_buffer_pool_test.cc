#include "server/chunk_buffer_pool.h"

#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace seqkv {
namespace {

TEST(ChunkBufferPool, ReusesAReturnedBufferOfTheSameSize) {
  ChunkBufferPool pool(1 << 20);
  ChunkBuffer first = pool.Acquire(4096).value();
  ASSERT_TRUE(first);
  EXPECT_EQ(first.bytes().size(), 4096u);
  std::byte* memory = first.bytes().data();
  first.bytes()[4095] = std::byte{7};  // the whole span is writable
  first.reset();
  EXPECT_FALSE(first);
  EXPECT_EQ(pool.idle_bytes(), 4096u);

  ChunkBuffer other_size = pool.Acquire(8192).value();
  EXPECT_NE(other_size.bytes().data(), memory);
  EXPECT_EQ(pool.idle_bytes(), 4096u);
  ChunkBuffer again = pool.Acquire(4096).value();
  EXPECT_EQ(again.bytes().data(), memory);
  EXPECT_EQ(pool.idle_bytes(), 0u);
}

TEST(ChunkBufferPool, AStringLentAndGivenBackIsReused) {
  ChunkBufferPool pool(1 << 20);
  ChunkBuffer buffer = pool.Acquire(4096).value();
  std::string& text = buffer.str();
  EXPECT_EQ(text.size(), 4096u);
  EXPECT_EQ(static_cast<void*>(text.data()),
            static_cast<void*>(buffer.bytes().data()));
  const void* memory = text.data();
  std::string message;  // as a message's bytes field borrows it
  message.swap(text);
  EXPECT_EQ(static_cast<const void*>(message.data()), memory);
  message.swap(text);
  buffer.reset();
  EXPECT_EQ(static_cast<void*>(pool.Acquire(4096).value().bytes().data()),
            memory);
  // Empty buffers are not kept: there is nothing to reuse.
  pool.Acquire(0).value().reset();
  EXPECT_EQ(pool.idle_bytes(), 4096u);
}

TEST(ChunkBufferPool, KeepsNoMoreThanItsBudget) {
  ChunkBufferPool pool(3000);
  ChunkBuffer a = pool.Acquire(2000).value();
  ChunkBuffer b = pool.Acquire(2000).value();
  a.reset();
  b.reset();
  EXPECT_EQ(pool.idle_bytes(), 2000u);

  ChunkBufferPool none(0);
  none.Acquire(16).value().reset();
  EXPECT_EQ(none.idle_bytes(), 0u);
}

TEST(ChunkBufferPool, DropsOtherSizesToKeepTheSizeInDemand) {
  ChunkBufferPool pool(2048);
  ChunkBuffer small1 = pool.Acquire(1024).value();
  ChunkBuffer small2 = pool.Acquire(1024).value();
  ChunkBuffer large = pool.Acquire(2048).value();
  small1.reset();
  small2.reset();
  EXPECT_EQ(pool.idle_bytes(), 2048u);
  std::byte* memory = large.bytes().data();
  large.reset();
  EXPECT_EQ(pool.idle_bytes(), 2048u);
  EXPECT_EQ(pool.Acquire(2048).value().bytes().data(), memory);
}

TEST(ChunkBufferPool, ReleaseIdleFreesOnlyIdleBuffers) {
  ChunkBufferPool pool(1 << 20);
  ChunkBuffer in_use = pool.Acquire(512).value();
  pool.Acquire(1024).value().reset();
  pool.Acquire(2048).value().reset();
  EXPECT_EQ(pool.idle_bytes(), 3072u);
  pool.ReleaseIdle();
  EXPECT_EQ(pool.idle_bytes(), 0u);
  in_use.reset();
  EXPECT_EQ(pool.idle_bytes(), 512u);
}

TEST(ChunkBufferPool, MovesCarryOwnership) {
  ChunkBufferPool pool(1 << 20);
  ChunkBuffer a = pool.Acquire(100).value();
  std::byte* memory = a.bytes().data();
  ChunkBuffer b = std::move(a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(b.bytes().data(), memory);
  EXPECT_EQ(pool.idle_bytes(), 0u);
  ChunkBuffer c = pool.Acquire(200).value();
  c = std::move(b);  // c's own buffer goes back to the pool
  EXPECT_EQ(pool.idle_bytes(), 200u);
  EXPECT_EQ(c.bytes().data(), memory);
  EXPECT_EQ(c.bytes().size(), 100u);
}

TEST(ChunkBufferPool, ManyThreadsStayWithinTheBudget) {
  constexpr size_t kBudget = 64 * 1024;
  ChunkBufferPool pool(kBudget);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&pool, t] {
      for (int i = 0; i < 2000; ++i) {
        ChunkBuffer buffer = pool.Acquire(1024 * (1 + (t + i) % 5)).value();
        buffer.bytes().front() = std::byte{1};
        buffer.bytes().back() = std::byte{2};
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_GT(pool.idle_bytes(), 0u);
  EXPECT_LE(pool.idle_bytes(), kBudget);
}

TEST(ChunkBufferPool, BuffersInUseAndIdleHoldTheMemoryBudget) {
  MemoryBudget budget({.limit_bytes = 10000, .max_wait = absl::ZeroDuration()});
  ChunkBufferPool pool(1 << 20, &budget);
  ChunkBuffer a = pool.Acquire(4000).value();
  EXPECT_EQ(budget.reserved_bytes(), 4000u);
  a.reset();  // idle in the pool, still held
  EXPECT_EQ(budget.reserved_bytes(), 4000u);
  // Reuses the idle buffer: nothing more is reserved.
  ChunkBuffer again = pool.Acquire(4000).value();
  EXPECT_EQ(budget.reserved_bytes(), 4000u);
  ChunkBuffer b = pool.Acquire(5000).value();
  EXPECT_EQ(budget.reserved_bytes(), 9000u);
  auto refused = pool.Acquire(2000, "a test chunk");
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("a test chunk"), std::string::npos);
  EXPECT_EQ(budget.refusals(), 1u);
  again.reset();
  b.reset();
  // Idle buffers of other sizes are freed to make room.
  ChunkBuffer large = pool.Acquire(9500).value();
  EXPECT_EQ(budget.reserved_bytes(), 9500u);
  EXPECT_EQ(pool.idle_bytes(), 0u);
}

TEST(ChunkBufferPool, AWaitingAcquireGetsMemoryAnotherReturns) {
  MemoryBudget budget({.limit_bytes = 4096, .max_wait = absl::Seconds(30)});
  ChunkBufferPool pool(0, &budget);
  ChunkBuffer held = pool.Acquire(4096).value();
  std::thread release([&held] {
    absl::SleepFor(absl::Milliseconds(50));
    held.reset();
  });
  auto waited = pool.Acquire(4096);
  release.join();
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(budget.reserved_bytes(), 4096u);
}

TEST(MemoryBudget, RefusesWhatCanNeverFitAtOnce) {
  MemoryBudget budget({.limit_bytes = 100, .max_wait = absl::Seconds(30)});
  const absl::Time start = absl::Now();
  auto reservation = budget.Reserve(101, "a huge chunk");
  EXPECT_EQ(reservation.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  auto fits = budget.Reserve(60, "a chunk");
  ASSERT_TRUE(fits.ok());
  EXPECT_EQ(budget.reserved_bytes(), 60u);
}

TEST(MemoryBudget, GrowsAndGivesBack) {
  MemoryBudget budget({.limit_bytes = 100, .max_wait = absl::ZeroDuration()});
  auto reservation = budget.Reserve(10, "state");
  ASSERT_TRUE(reservation.ok());
  ASSERT_TRUE(reservation->Grow(80, "state").ok());
  EXPECT_EQ(budget.reserved_bytes(), 90u);
  EXPECT_EQ(reservation->Grow(20, "state").code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(reservation->bytes(), 90u);
  MemoryReservation moved = *std::move(reservation);
  EXPECT_EQ(budget.reserved_bytes(), 90u);
  moved.reset();
  EXPECT_EQ(budget.reserved_bytes(), 0u);
  EXPECT_EQ(budget.peak_bytes(), 90u);
  EXPECT_FALSE(budget.TryReserve(101).has_value());
  EXPECT_TRUE(budget.TryReserve(100).has_value());
}

}  // namespace
}  // namespace seqkv
