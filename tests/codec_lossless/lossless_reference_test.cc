// The lossless codec coding rows against reference rows (format 4,
// ChunkInfo::references): bit-exact, smaller, and decodable only with the
// references it was coded against.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "tests/codec_predictive/reference_test_util.h"

namespace seqkv {
namespace {

using testing::MakeDefaultReferenceCase;
using testing::ReferenceCase;
using testing::ReferenceTestLayout;

std::unique_ptr<Codec> MakeLossless(const KvLayout& layout) {
  absl::StatusOr<std::unique_ptr<Codec>> codec =
      CreateCodec("lossless", ModelContext{"m", layout, {}});
  EXPECT_TRUE(codec.ok()) << codec.status();
  return codec.ok() ? *std::move(codec) : nullptr;
}

struct Case {
  DType dtype;
  RopeStyle style;
};

class LosslessReferenceTest : public ::testing::TestWithParam<Case> {};

TEST_P(LosslessReferenceTest, BitExactAndSmaller) {
  const KvLayout layout =
      ReferenceTestLayout(GetParam().style, GetParam().dtype);
  const ReferenceCase c = MakeDefaultReferenceCase(layout, 0.2f, 21);
  std::unique_ptr<Codec> codec = MakeLossless(layout);
  ASSERT_TRUE(codec->codes_against_references());
  std::string with, without;
  ASSERT_TRUE(codec->Encode(c.chunk(), c.data, with).ok());
  ASSERT_TRUE(codec->Encode(c.chunk(false), c.data, without).ok());
  EXPECT_EQ(with[0], 4);
  EXPECT_EQ(without[0], 3);
  std::vector<std::byte> decoded(c.data.size());
  const absl::Status status = codec->Decode(c.chunk(), with, decoded);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_TRUE(decoded == c.data);
  EXPECT_LT(with.size(), without.size());
  std::printf("lossless %s: %zu bytes with references, %zu without (%.2fx)\n",
              DTypeName(layout.dtype), with.size(), without.size(),
              static_cast<double>(without.size()) / with.size());
}

// Rows identical up to the rotation between positions: in 16-bit formats
// most come out exact from the prediction (one bit each), the rest nearly
// so; fp32 keeps a few ulps of rotation rounding per value.
TEST_P(LosslessReferenceTest, RotatedCopiesCostLittle) {
  const KvLayout layout =
      ReferenceTestLayout(GetParam().style, GetParam().dtype);
  const ReferenceCase c = testing::MakeReferenceCase(
      layout, 64, 64, 3, 4000, {ReferenceRun{0, 64, 0, 0}}, 0.0f, 11);
  std::unique_ptr<Codec> codec = MakeLossless(layout);
  std::string with, without;
  ASSERT_TRUE(codec->Encode(c.chunk(), c.data, with).ok());
  ASSERT_TRUE(codec->Encode(c.chunk(false), c.data, without).ok());
  std::vector<std::byte> decoded(c.data.size());
  ASSERT_TRUE(codec->Decode(c.chunk(), with, decoded).ok());
  EXPECT_TRUE(decoded == c.data);
  EXPECT_LT(with.size() * (layout.dtype == DType::kFP32 ? 3 : 4),
            without.size() * 2)
      << with.size() << " vs " << without.size();
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, LosslessReferenceTest,
    ::testing::Values(Case{DType::kBF16, RopeStyle::kRotateHalf},
                      Case{DType::kFP16, RopeStyle::kInterleaved},
                      Case{DType::kFP32, RopeStyle::kRotateHalf},
                      Case{DType::kBF16, RopeStyle::kNone}));

TEST(LosslessReferences, WithoutRunsEncodesAsBefore) {
  const KvLayout layout =
      ReferenceTestLayout(RopeStyle::kRotateHalf, DType::kBF16);
  const ReferenceCase c = MakeDefaultReferenceCase(layout, 0.2f, 3);
  std::unique_ptr<Codec> codec = MakeLossless(layout);
  std::string plain, no_runs_payload;
  ASSERT_TRUE(codec->Encode(c.chunk(false), c.data, plain).ok());
  ChunkReferences no_runs = c.references;
  no_runs.runs.clear();
  ChunkInfo chunk = c.chunk();
  chunk.references = &no_runs;
  ASSERT_TRUE(codec->Encode(chunk, c.data, no_runs_payload).ok());
  EXPECT_EQ(plain, no_runs_payload);
  // A format-3 payload decodes with references given, ignoring them.
  std::vector<std::byte> decoded(c.data.size());
  ASSERT_TRUE(codec->Decode(c.chunk(), plain, decoded).ok());
  EXPECT_TRUE(decoded == c.data);
}

TEST(LosslessReferences, OtherReferencesAreDataLoss) {
  const KvLayout layout =
      ReferenceTestLayout(RopeStyle::kRotateHalf, DType::kBF16);
  const ReferenceCase c = MakeDefaultReferenceCase(layout, 0.2f, 5);
  std::unique_ptr<Codec> codec = MakeLossless(layout);
  std::string payload;
  ASSERT_TRUE(codec->Encode(c.chunk(), c.data, payload).ok());
  std::vector<std::byte> out(c.data.size());
  auto decode_with = [&](const ChunkReferences* refs) {
    ChunkInfo chunk = c.chunk();
    chunk.references = refs;
    return codec->Decode(chunk, payload, out).code();
  };
  EXPECT_EQ(decode_with(nullptr), absl::StatusCode::kDataLoss);
  ChunkReferences shifted = c.references;
  shifted.runs[0].source_token += 1;
  EXPECT_EQ(decode_with(&shifted), absl::StatusCode::kDataLoss);
  std::vector<std::byte> other_bytes = c.source_data;
  other_bytes[100] ^= std::byte{1};
  ChunkReferences other = c.references;
  other.sources[0].data = other_bytes;
  EXPECT_EQ(decode_with(&other), absl::StatusCode::kDataLoss);
  ChunkReferences outside = c.references;
  outside.runs[1].num_tokens = 1000;
  EXPECT_EQ(decode_with(&outside), absl::StatusCode::kDataLoss);
  ChunkReferences short_source = c.references;
  short_source.sources[0].data = short_source.sources[0].data.first(10);
  EXPECT_EQ(decode_with(&short_source), absl::StatusCode::kDataLoss);
  // Every single-bit flip of the payload is caught.
  for (size_t i = 0; i < payload.size(); i += 97) {
    std::string bad = payload;
    bad[i] ^= 0x10;
    ChunkInfo chunk = c.chunk();
    EXPECT_FALSE(codec->Decode(chunk, bad, out).ok()) << i;
  }
  EXPECT_EQ(decode_with(&c.references), absl::StatusCode::kOk);
  EXPECT_TRUE(out == c.data);
}

TEST(LosslessReferences, InvalidReferencesAreRejected) {
  const KvLayout layout =
      ReferenceTestLayout(RopeStyle::kRotateHalf, DType::kBF16);
  const ReferenceCase c = MakeDefaultReferenceCase(layout, 0.2f, 9);
  std::unique_ptr<Codec> codec = MakeLossless(layout);
  std::vector<ChunkReferences> bad(4, c.references);
  bad[0].runs[1].token = 20;          // overlaps run 0
  bad[1].runs[1].num_tokens = 47;     // past the chunk's end
  bad[2].runs[0].source = 3;          // no such source
  bad[3].sources[0].num_tokens = 79;  // data size does not match
  for (size_t i = 0; i < bad.size(); ++i) {
    ChunkInfo chunk = c.chunk();
    chunk.references = &bad[i];
    std::string out;
    EXPECT_EQ(codec->Encode(chunk, c.data, out).code(),
              absl::StatusCode::kInvalidArgument)
        << i;
  }
}

}  // namespace
}  // namespace seqkv
