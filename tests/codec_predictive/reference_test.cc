// The predictive codec coding rows against reference rows (cross-prefix
// residuals, ChunkInfo::references): targets met, payloads smaller, K
// turned between positions, and payloads that decode only with the
// references they were coded against.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "tests/codec_predictive/reference_test_util.h"
#include "tests/codec_predictive/test_util.h"

namespace seqkv {
namespace {

using testing::MakeDefaultReferenceCase;
using testing::MeasureGroup;
using testing::ReferenceCase;
using testing::ReferenceTestLayout;

std::unique_ptr<Codec> Make(const std::string& spec, const KvLayout& layout) {
  absl::StatusOr<std::unique_ptr<Codec>> codec =
      CreateCodec(spec, ModelContext{"m", layout, {}});
  EXPECT_TRUE(codec.ok()) << codec.status();
  return codec.ok() ? *std::move(codec) : nullptr;
}

std::string Encode(const Codec& codec, const ChunkInfo& chunk,
                   const std::vector<std::byte>& data) {
  std::string out;
  const absl::Status status = codec.Encode(chunk, data, out);
  EXPECT_TRUE(status.ok()) << status;
  return out;
}

absl::Status Decode(const Codec& codec, const ChunkInfo& chunk,
                    std::string_view payload, std::vector<std::byte>& out) {
  out.assign(chunk.num_bytes(), std::byte{0});
  return codec.Decode(chunk, payload, out);
}

struct Case {
  const char* spec;
  RopeStyle style;
  DType dtype;
};

class PredictiveReferenceTest : public ::testing::TestWithParam<Case> {};

TEST_P(PredictiveReferenceTest, MeetsTargetAndShrinks) {
  const Case& p = GetParam();
  const KvLayout layout = ReferenceTestLayout(p.style, p.dtype);
  const ReferenceCase c = MakeDefaultReferenceCase(layout, 0.2f, 7);
  std::unique_ptr<Codec> codec = Make(p.spec, layout);
  ASSERT_TRUE(codec->codes_against_references());
  const std::string with = Encode(*codec, c.chunk(), c.data);
  const std::string without = Encode(*codec, c.chunk(false), c.data);
  ASSERT_GE(with.size(), 2u);
  EXPECT_EQ(with[1], 3);
  EXPECT_EQ(without[1], 2);
  std::vector<std::byte> decoded;
  ASSERT_TRUE(Decode(*codec, c.chunk(), with, decoded).ok());
  for (uint32_t l = 0; l < layout.num_layers; ++l)
    for (uint32_t t = 0; t < 2; ++t)
      EXPECT_LE(MeasureGroup(c.chunk(), l, t, c.data, decoded).rel(), 0.01)
          << "layer " << l << " tensor " << t;
  // 70 of 96 rows predicted with 4% of their variance left.
  EXPECT_LT(with.size(), without.size() * 0.75)
      << with.size() << " vs " << without.size();
  std::printf("%s: %zu bytes with references, %zu without (%.2fx)\n", p.spec,
              with.size(), without.size(),
              static_cast<double>(without.size()) / with.size());
}

// Identical rows at other positions: K re-rotated (or de-rotated) from the
// source's positions to this chunk's predicts it to rounding, so the
// predicted rows cost next to nothing.
TEST_P(PredictiveReferenceTest, RotatesKBetweenPositions) {
  const Case& p = GetParam();
  const KvLayout layout = ReferenceTestLayout(p.style, p.dtype);
  const ReferenceCase c = testing::MakeReferenceCase(
      layout, 64, 64, 3, 4000, {ReferenceRun{0, 64, 0, 0}}, 0.0f, 11);
  std::unique_ptr<Codec> codec = Make(p.spec, layout);
  const std::string with = Encode(*codec, c.chunk(), c.data);
  const std::string without = Encode(*codec, c.chunk(false), c.data);
  std::vector<std::byte> decoded;
  ASSERT_TRUE(Decode(*codec, c.chunk(), with, decoded).ok());
  for (uint32_t l = 0; l < layout.num_layers; ++l)
    for (uint32_t t = 0; t < 2; ++t)
      EXPECT_LE(MeasureGroup(c.chunk(), l, t, c.data, decoded).rel(), 1e-3)
          << "layer " << l << " tensor " << t;
  EXPECT_LT(with.size() * 20, without.size())
      << with.size() << " vs " << without.size();
}

INSTANTIATE_TEST_SUITE_P(
    Specs, PredictiveReferenceTest,
    ::testing::Values(
        Case{"predictive:rel_mse=0.01", RopeStyle::kRotateHalf, DType::kBF16},
        Case{"predictive:rel_mse=0.01,prerope=0", RopeStyle::kRotateHalf,
             DType::kBF16},
        Case{"predictive:rel_mse=0.01", RopeStyle::kInterleaved, DType::kFP16},
        Case{"predictive:rel_mse=0.01,prerope=0", RopeStyle::kInterleaved,
             DType::kFP32},
        Case{"predictive:rel_mse=0.01", RopeStyle::kNone, DType::kBF16}));

TEST(PredictiveReferences, WithoutRunsEncodesAsBefore) {
  const KvLayout layout = ReferenceTestLayout(RopeStyle::kRotateHalf);
  const ReferenceCase c = MakeDefaultReferenceCase(layout, 0.2f, 3);
  std::unique_ptr<Codec> codec = Make("predictive:rel_mse=0.01", layout);
  const std::string plain = Encode(*codec, c.chunk(false), c.data);
  EXPECT_EQ(plain[1], 2);
  ChunkReferences no_runs = c.references;
  no_runs.runs.clear();
  ChunkInfo chunk = c.chunk();
  chunk.references = &no_runs;
  EXPECT_EQ(Encode(*codec, chunk, c.data), plain);
  // A version-2 payload ignores references it is given.
  std::vector<std::byte> a, b;
  ASSERT_TRUE(Decode(*codec, c.chunk(false), plain, a).ok());
  ASSERT_TRUE(Decode(*codec, c.chunk(), plain, b).ok());
  EXPECT_EQ(a, b);
}

TEST(PredictiveReferences, OtherReferencesAreDataLoss) {
  const KvLayout layout = ReferenceTestLayout(RopeStyle::kRotateHalf);
  const ReferenceCase c = MakeDefaultReferenceCase(layout, 0.2f, 5);
  std::unique_ptr<Codec> codec = Make("predictive:rel_mse=0.01", layout);
  const std::string payload = Encode(*codec, c.chunk(), c.data);
  std::vector<std::byte> out;
  EXPECT_EQ(Decode(*codec, c.chunk(false), payload, out).code(),
            absl::StatusCode::kDataLoss);
  auto decode_with = [&](const ChunkReferences& refs) {
    ChunkInfo chunk = c.chunk();
    chunk.references = &refs;
    return Decode(*codec, chunk, payload, out).code();
  };
  ChunkReferences empty;
  EXPECT_EQ(decode_with(empty), absl::StatusCode::kDataLoss);
  ChunkReferences shifted = c.references;
  shifted.runs[0].source_token += 1;
  EXPECT_EQ(decode_with(shifted), absl::StatusCode::kDataLoss);
  ChunkReferences moved = c.references;
  moved.sources[0].first_position += 1;
  EXPECT_EQ(decode_with(moved), absl::StatusCode::kDataLoss);
  std::vector<std::byte> other_bytes = c.source_data;
  other_bytes[100] ^= std::byte{1};
  ChunkReferences other = c.references;
  other.sources[0].data = other_bytes;
  EXPECT_EQ(decode_with(other), absl::StatusCode::kDataLoss);
  ChunkReferences fewer = c.references;
  fewer.runs.pop_back();
  EXPECT_EQ(decode_with(fewer), absl::StatusCode::kDataLoss);
  // Invalid references (out of range): DATA_LOSS as well, never a crash.
  ChunkReferences outside = c.references;
  outside.runs[1].num_tokens = 1000;
  EXPECT_EQ(decode_with(outside), absl::StatusCode::kDataLoss);
  ChunkReferences short_source = c.references;
  short_source.sources[0].data = short_source.sources[0].data.first(10);
  EXPECT_EQ(decode_with(short_source), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(decode_with(c.references) == absl::StatusCode::kOk);
}

TEST(PredictiveReferences, InvalidReferencesAreRejected) {
  const KvLayout layout = ReferenceTestLayout(RopeStyle::kRotateHalf);
  const ReferenceCase c = MakeDefaultReferenceCase(layout, 0.2f, 9);
  std::unique_ptr<Codec> codec = Make("predictive:rel_mse=0.01", layout);
  auto encode_with = [&](const ChunkReferences& refs) {
    ChunkInfo chunk = c.chunk();
    chunk.references = &refs;
    std::string out;
    return codec->Encode(chunk, c.data, out).code();
  };
  std::vector<ChunkReferences> bad(7, c.references);
  bad[0].runs[1].token = 20;                  // overlaps run 0
  bad[1].runs[1].num_tokens = 47;             // past the chunk's end
  bad[2].runs[0].source = 1;                  // no such source
  bad[3].runs[0].source_token = 60;           // past the source's end
  bad[4].sources[0].num_tokens = 81;          // data size does not match
  bad[5].runs[0].num_tokens = 0;              // empty run
  std::swap(bad[6].runs[0], bad[6].runs[1]);  // not ascending
  for (size_t i = 0; i < bad.size(); ++i)
    EXPECT_EQ(encode_with(bad[i]), absl::StatusCode::kInvalidArgument) << i;
  // A NaN in a source row that a run uses.
  std::vector<std::byte> nan_source = c.source_data;
  const ChunkInfo source = c.source_chunk();
  const uint16_t nan = 0x7FC0;
  std::memcpy(&nan_source[source.RowOffset(1, 1, 0, 45) * 2], &nan, 2);
  ChunkReferences with_nan = c.references;
  with_nan.sources[0].data = nan_source;
  EXPECT_EQ(encode_with(with_nan), absl::StatusCode::kInvalidArgument);
}

TEST(PredictiveReferences, OtherCodecsIgnoreReferences) {
  const KvLayout layout = ReferenceTestLayout(RopeStyle::kRotateHalf);
  for (const char* spec : {"raw", "turbo:4", "kivi:2"}) {
    absl::StatusOr<std::unique_ptr<Codec>> codec =
        CreateCodec(spec, ModelContext{"m", layout, {}});
    if (!codec.ok()) continue;  // a spec this build does not register
    EXPECT_FALSE((*codec)->codes_against_references()) << spec;
  }
}

}  // namespace
}  // namespace seqkv
