// turbo and kivi on a real KV cache (a_dev_00, first 256 tokens), in the
// dump's bf16 and converted to fp16 and fp32.
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/codec_bench/chunking.h"
#include "codec/codec.h"
#include "gtest/gtest.h"
#include "model/kv_cache.h"
#include "tests/codec_baselines/test_chunks.h"
#include "tests/test_data.h"

namespace seqkv {
namespace {

using baseline_test::CompareChunks;
using baseline_test::ErrorStats;
using baseline_test::KvFile;
using baseline_test::OwnedChunk;

OwnedChunk RealChunk(DType dtype) {
  absl::StatusOr<KvCache> cache =
      ReadKvCacheFile(KvFile("a_dev_00.safetensors"));
  EXPECT_TRUE(cache.ok()) << cache.status();
  OwnedChunk chunk;
  if (!cache.ok()) return chunk;
  const uint32_t tokens = 256;
  chunk.layout = std::make_unique<KvLayout>(cache->layout);
  chunk.tokens.assign(cache->tokens.begin(), cache->tokens.begin() + tokens);
  std::vector<std::byte> bf16 = bench::GatherChunk(*cache, 0, tokens);
  std::vector<float> values(bf16.size() / 2);
  LoadElements(DType::kBF16, bf16, 0, values);
  chunk.layout->dtype = dtype;
  chunk.data.resize(values.size() * DTypeSize(dtype));
  StoreElements(dtype, values, 0, chunk.data);
  return chunk;
}

ErrorStats RoundTrip(std::string_view spec, const OwnedChunk& chunk) {
  ModelContext model;
  model.layout = *chunk.layout;
  auto codec = CreateCodec(spec, model);
  EXPECT_TRUE(codec.ok()) << codec.status();
  std::string encoded;
  absl::Status s = (*codec)->Encode(chunk.info(), chunk.data, encoded);
  EXPECT_TRUE(s.ok()) << s;
  std::vector<std::byte> decoded(chunk.data.size());
  s = (*codec)->Decode(chunk.info(), encoded, decoded);
  EXPECT_TRUE(s.ok()) << s;
  return CompareChunks(chunk, decoded);
}

class RealData : public ::testing::TestWithParam<DType> {};

// Random rotation makes turbo's error independent of the data: close to the
// Lloyd-Max distortion on K and V alike, whatever their outliers.
TEST_P(RealData, TurboErrorMatchesItsTable) {
  SEQKV_NEEDS_TEST_DATA("kv/a_dev_00.safetensors");
  const OwnedChunk chunk = RealChunk(GetParam());
  ASSERT_FALSE(chunk.data.empty());
  const std::vector<std::pair<std::string, double>> table = {
      {"turbo:2", 0.1175}, {"turbo:3", 0.0346}, {"turbo:4", 0.0095}};
  for (const auto& [spec, distortion] : table) {
    ErrorStats stats = RoundTrip(spec, chunk);
    for (int tensor : {0, 1}) {
      EXPECT_GT(stats.rel_mse(tensor), 0.85 * distortion) << spec << tensor;
      EXPECT_LT(stats.rel_mse(tensor), 1.1 * distortion) << spec << tensor;
    }
  }
  const double low = RoundTrip("turbo:2.5", chunk).rel_mse_all();
  EXPECT_LT(low, RoundTrip("turbo:2", chunk).rel_mse_all());
  EXPECT_GT(low, RoundTrip("turbo:3", chunk).rel_mse_all());
}

TEST_P(RealData, KiviErrorShrinksWithBits) {
  SEQKV_NEEDS_TEST_DATA("kv/a_dev_00.safetensors");
  const OwnedChunk chunk = RealChunk(GetParam());
  ASSERT_FALSE(chunk.data.empty());
  double previous[2] = {1, 1};
  for (int bits : {2, 3, 4}) {
    ErrorStats stats = RoundTrip(absl::StrCat("kivi:", bits), chunk);
    for (int tensor : {0, 1}) {
      // Each bit divides a uniform quantizer's error by about 4.
      EXPECT_LT(stats.rel_mse(tensor), 0.4 * previous[tensor]) << bits;
      previous[tensor] = stats.rel_mse(tensor);
    }
  }
  EXPECT_LT(previous[0], 0.01);
  EXPECT_LT(previous[1], 0.02);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, RealData,
                         ::testing::Values(DType::kBF16, DType::kFP16,
                                           DType::kFP32),
                         [](const auto& info) {
                           return std::string(DTypeName(info.param));
                         });

}  // namespace
}  // namespace seqkv
