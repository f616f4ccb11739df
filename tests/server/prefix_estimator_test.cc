// The probabilistic trie's estimator: decayed counts in log form, reuse
// probabilities learned per class, and the retention rank.
#include "server/prefix_estimator.h"

#include <cmath>

#include "gtest/gtest.h"

namespace seqkv {
namespace {

TEST(PrefixEstimator, DecayedCountsAddInLogForm) {
  PrefixEstimator estimator({.half_life_lookups = 10});
  double count = estimator.AddAt(-INFINITY, 0);
  count = estimator.AddAt(count, 0);
  // Two events now: log2(2) at clock 0.
  EXPECT_NEAR(count, 1.0, 1e-12);
  // One half-life later both have halved: worth one event then.
  EXPECT_NEAR(count - estimator.UnitAt(10), 0.0, 1e-12);
  // Ratios do not depend on when they are taken.
  const double other = estimator.AddAt(-INFINITY, 10);
  EXPECT_NEAR(std::exp2(other - count), 1.0, 1e-12);
  // Far apart in time, no overflow.
  double late = estimator.AddAt(count, uint64_t{1} << 40);
  EXPECT_TRUE(std::isfinite(late));
}

TEST(PrefixEstimator, LearnsReuseProbabilitiesPerClass) {
  PrefixEstimator estimator;
  EXPECT_DOUBLE_EQ(estimator.ReuseProbability(false, 1), 0.5);  // no data
  // 100 chunks seen once, 25 of them seen again, 20 of those a third time.
  for (int i = 0; i < 100; ++i) estimator.CountOccurrence(false, 1);
  for (int i = 0; i < 25; ++i) estimator.CountOccurrence(false, 2);
  for (int i = 0; i < 20; ++i) estimator.CountOccurrence(false, 3);
  EXPECT_NEAR(estimator.ReuseProbability(false, 1), 26.0 / 102, 1e-12);
  EXPECT_NEAR(estimator.ReuseProbability(false, 2), 21.0 / 27, 1e-12);
  // Seen more often is never less likely: half of 100 chunks were seen
  // again (lately, say), none of those a third time yet.
  PrefixEstimator lately;
  for (int i = 0; i < 100; ++i) lately.CountOccurrence(false, 1);
  for (int i = 0; i < 50; ++i) lately.CountOccurrence(false, 2);
  EXPECT_NEAR(lately.ReuseProbability(false, 1), 51.0 / 102, 1e-12);
  EXPECT_NEAR(lately.ReuseProbability(false, 2), 51.0 / 102, 1e-12);
  // Trailing partial chunks are a class of their own.
  for (int i = 0; i < 50; ++i) estimator.CountOccurrence(true, 1);
  EXPECT_NEAR(estimator.ReuseProbability(true, 1), 1.0 / 52, 1e-12);
}

TEST(PrefixEstimator, RestoredCountsGiveTheSameProbabilities) {
  PrefixEstimator learned;
  for (uint32_t n = 0; n < 10; ++n) learned.CountOccurrence(false, 1);
  for (uint32_t n = 0; n < 3; ++n) learned.CountOccurrence(false, 2);
  learned.CountOccurrence(true, 1);
  PrefixEstimator restarted;
  EXPECT_EQ(restarted.ReuseProbability(false, 1), 0.5);
  restarted.RestoreReached(learned.reached());
  for (bool partial : {false, true})
    for (uint32_t k = 1; k < PrefixEstimator::kClasses; ++k)
      EXPECT_EQ(restarted.ReuseProbability(partial, k),
                learned.ReuseProbability(partial, k));
  EXPECT_DOUBLE_EQ(restarted.ReuseProbability(false, 1), 4.0 / 12);
}

TEST(PrefixEstimator, RanksByRecencyReuseAndBytes) {
  PrefixEstimator estimator;
  const ChunkFacts chunk{.tokens = 256, .bytes_stored = 1000};
  // Used one turnover later (as many chunks stored since as are held):
  // worth twice as much.
  EXPECT_NEAR(estimator.Rank(chunk, 2.0) - estimator.Rank(chunk, 1.0), 1.0,
              1e-12);
  ChunkFacts larger = chunk;
  larger.bytes_stored = 4000;
  EXPECT_NEAR(estimator.Rank(chunk, 0) - estimator.Rank(larger, 0), 2.0, 1e-12);
  // Of 10 chunks, 3 were seen twice, and all 3 a third time.
  for (int i = 0; i < 10; ++i) estimator.CountOccurrence(false, 1);
  for (int i = 0; i < 3; ++i) estimator.CountOccurrence(false, 2);
  for (int i = 0; i < 3; ++i) estimator.CountOccurrence(false, 3);
  ChunkFacts seen_twice = chunk;
  seen_twice.occurrences = 2;
  EXPECT_LT(estimator.Rank(chunk, 0), estimator.Rank(seen_twice, 0));
  // Depth counts only when asked to.
  PrefixEstimator by_depth({.attention_crossover_tokens = 1024});
  ChunkFacts deep = chunk;
  deep.first_position = 1024 * 8;
  EXPECT_DOUBLE_EQ(estimator.Rank(chunk, 0), estimator.Rank(deep, 0));
  EXPECT_GT(by_depth.Rank(deep, 0), by_depth.Rank(chunk, 0));
}

}  // namespace
}  // namespace seqkv
