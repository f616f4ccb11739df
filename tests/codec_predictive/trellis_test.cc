#include "codec/predictive/trellis.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "codec/predictive/rans.h"
#include "codec/predictive/rans_vector.h"
#include "codec/predictive/residual_coder.h"

namespace seqkv::predictive {
namespace {

// The cost of coding `values` with `indices` along the trellis from state 0:
// infinite when an index is not one the state's quantizer has (every
// integer is, so only the levels differ), else the squared error.
double PathError(const std::vector<float>& values,
                 const std::vector<int32_t>& indices) {
  int state = 0;
  double error = 0;
  for (size_t t = 0; t < values.size(); ++t) {
    const double e =
        values[t] - TrellisLevel(TrellisQuantizer(state), indices[t]);
    error += e * e;
    state = TrellisNext(state, indices[t]);
  }
  return error;
}

std::vector<float> NormalValues(uint32_t seed, float sigma, size_t n) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> values(n);
  for (float& v : values) v = normal(rng);
  return values;
}

void Trace(const TrellisSearch& search, int32_t* index, uint8_t* quantizer) {
  TrellisSearcher searcher;
  searcher.Forward(search);
  searcher.Backtrack(index, quantizer);
}

TEST(TrellisTest, TransitionsAndLevels) {
  // 0 -> {0, 2}, 1 -> {2, 0}, 2 -> {1, 3}, 3 -> {3, 1} by parity.
  const int next[4][2] = {{0, 2}, {2, 0}, {1, 3}, {3, 1}};
  for (int s = 0; s < 4; ++s)
    for (int32_t k = -5; k <= 5; ++k)
      EXPECT_EQ(TrellisNext(s, k), next[s][k & 1]) << s << " " << k;
  // Q0: even multiples; Q1: zero and odd multiples.
  EXPECT_EQ(TrellisLevel(0, 3), 6);
  EXPECT_EQ(TrellisLevel(0, -2), -4);
  EXPECT_EQ(TrellisLevel(1, 0), 0);
  EXPECT_EQ(TrellisLevel(1, 1), 1);
  EXPECT_EQ(TrellisLevel(1, -3), -5);
}

// Without a rate model the search finds the path of least squared error:
// checked against every path of indices in [-4, 4] on short sequences.
TEST(TrellisTest, FindsTheLeastErrorPath) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 2.5f);
  constexpr uint32_t kTokens = 6;
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> values(kTokens);
    for (float& v : values) v = normal(rng);
    std::vector<int32_t> index(kTokens);
    std::vector<uint8_t> quantizer(kTokens);
    TrellisSearch search;
    search.num_tokens = kTokens;
    search.width = 1;
    search.values = values.data();
    Trace(search, index.data(), quantizer.data());
    // The quantizers reported are the ones the path's states use.
    int state = 0;
    for (uint32_t t = 0; t < kTokens; ++t) {
      EXPECT_EQ(quantizer[t], TrellisQuantizer(state));
      state = TrellisNext(state, index[t]);
    }
    double best = std::numeric_limits<double>::infinity();
    std::vector<int32_t> path(kTokens);
    for (int code = 0; code < 531441; ++code) {  // 9^6
      int rest = code;
      for (uint32_t t = 0; t < kTokens; ++t, rest /= 9) path[t] = rest % 9 - 4;
      best = std::min(best, PathError(values, path));
    }
    EXPECT_NEAR(PathError(values, index), best, 1e-4) << trial;
    // Forward's estimate is the error of the path Backtrack traces.
    TrellisSearcher searcher;
    EXPECT_NEAR(searcher.Forward(search), best, 1e-3) << trial;
  }
}

// Several channels are searched at once, each on its own trellis.
TEST(TrellisTest, ChannelsAreIndependent) {
  constexpr uint32_t kTokens = 64, kWidth = 16;
  const std::vector<float> values = NormalValues(11, 3.0f, kTokens * kWidth);
  const TrellisSearch search{kTokens, kWidth, values.data()};
  std::vector<int32_t> index(values.size());
  std::vector<uint8_t> quantizer(values.size());
  Trace(search, index.data(), quantizer.data());
  for (uint32_t d = 0; d < kWidth; ++d) {
    std::vector<float> column(kTokens);
    for (uint32_t t = 0; t < kTokens; ++t) column[t] = values[t * kWidth + d];
    std::vector<int32_t> alone(kTokens);
    std::vector<uint8_t> q(kTokens);
    TrellisSearch one = search;
    one.width = 1;
    one.values = column.data();
    Trace(one, alone.data(), q.data());
    for (uint32_t t = 0; t < kTokens; ++t)
      EXPECT_EQ(alone[t], index[t * kWidth + d]) << d << " " << t;
  }
}

