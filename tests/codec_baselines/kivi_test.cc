#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/codec.h"
#include "codec/kivi/kivi_codec.h"
#include "gtest/gtest.h"
#include "tests/codec_baselines/test_chunks.h"

namespace seqkv {
namespace {

using baseline_test::CompareChunks;
using baseline_test::GaussianChunk;
using baseline_test::MakeLayout;
using baseline_test::OwnedChunk;

std::unique_ptr<Codec> MakeKivi(std::string_view spec, const KvLayout& layout) {
  ModelContext model;
  model.layout = layout;
  auto codec = CreateCodec(spec, model);
  EXPECT_TRUE(codec.ok()) << codec.status();
  return codec.ok() ? std::move(*codec) : nullptr;
}

std::vector<std::byte> RoundTrip(const Codec& codec, const OwnedChunk& chunk,
                                 std::string* encoded = nullptr) {
  std::string out;
  absl::Status s = codec.Encode(chunk.info(), chunk.data, out);
  EXPECT_TRUE(s.ok()) << s;
  std::vector<std::byte> decoded(chunk.data.size());
  s = codec.Decode(chunk.info(), out, decoded);
  EXPECT_TRUE(s.ok()) << s;
  if (encoded) *encoded = std::move(out);
  return decoded;
}

// Checks every element against the error bound of its own group: half a
// quantization step of that group's range, plus the fp16 rounding of the
// scale and zero point. A wrong grouping (say, values grouped per channel)
// breaks the bound on the offset channels.
TEST(Kivi, ErrorStaysWithinHalfAStepOfItsGroup) {
  const uint32_t tokens = 70, d = 80;  // partial groups on both axes
  const KvLayout layout = MakeLayout(2, 2, d, DType::kFP32);
  const OwnedChunk chunk = GaussianChunk(layout, tokens, 9, 0.3f, 4.0f);
  for (int bits : {2, 3, 4, 8}) {
    auto codec = MakeKivi(absl::StrCat("kivi:", bits), layout);
    std::vector<std::byte> decoded = RoundTrip(*codec, chunk);
    std::vector<float> x = chunk.Floats(), y(x.size());
    LoadElements(DType::kFP32, decoded, 0, y);
    const float levels = static_cast<float>((1 << bits) - 1);
    const size_t slot_elements = size_t{tokens} * d;
    for (size_t slot = 0; slot < x.size() / slot_elements; ++slot) {
      const bool keys = (slot / layout.num_kv_heads) % 2 == 0;
      const float* xs = &x[slot * slot_elements];
      const float* ys = &y[slot * slot_elements];
      // Group of (t, c): keys share (t / 32, c), values (t, c / 32).
      auto group_key = [&](uint32_t t, uint32_t c) {
        return keys ? std::pair(t / 32, c) : std::pair(t, c / 32);
      };
      for (uint32_t t = 0; t < tokens; ++t) {
        for (uint32_t c = 0; c < d; ++c) {
          float lo = INFINITY, hi = -INFINITY;
          for (uint32_t t2 = 0; t2 < tokens; ++t2)
            for (uint32_t c2 = 0; c2 < d; ++c2)
              if (group_key(t2, c2) == group_key(t, c)) {
                lo = std::min(lo, xs[t2 * d + c2]);
                hi = std::max(hi, xs[t2 * d + c2]);
              }
          const float step = (hi - lo) / levels;
          const float bound = 0.5f * step * 1.01f +
                              std::max(std::fabs(lo), std::fabs(hi)) * 1e-3f;
          ASSERT_LE(std::fabs(xs[t * d + c] - ys[t * d + c]), bound)
              << "bits " << bits << " slot " << slot << " t " << t << " c "
              << c;
        }
      }
    }
    if (bits == 8) break;  // the O(n^2) check above is slow; one pass is enough
  }
}

TEST(Kivi, BitsPerElementCountScalesAndZeros) {
  const KvLayout layout = MakeLayout(6, 2, 128, DType::kBF16);
  const OwnedChunk chunk = GaussianChunk(layout, 256, 3);
  const double elements = static_cast<double>(chunk.info().num_elements());
  for (int bits : {2, 3, 4}) {
    auto codec = MakeKivi(absl::StrCat("kivi:", bits), layout);
    std::string out;
    ASSERT_TRUE(codec->Encode(chunk.info(), chunk.data, out).ok());
    // 32 bits of fp16 scale + zero per group of 32 elements.
    const double want = bits + 1.0;
    EXPECT_GE(out.size() * 8.0 / elements, want);
    EXPECT_LT(out.size() * 8.0 / elements, want + 0.001);
  }
}

TEST(Kivi, RoundTripsEveryDtypeAndShape) {
  for (DType dtype : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    for (const KvLayout& layout :
         {MakeLayout(3, 2, 128, dtype), MakeLayout(1, 5, 64, dtype),
          MakeLayout(2, 1, 256, dtype), MakeLayout(2, 3, 96, dtype),
          MakeLayout(2, 1, 576, dtype, true)}) {
      for (uint32_t tokens : {1u, 31u, 33u, 64u}) {
        const OwnedChunk chunk = GaussianChunk(layout, tokens, 5, 0.5f, 1.0f);
        double previous = 1.0;
        for (int bits : {2, 3, 4}) {
          auto codec = MakeKivi(absl::StrCat("kivi:", bits), layout);
          std::string encoded;
          std::vector<std::byte> decoded = RoundTrip(*codec, chunk, &encoded);
          const double mse = CompareChunks(chunk, decoded).rel_mse_all();
          // One-token key groups are exact up to fp16 parameter rounding,
          // which does not shrink with more bits.
          if (tokens > 1) {
            EXPECT_LT(mse, previous) << bits << " " << layout.DebugString();
          }
          EXPECT_LT(mse, 0.1) << bits << " " << layout.DebugString();
          previous = mse;
          std::string again;
          ASSERT_TRUE(codec->Encode(chunk.info(), chunk.data, again).ok());
          EXPECT_EQ(again, encoded);
        }
      }
    }
  }
}

TEST(Kivi, ConstantGroupsAreExact) {
  const KvLayout layout = MakeLayout(1, 1, 64, DType::kBF16);
  OwnedChunk chunk = GaussianChunk(layout, 40, 1);
  std::vector<float> values(chunk.data.size() / 2, 0.375f);
  StoreElements(DType::kBF16, values, 0, chunk.data);
  auto codec = MakeKivi("kivi:2", layout);
  EXPECT_EQ(RoundTrip(*codec, chunk), chunk.data);
}

TEST(Kivi, RejectsBadSpecsAndInputs) {
  ModelContext model;
  model.layout = MakeLayout(1, 1, 32, DType::kFP32);
  for (const char* spec :
       {"kivi", "kivi:", "kivi:0", "kivi:9", "kivi:2.5", "kivi:two"}) {
    EXPECT_EQ(CreateCodec(spec, model).status().code(),
              absl::StatusCode::kInvalidArgument)
        << spec;
  }
  auto codec = MakeKivi("kivi:2", model.layout);
  EXPECT_EQ(codec->spec(), "kivi:2");
  OwnedChunk chunk = GaussianChunk(model.layout, 4, 1);
  std::vector<float> values = chunk.Floats();
  values[5] = INFINITY;
  StoreElements(DType::kFP32, values, 0, chunk.data);
  std::string out;
  EXPECT_EQ(codec->Encode(chunk.info(), chunk.data, out).code(),
            absl::StatusCode::kInvalidArgument);
  values[5] = 1e9f;  // beyond what an fp16 zero point can hold
  StoreElements(DType::kFP32, values, 0, chunk.data);
  EXPECT_EQ(codec->Encode(chunk.info(), chunk.data, out).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace seqkv
