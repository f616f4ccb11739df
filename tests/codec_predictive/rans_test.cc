// The predictive codec's rANS coder on its own: round trips, the vector
// kernel against the portable loop, and the reciprocal division.
#include "codec/predictive/rans.h"

#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "codec/predictive/rans_vector.h"

namespace seqkv::predictive {
namespace {

constexpr uint8_t kEscape = 255;

// A stream of rows of `width` symbols, channel d of a row drawing from table
// d % tables (geometric-ish spreads, so rows mix cheap and costly symbols).
struct Stream {
  uint32_t width = 0;
  uint32_t rows = 0;
  std::vector<std::array<uint16_t, kAlphabetSize>> freqs;
  std::vector<uint32_t> table_of;  // per channel: start in entries
  std::vector<uint32_t> entries;
  std::vector<uint8_t> symbols;
  std::string bytes;
};

Stream MakeStream(uint32_t width, uint32_t rows, int tables, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Stream s;
  s.width = width;
  s.rows = rows;
  std::vector<std::discrete_distribution<int>> draws;
  for (int k = 0; k < tables; ++k) {
    std::array<uint32_t, kAlphabetSize> counts{};
    const double spread = 0.3 + 8.0 * k;
    for (int v = 0; v < kAlphabetSize; ++v)
      counts[v] = static_cast<uint32_t>(
          1000 * std::exp(-std::abs(v - 127) / spread) + (rng() % 3 == 0));
    s.freqs.emplace_back();
    NormalizeFrequencies(counts, s.freqs.back());
    draws.emplace_back(s.freqs.back().begin(), s.freqs.back().end());
  }
  s.entries.resize(size_t{kProbScale} * tables);
  for (int k = 0; k < tables; ++k)
    EXPECT_TRUE(BuildDecodeTable(s.freqs[k], &s.entries[kProbScale * k]));
  for (uint32_t d = 0; d < width; ++d)
    s.table_of.push_back(kProbScale * (d % tables));
  s.symbols.resize(size_t{width} * rows);
  for (size_t i = 0; i < s.symbols.size(); ++i)
    s.symbols[i] = static_cast<uint8_t>(draws[i % width % tables](rng));

  std::vector<EncodeTable> encode(tables);
  for (int k = 0; k < tables; ++k) BuildEncodeTable(s.freqs[k], encode[k]);
  RansEncoder encoder(s.symbols.size());
  for (size_t i = s.symbols.size(); i-- > 0;)
    encoder.Put(i, encode[i % width % tables][s.symbols[i]]);
  encoder.Finish(s.bytes);
  return s;
}

std::span<const std::byte> Bytes(const std::string& s) {
  return std::as_bytes(std::span(s));
}

TEST(RansTest, PortableLoopRoundTrips) {
  for (uint32_t width : {1u, 7u, 64u, 96u, 128u}) {
    const Stream s = MakeStream(width, 37, 3, width);
    RansDecoder decoder(Bytes(s.bytes));
    std::vector<uint8_t> row(width);
    for (uint32_t r = 0; r < s.rows; ++r) {
      decoder.GetSymbols(s.entries.data(), s.table_of.data(), width,
                         row.data());
      for (uint32_t d = 0; d < width; ++d)
        ASSERT_EQ(row[d], s.symbols[size_t{r} * width + d]) << r << " " << d;
    }
    EXPECT_TRUE(decoder.FinishedCleanly());
  }
}

TEST(RansTest, TruncatedStreamIsNotClean) {
  const Stream s = MakeStream(64, 20, 2, 5);
  for (size_t cut : {size_t{0}, size_t{1}, size_t{2}, s.bytes.size() / 2,
                     s.bytes.size() - 2, s.bytes.size() - 1}) {
    const std::string bytes = s.bytes.substr(0, cut);
    RansDecoder decoder(Bytes(bytes));
    std::vector<uint8_t> row(64);
    for (uint32_t r = 0; r < s.rows; ++r)
      decoder.GetSymbols(s.entries.data(), s.table_of.data(), 64, row.data());
    EXPECT_FALSE(decoder.FinishedCleanly()) << cut;
  }
}

// The vector kernels must decode exactly what the portable loop does: the
// same symbols, the same dequantized floats, the same states and words.
class VectorKernelTest : public ::testing::TestWithParam<VectorKernel> {};

TEST_P(VectorKernelTest, MatchesPortableLoop) {
  const VectorKernel kernel = GetParam();
  if (BestVectorKernel() < kernel) GTEST_SKIP() << "not on this CPU";
  for (uint32_t width : {64u, 128u, 256u}) {
    const Stream s = MakeStream(width, 50, 4, 100 + width);
    std::vector<float> offsets(width);
    for (uint32_t d = 0; d < width; ++d)
      offsets[d] = static_cast<float>(static_cast<int>(d * 37 % 201) - 227);
    // Per-channel steps, as channel scales make them.
    std::vector<float> steps(width);
    for (uint32_t d = 0; d < width; ++d) steps[d] = 0.0123f * (1 + d % 5);
    RansDecoder portable(Bytes(s.bytes));
    RansDecoder vector(Bytes(s.bytes));
    std::vector<uint8_t> expected(width), actual(width);
    std::vector<float> expected_row(width), actual_row(width);
    uint32_t kernel_rows = 0;
    for (uint32_t r = 0; r < s.rows; ++r) {
      portable.GetSymbols(s.entries.data(), s.table_of.data(), width,
                          expected.data());
      bool escaped = false;
      for (uint32_t d = 0; d < width; ++d) {
        expected_row[d] =
            (static_cast<float>(expected[d]) + offsets[d]) * steps[d];
        escaped |= expected[d] == kEscape;
      }
      // Like the codec, the kernel runs only with a row's worth of words
      // left; the last rows go through the portable loop.
      if (vector.words_left() < width) {
        vector.GetSymbols(s.entries.data(), s.table_of.data(), width,
                          actual.data());
        ASSERT_EQ(actual, expected) << "row " << r;
        continue;
      }
      ++kernel_rows;
      EXPECT_EQ(DecodeRow(kernel, vector, s.entries.data(), s.table_of.data(),
                          offsets.data(), steps.data(), width, kEscape,
                          actual.data(), actual_row.data()),
                escaped);
      ASSERT_EQ(actual, expected) << "row " << r;
      for (uint32_t d = 0; d < width; ++d)
        ASSERT_EQ(std::bit_cast<uint32_t>(actual_row[d]),
                  std::bit_cast<uint32_t>(expected_row[d]));
      ASSERT_EQ(vector.position(), portable.position());
      ASSERT_EQ(vector.words_left(), portable.words_left());
      for (int i = 0; i < kNumStates; ++i)
        ASSERT_EQ(vector.states()[i], portable.states()[i]);
    }
    EXPECT_TRUE(vector.FinishedCleanly());
    EXPECT_GT(kernel_rows, s.rows * 3 / 4);
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, VectorKernelTest,
                         ::testing::Values(VectorKernel::kAvx2,
                                           VectorKernel::kAvx512));

// The AVX-512 encoder must write exactly the stream RansEncoder::Put does.
TEST(RansTest, VectorEncoderMatchesPut) {
  if (BestVectorKernel() < VectorKernel::kAvx512)
    GTEST_SKIP() << "not on this CPU";
  for (uint32_t width : {64u, 128u, 256u}) {
    const Stream s = MakeStream(width, 50, 4, 300 + width);
    std::vector<uint32_t> tables;
    for (const auto& freqs : s.freqs) AddVectorEncodeTable(freqs, tables);
    std::vector<uint32_t> table_of(width);
    for (uint32_t d = 0; d < width; ++d)
      table_of[d] = s.table_of[d] / kProbScale * kAlphabetSize;
    RansEncoder encoder(s.symbols.size());
    for (uint32_t r = s.rows; r-- > 0;)
      EncodeRowAvx512(encoder, &s.symbols[size_t{r} * width], table_of.data(),
                      tables.data(), width);
    std::string bytes;
    encoder.Finish(bytes);
    EXPECT_EQ(bytes, s.bytes) << width;
  }
}

// x / freq by the 43-bit reciprocal, against real division, at the edges.
TEST(RansTest, ReciprocalDivisionIsExact) {
  std::array<uint16_t, kAlphabetSize> freqs{};
  std::mt19937_64 rng(3);
  for (uint32_t freq = 1; freq < kProbScale; ++freq) {
    freqs.fill(0);
    freqs[0] = static_cast<uint16_t>(freq);
    EncodeTable table;
    BuildEncodeTable(freqs, table);
    const uint64_t reciprocal = table[0].reciprocal;
    auto check = [&](uint32_t x) {
      const uint32_t q = static_cast<uint32_t>(
          (static_cast<unsigned __int128>(x) * reciprocal) >> 43);
      ASSERT_EQ(q, x / freq) << x << " / " << freq;
    };
    check(0xFFFFFFFFu);
    check(0xFFFFFFFFu - 0xFFFFFFFFu % freq);
    check(0xFFFFFFFFu - 0xFFFFFFFFu % freq - 1);
    for (int i = 0; i < 64; ++i) check(static_cast<uint32_t>(rng()));
  }
}

}  // namespace
}  // namespace seqkv::predictive