// At the same step the trellis's error is below a uniform quantizer's with
// a step twice as large (the spacing of each of its two quantizers), and
// its levels are as dense as those of a uniform quantizer of the same step.
TEST(TrellisTest, ErrorBetweenTheTwoUniformQuantizers) {
  constexpr uint32_t kTokens = 256, kWidth = 8;
  const std::vector<float> values = NormalValues(5, 8.0f, kTokens * kWidth);
  const TrellisSearch search{kTokens, kWidth, values.data()};
  std::vector<int32_t> index(values.size());
  std::vector<uint8_t> quantizer(values.size());
  Trace(search, index.data(), quantizer.data());
  double trellis = 0, fine = 0, coarse = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    const double e = values[i] - TrellisLevel(quantizer[i], index[i]);
    trellis += e * e;
    const double f = values[i] - std::nearbyint(values[i]);
    fine += f * f;
    const double c = values[i] - 2 * std::nearbyint(values[i] / 2);
    coarse += c * c;
  }
  EXPECT_LT(trellis, 0.8 * coarse);
  EXPECT_GT(trellis, fine);
}

// Channels with offsets and spreads of their own, as pre-RoPE keys have.
std::vector<float> MakeGroup(const GroupShape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(shape.num_elements());
  const uint32_t width = shape.head_dim;
  for (size_t i = 0; i < values.size(); ++i) {
    const uint32_t d = static_cast<uint32_t>(i % width);
    values[i] = 0.3f * static_cast<float>(d % 7) +
                (0.2f + 0.05f * static_cast<float>(d % 5)) * normal(rng);
  }
  return values;
}

// Decodes a group coded alone (its symbols the whole stream); returns its
// squared error, or -1 when decoding fails.
double DecodeError(const GroupShape& shape, std::string_view header,
                   const std::string& stream,
                   const std::vector<float>& residual) {
  ResidualDecoder decoder;
  if (!decoder.Open(shape, header).ok()) return -1;
  RansDecoder rans(std::as_bytes(std::span(stream)));
  std::vector<float> row(shape.head_dim);
  double error = 0;
  for (size_t r = 0; r < size_t{shape.num_heads} * shape.num_tokens; ++r) {
    if (!decoder.NextRow(rans, row.data())) return -1;
    for (uint32_t d = 0; d < shape.head_dim; ++d) {
      const double e = residual[r * shape.head_dim + d] - row[d];
      error += e * e;
    }
  }
  if (!decoder.Finish().ok() || !rans.FinishedCleanly()) return -1;
  return error;
}

// A group of many tokens is coded in mode 2: smaller than the uniform
// quantizer's coding, within the same budget, decoded to the same values by
// every kernel, and a damaged header is refused.
TEST(TrellisGroupTest, CodesDecodesAndRefusesDamage) {
  const GroupShape shape{2, 256, 64};
  const std::vector<float> residual = MakeGroup(shape, 3);
  double energy = 0;
  for (float v : residual) energy += double{v} * v;
  const double budget = 0.002 * energy;
  std::string sizes[2];
  for (const bool trellis : {false, true}) {
    std::string header, stream;
    GroupSymbols symbols;
    const double error =
        EncodeResidual(shape, residual, budget, trellis, header, symbols);
    EXPECT_EQ(header[0], trellis ? 2 : 0);
    EXPECT_LE(error, budget);
    EXPECT_GE(error, 0.9 * budget);
    EncodeSymbolStream({&symbols, 1}, stream);
    sizes[trellis] = header + stream;
    for (VectorKernel kernel : {VectorKernel::kAvx512, VectorKernel::kAvx2,
                                VectorKernel::kPortable}) {
      LimitVectorKernel(kernel);
      const double decoded = DecodeError(shape, header, stream, residual);
      LimitVectorKernel(VectorKernel::kAvx512);
      EXPECT_NEAR(decoded, error, 1e-5 * budget) << trellis;
    }
    if (!trellis) continue;
    for (size_t cut = 0; cut < header.size(); ++cut) {
      ResidualDecoder decoder;
      EXPECT_EQ(decoder.Open(shape, header.substr(0, cut)).code(),
                absl::StatusCode::kDataLoss)
          << cut;
    }
  }
  EXPECT_LT(sizes[1].size(), sizes[0].size() * 0.97);
}

}  // namespace
}  // namespace seqkv::predictive
