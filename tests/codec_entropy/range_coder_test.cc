#include "codec/entropy/range_coder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "codec/entropy/adaptive_model.h"

namespace seqkv::entropy {
namespace {

double BinaryEntropy(double p) {
  if (p <= 0 || p >= 1) return 0;
  return -p * std::log2(p) - (1 - p) * std::log2(1 - p);
}

TEST(RangeCoderTest, EmptyStreamRoundTrips) {
  std::string out;
  RangeEncoder encoder(out);
  encoder.Finish();
  EXPECT_EQ(out.size(), kRangeCoderFlushBytes);
  RangeDecoder decoder(out);
  EXPECT_TRUE(decoder.ok());
  EXPECT_TRUE(decoder.Finish().ok());
}

TEST(RangeCoderTest, AppendsAfterExistingBytes) {
  std::string out = "header";
  RangeEncoder encoder(out);
  BitModel model;
  encoder.EncodeBit(model, 1);
  encoder.Finish();
  ASSERT_EQ(out.substr(0, 6), "header");
  RangeDecoder decoder(std::string_view(out).substr(6));
  BitModel model2;
  EXPECT_EQ(decoder.DecodeBit(model2), 1u);
  EXPECT_TRUE(decoder.Finish().ok());
}

TEST(RangeCoderTest, SkewedBitsRoundTripNearEntropy) {
  for (double p1 : {0.5, 0.2, 0.05, 0.005}) {
    std::mt19937_64 rng(42);
    std::bernoulli_distribution dist(p1);
    constexpr int kCount = 200000;
    std::vector<int> bits(kCount);
    for (int& bit : bits) bit = dist(rng);
    std::string out;
    {
      RangeEncoder encoder(out);
      BasicBitModel<7> model;
      for (int bit : bits) encoder.EncodeBit(model, bit);
      encoder.Finish();
    }
    RangeDecoder decoder(out);
    BasicBitModel<7> model;
    for (int i = 0; i < kCount; ++i)
      ASSERT_EQ(decoder.DecodeBit(model), static_cast<uint32_t>(bits[i]))
          << "p1=" << p1 << " i=" << i;
    EXPECT_TRUE(decoder.Finish().ok());
    const double ideal = kCount * BinaryEntropy(p1) / 8;
    // An adaptive model pays a few percent over the entropy, never 2x.
    EXPECT_LT(out.size(), ideal * 1.08 + 64) << "p1=" << p1;
  }
}

TEST(RangeCoderTest, DualRateModelAdaptsToChangingStatistics) {
  std::mt19937_64 rng(7);
  std::vector<int> bits;
  for (int phase = 0; phase < 20; ++phase) {
    std::bernoulli_distribution dist(phase % 2 ? 0.02 : 0.98);
    for (int i = 0; i < 2000; ++i) bits.push_back(dist(rng));
  }
  std::string out;
  {
    RangeEncoder encoder(out);
    DualRateBitModel<> model;
    for (int bit : bits) encoder.EncodeBit(model, bit);
    encoder.Finish();
  }
  RangeDecoder decoder(out);
  DualRateBitModel<> model;
  for (int bit : bits)
    ASSERT_EQ(decoder.DecodeBit(model), static_cast<uint32_t>(bit));
  EXPECT_TRUE(decoder.Finish().ok());
  // Entropy is 0.14 bit per bit; a model that did not adapt would pay 1.
  EXPECT_LT(out.size() * 8.0 / bits.size(), 0.25);
}

TEST(RangeCoderTest, RawBitsOfEveryWidthRoundTrip) {
  std::mt19937_64 rng(1);
  std::vector<std::pair<uint32_t, int>> values;
  for (int i = 0; i < 20000; ++i) {
    const int width = static_cast<int>(rng() % 33);
    const uint32_t value =
        width == 0 ? 0 : static_cast<uint32_t>(rng()) >> (32 - width);
    values.push_back({value, width});
  }
  std::string out;
  size_t total_bits = 0;
  {
    RangeEncoder encoder(out);
    for (auto [value, width] : values) {
      encoder.EncodeBits(value, width);
      total_bits += width;
    }
    encoder.Finish();
  }
  RangeDecoder decoder(out);
  for (auto [value, width] : values)
    ASSERT_EQ(decoder.DecodeBits(width), value) << "width " << width;
  EXPECT_TRUE(decoder.Finish().ok());
  EXPECT_LT(out.size(), total_bits / 8 * 1.01 + 16);
}

TEST(RangeCoderTest, FrequencyModelOnZipfRoundTripsNearEntropy) {
  for (uint32_t num_symbols : {2u, 17u, 257u, 4096u}) {
    std::vector<double> weights(num_symbols);
    double sum = 0;
    for (uint32_t s = 0; s < num_symbols; ++s)
      sum += weights[s] = 1.0 / std::pow(s + 1, 1.3);
    std::discrete_distribution<uint32_t> dist(weights.begin(), weights.end());
    std::mt19937_64 rng(num_symbols);
    constexpr int kCount = 100000;
    std::vector<uint32_t> symbols(kCount);
    // Permute symbol identities so the frequent ones are not all at the start.
    for (uint32_t& s : symbols) s = (dist(rng) * 2654435761u) % num_symbols;
    double entropy = 0;
    for (double w : weights) entropy -= w / sum * std::log2(w / sum);

    std::string out;
    {
      RangeEncoder encoder(out);
      AdaptiveFrequencyModel model(num_symbols);
      for (uint32_t s : symbols) encoder.EncodeSymbol(model, s);
      encoder.Finish();
    }
    RangeDecoder decoder(out);
    AdaptiveFrequencyModel model(num_symbols);
    for (int i = 0; i < kCount; ++i)
      ASSERT_EQ(decoder.DecodeSymbol(model), symbols[i])
          << num_symbols << " symbols, i=" << i;
    EXPECT_TRUE(decoder.Finish().ok());
    // Learning 4096 frequencies costs more than learning 17.
    const double slack = num_symbols > 1000 ? 1.15 : 1.05;
    EXPECT_LT(out.size(), kCount * entropy / 8 * slack + 64)
        << num_symbols << " symbols";
  }
}

TEST(RangeCoderTest, FrequencyModelRescalesWithoutLosingSymbols) {
  // A tiny max_total forces a rescale every few symbols.
  std::mt19937_64 rng(3);
  std::vector<uint32_t> symbols(50000);
  for (uint32_t& s : symbols) s = rng() % 5 == 0 ? rng() % 40 : 3;
  std::string out;
  {
    RangeEncoder encoder(out);
    AdaptiveFrequencyModel model(40, 32, 128);
    for (uint32_t s : symbols) encoder.EncodeSymbol(model, s);
    encoder.Finish();
  }
  RangeDecoder decoder(out);
  AdaptiveFrequencyModel model(40, 32, 128);
  for (uint32_t s : symbols) ASSERT_EQ(decoder.DecodeSymbol(model), s);
  EXPECT_TRUE(decoder.Finish().ok());
}

TEST(RangeCoderTest, CallerFrequencyTablesRoundTrip) {
  // A static table with a total that is not a power of two.
  const std::vector<uint32_t> freq = {1, 100, 7, 60000, 3};
  std::vector<uint32_t> cum = {0};
  for (uint32_t f : freq) cum.push_back(cum.back() + f);
  std::mt19937_64 rng(5);
  std::vector<uint32_t> symbols(30000);
  for (uint32_t& s : symbols) s = rng() % freq.size();
  std::string out;
  {
    RangeEncoder encoder(out);
    for (uint32_t s : symbols) encoder.EncodeFreq(cum[s], freq[s], cum.back());
    encoder.Finish();
  }
  RangeDecoder decoder(out);
  for (uint32_t s : symbols) {
    const uint32_t target = decoder.DecodeFreqTarget(cum.back());
    uint32_t got = 0;
    while (cum[got + 1] <= target) ++got;
    ASSERT_EQ(got, s);
    decoder.DecodeFreqConsume(cum[got], freq[got]);
  }
  EXPECT_TRUE(decoder.Finish().ok());
}

TEST(RangeCoderTest, BitTreeAndMixedCallsRoundTrip) {
  std::mt19937_64 rng(9);
  struct Step {
    int kind;
    uint32_t value;
  };
  std::vector<Step> steps(60000);
  for (Step& step : steps) {
    step.kind = rng() % 4;
    step.value = step.kind == 0   ? (rng() % 8 == 0)
                 : step.kind == 1 ? rng() % 64 / 8  // skewed to small values
                 : step.kind == 2 ? rng() % 300
                                  : static_cast<uint32_t>(rng() & 0x1FFF);
  }
  auto run = [&]<bool kEncode>(auto& coder) {
    BitModel bit;
    BitTreeModel<6, DualRateBitModel<>> tree;
    AdaptiveFrequencyModel freq(300);
    for (Step& step : steps) {
      if constexpr (kEncode) {
        if (step.kind == 0) coder.EncodeBit(bit, step.value);
        if (step.kind == 1) coder.EncodeTree(tree, step.value);
        if (step.kind == 2) coder.EncodeSymbol(freq, step.value);
        if (step.kind == 3) coder.EncodeBits(step.value, 13);
      } else {
        uint32_t got = step.kind == 0   ? coder.DecodeBit(bit)
                       : step.kind == 1 ? coder.DecodeTree(tree)
                       : step.kind == 2 ? coder.DecodeSymbol(freq)
                                        : coder.DecodeBits(13);
        ASSERT_EQ(got, step.value);
      }
    }
  };
  std::string out;
  {
    RangeEncoder encoder(out);
    run.operator()<true>(encoder);
    encoder.Finish();
  }
  RangeDecoder decoder(out);
  run.operator()<false>(decoder);
  EXPECT_TRUE(decoder.Finish().ok());
}

// Encodes a fixed mixed stream; used by the corruption tests.
std::string EncodeSample(std::vector<uint32_t>& symbols) {
  std::mt19937_64 rng(11);
  symbols.resize(5000);
  for (uint32_t& s : symbols) s = rng() % 3 == 0 ? rng() % 200 : rng() % 4;
  std::string out;
  RangeEncoder encoder(out);
  AdaptiveFrequencyModel model(200);
  for (uint32_t s : symbols) encoder.EncodeSymbol(model, s);
  encoder.Finish();
  return out;
}

absl::Status DecodeSample(std::string_view in, size_t count) {
  RangeDecoder decoder(in);
  AdaptiveFrequencyModel model(200);
  for (size_t i = 0; i < count; ++i) {
    const uint32_t s = decoder.DecodeSymbol(model);
    if (s >= 200) return absl::InternalError("symbol out of range");
  }
  return decoder.Finish();
}

TEST(RangeCoderTest, EveryTruncationIsDataLoss) {
  std::vector<uint32_t> symbols;
  const std::string out = EncodeSample(symbols);
  ASSERT_TRUE(DecodeSample(out, symbols.size()).ok());
  for (size_t length = 0; length < out.size(); ++length) {
    const absl::Status status =
        DecodeSample(std::string_view(out).substr(0, length), symbols.size());
    ASSERT_EQ(status.code(), absl::StatusCode::kDataLoss) << length;
  }
}

TEST(RangeCoderTest, TrailingBytesAreDataLoss) {
  std::vector<uint32_t> symbols;
  const std::string out = EncodeSample(symbols) + std::string(1, '\0');
  EXPECT_EQ(DecodeSample(out, symbols.size()).code(),
            absl::StatusCode::kDataLoss);
}

TEST(RangeCoderTest, NonZeroFirstByteIsDataLoss) {
  std::vector<uint32_t> symbols;
  std::string out = EncodeSample(symbols);
  out[0] = 1;
  EXPECT_EQ(DecodeSample(out, symbols.size()).code(),
            absl::StatusCode::kDataLoss);
}

TEST(RangeCoderTest, GarbageNeverCrashesAndStaysInRange) {
  std::mt19937_64 rng(13);
  for (int trial = 0; trial < 300; ++trial) {
    std::string garbage(rng() % 64, '\0');
    for (char& c : garbage) c = static_cast<char>(rng());
    RangeDecoder decoder(garbage);
    BitModel bit;
    AdaptiveFrequencyModel freq(37);
    for (int i = 0; i < 200; ++i) {
      EXPECT_LT(decoder.DecodeBit(bit), 2u);
      EXPECT_LT(decoder.DecodeSymbol(freq), 37u);
      EXPECT_LT(decoder.DecodeBits(5), 32u);
    }
    // 200 symbols cannot fit in < 64 random bytes of a valid stream.
    EXPECT_FALSE(decoder.Finish().ok());
  }
}

}  // namespace
}  // namespace seqkv::entropy
