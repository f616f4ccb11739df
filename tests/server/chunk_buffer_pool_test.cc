#include "server/chunk_buffer_pool.h"

#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace seqkv {
namespace {

TEST(ChunkBufferPool, ReusesAReturnedBufferOfTheSameSize) {
  ChunkBufferPool pool(1 << 20);
  ChunkBuffer first = pool.Acquire(4096);
  ASSERT_TRUE(first);
  EXPECT_EQ(first.bytes().size(), 4096u);
  std::byte* memory = first.bytes().data();
  first.bytes()[4095] = std::byte{7};  // the whole span is writable
  first.reset();
  EXPECT_FALSE(first);
  EXPECT_EQ(pool.idle_bytes(), 4096u);

  ChunkBuffer other_size = pool.Acquire(8192);
  EXPECT_NE(other_size.bytes().data(), memory);
  EXPECT_EQ(pool.idle_bytes(), 4096u);
  ChunkBuffer again = pool.Acquire(4096);
  EXPECT_EQ(again.bytes().data(), memory);
  EXPECT_EQ(pool.idle_bytes(), 0u);
}

TEST(ChunkBufferPool, AStringLentAndGivenBackIsReused) {
  ChunkBufferPool pool(1 << 20);
  ChunkBuffer buffer = pool.Acquire(4096);
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
  EXPECT_EQ(static_cast<void*>(pool.Acquire(4096).bytes().data()), memory);
  // Empty buffers are not kept: there is nothing to reuse.
  pool.Acquire(0).reset();
  EXPECT_EQ(pool.idle_bytes(), 4096u);
}

TEST(ChunkBufferPool, KeepsNoMoreThanItsBudget) {
  ChunkBufferPool pool(3000);
  ChunkBuffer a = pool.Acquire(2000);
  ChunkBuffer b = pool.Acquire(2000);
  a.reset();
  b.reset();
  EXPECT_EQ(pool.idle_bytes(), 2000u);

  ChunkBufferPool none(0);
  none.Acquire(16).reset();
  EXPECT_EQ(none.idle_bytes(), 0u);
}

TEST(ChunkBufferPool, DropsOtherSizesToKeepTheSizeInDemand) {
  ChunkBufferPool pool(2048);
  ChunkBuffer small1 = pool.Acquire(1024);
  ChunkBuffer small2 = pool.Acquire(1024);
  ChunkBuffer large = pool.Acquire(2048);
  small1.reset();
  small2.reset();
  EXPECT_EQ(pool.idle_bytes(), 2048u);
  std::byte* memory = large.bytes().data();
  large.reset();
  EXPECT_EQ(pool.idle_bytes(), 2048u);
  EXPECT_EQ(pool.Acquire(2048).bytes().data(), memory);
}

TEST(ChunkBufferPool, ReleaseIdleFreesOnlyIdleBuffers) {
  ChunkBufferPool pool(1 << 20);
  ChunkBuffer in_use = pool.Acquire(512);
  pool.Acquire(1024).reset();
  pool.Acquire(2048).reset();
  EXPECT_EQ(pool.idle_bytes(), 3072u);
  pool.ReleaseIdle();
  EXPECT_EQ(pool.idle_bytes(), 0u);
  in_use.reset();
  EXPECT_EQ(pool.idle_bytes(), 512u);
}

TEST(ChunkBufferPool, MovesCarryOwnership) {
  ChunkBufferPool pool(1 << 20);
  ChunkBuffer a = pool.Acquire(100);
  std::byte* memory = a.bytes().data();
  ChunkBuffer b = std::move(a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(b.bytes().data(), memory);
  EXPECT_EQ(pool.idle_bytes(), 0u);
  ChunkBuffer c = pool.Acquire(200);
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
        ChunkBuffer buffer = pool.Acquire(1024 * (1 + (t + i) % 5));
        buffer.bytes().front() = std::byte{1};
        buffer.bytes().back() = std::byte{2};
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_GT(pool.idle_bytes(), 0u);
  EXPECT_LE(pool.idle_bytes(), kBudget);
}

}  // namespace
}  // namespace seqkv
