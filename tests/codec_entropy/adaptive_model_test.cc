#include "codec/entropy/adaptive_model.h"

#include <gtest/gtest.h>

#include <random>

namespace seqkv::entropy {
namespace {

TEST(AdaptiveModelTest, BitModelStaysStrictlyInsideZeroAndOne) {
  BasicBitModel<4> fast;
  BasicBitModel<12> slow;
  for (int i = 0; i < 100000; ++i) {
    fast.Update(1);
    slow.Update(1);
  }
  EXPECT_GE(fast.P0(), 1u);
  EXPECT_GE(slow.P0(), 1u);
  for (int i = 0; i < 100000; ++i) {
    fast.Update(0);
    slow.Update(0);
  }
  EXPECT_LT(fast.P0(), kProbOne);
  EXPECT_LT(slow.P0(), kProbOne);
}

TEST(AdaptiveModelTest, BitModelLearnsProbability) {
  BasicBitModel<8> model;
  std::mt19937_64 rng(1);
  std::bernoulli_distribution dist(0.1);
  for (int i = 0; i < 20000; ++i) model.Update(dist(rng));
  EXPECT_NEAR(model.P0() / double{kProbOne}, 0.9, 0.05);
}

TEST(AdaptiveModelTest, FrequencyLookupAndFindAgree) {
  std::mt19937_64 rng(2);
  for (uint32_t n : {1u, 2u, 3u, 100u, 257u, 1000u}) {
    AdaptiveFrequencyModel model(n, 17, 5000);
    for (int step = 0; step < 3000; ++step) {
      model.Update(rng() % 3 ? rng() % n : 0);
      // Cumulative counts tile [0, total) in symbol order.
      uint32_t expected_cum = 0;
      if (step % 97 != 0) continue;
      for (uint32_t s = 0; s < n; ++s) {
        uint32_t cum, freq;
        model.Lookup(s, cum, freq);
        ASSERT_EQ(cum, expected_cum);
        ASSERT_GE(freq, 1u);
        uint32_t found_cum, found_freq;
        ASSERT_EQ(model.Find(cum, found_cum, found_freq), s);
        ASSERT_EQ(model.Find(cum + freq - 1, found_cum, found_freq), s);
        ASSERT_EQ(found_cum, cum);
        ASSERT_EQ(found_freq, freq);
        expected_cum += freq;
      }
      ASSERT_EQ(expected_cum, model.total());
      ASSERT_LE(model.total(), 5000u);
    }
  }
}

TEST(AdaptiveModelTest, FrequencyModelClampsArguments) {
  AdaptiveFrequencyModel model(0, 0, 0);
  EXPECT_EQ(model.num_symbols(), 1u);
  AdaptiveFrequencyModel big(1 << 20);
  EXPECT_EQ(big.num_symbols(), AdaptiveFrequencyModel::kMaxSymbols);
  EXPECT_LE(big.total(), AdaptiveFrequencyModel::kMaxTotal);
}

}  // namespace
}  // namespace seqkv::entropy
