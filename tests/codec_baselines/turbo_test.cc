#include <cmath>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "codec/turbo/hadamard.h"
#include "codec/turbo/lloyd_max.h"
#include "codec/turbo/turbo_codec.h"
#include "gtest/gtest.h"
#include "tests/codec_baselines/test_chunks.h"

namespace seqkv {
namespace {

using baseline_test::CompareChunks;
using baseline_test::GaussianChunk;
using baseline_test::MakeLayout;
using baseline_test::OwnedChunk;

std::unique_ptr<Codec> MakeTurbo(std::string_view spec,
                                 const KvLayout& layout) {
  ModelContext model;
  model.layout = layout;
  auto codec = CreateCodec(spec, model);
  EXPECT_TRUE(codec.ok()) << codec.status();
  return codec.ok() ? std::move(*codec) : nullptr;
}

struct RoundTrip {
  std::string encoded;
  std::vector<std::byte> decoded;
};

RoundTrip EncodeDecode(const Codec& codec, const OwnedChunk& chunk) {
  RoundTrip r;
  absl::Status s = codec.Encode(chunk.info(), chunk.data, r.encoded);
  EXPECT_TRUE(s.ok()) << s;
  r.decoded.resize(chunk.data.size());
  s = codec.Decode(chunk.info(), r.encoded, r.decoded);
  EXPECT_TRUE(s.ok()) << s;
  return r;
}

TEST(LloydMax, MatchesPublishedGaussianCodebooks) {
  const std::vector<std::vector<double>> positive = {
      {0.4528, 1.5104},
      {0.2451, 0.7560, 1.3439, 2.1519},
      {0.1284, 0.3880, 0.6568, 0.9423, 1.2562, 1.6180, 2.0690, 2.7326}};
  for (int bits = 2; bits <= 4; ++bits) {
    std::span<const double> c = GaussianLloydMaxCentroids(bits);
    ASSERT_EQ(c.size(), size_t{1} << bits);
    const auto& want = positive[bits - 2];
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(c[c.size() / 2 + i], want[i], 2e-4) << bits << " bits";
      EXPECT_NEAR(c[c.size() / 2 - 1 - i], -want[i], 2e-4) << bits << " bits";
    }
  }
  EXPECT_NEAR(GaussianLloydMaxDistortion(2), 0.1175, 2e-4);
  EXPECT_NEAR(GaussianLloydMaxDistortion(3), 0.03454, 2e-4);
  EXPECT_NEAR(GaussianLloydMaxDistortion(4), 0.009497, 2e-4);
}

TEST(Hadamard, IsOrthonormalAndInvertible) {
  for (size_t n : {1, 2, 64, 128, 256}) {
    std::vector<float> signs = HadamardSigns(n, 42);
    std::vector<float> x(n);
    for (size_t i = 0; i < n; ++i) x[i] = std::sin(0.7 * i) + 0.1 * i;
    std::vector<float> y = x;
    ForwardRandomizedHadamard(y, signs);
    double nx = 0, ny = 0;
    for (size_t i = 0; i < n; ++i) nx += x[i] * x[i], ny += y[i] * y[i];
    EXPECT_NEAR(nx, ny, 1e-4 * nx);
    InverseRandomizedHadamard(y, signs);
    for (size_t i = 0; i < n; ++i) EXPECT_NEAR(x[i], y[i], 1e-4);
  }
}

// The TurboQuant MSE table: for unit-normalized Gaussian vectors, the error
// per unit of energy is the Lloyd-Max distortion of N(0, 1).
TEST(Turbo, MseMatchesTableOnGaussianVectors) {
  const KvLayout layout = MakeLayout(2, 4, 128, DType::kFP32);
  const OwnedChunk chunk = GaussianChunk(layout, 256, 7);
  const std::vector<std::pair<std::string, double>> table = {
      {"turbo:2", 0.1175}, {"turbo:3", 0.0346}, {"turbo:4", 0.0095}};
  for (const auto& [spec, want] : table) {
    auto codec = MakeTurbo(spec, layout);
    RoundTrip r = EncodeDecode(*codec, chunk);
    const double mse = CompareChunks(chunk, r.decoded).rel_mse_all();
    EXPECT_NEAR(mse, want, 0.05 * want) << spec;
  }
}

TEST(Turbo, FractionalBitsLieBetweenTheirNeighbours) {
  const KvLayout layout = MakeLayout(1, 2, 128, DType::kFP32);
  // Channel offsets make some channels carry more energy, as in real keys.
  const OwnedChunk chunk = GaussianChunk(layout, 128, 11, 1.0f, 2.0f);
  double previous = 1.0;
  for (const char* spec :
       {"turbo:2", "turbo:2.5", "turbo:3", "turbo:3.5", "turbo:4"}) {
    auto codec = MakeTurbo(spec, layout);
    RoundTrip r = EncodeDecode(*codec, chunk);
    const double mse = CompareChunks(chunk, r.decoded).rel_mse_all();
    EXPECT_LT(mse, previous) << spec;
    previous = mse;
  }
}

TEST(Turbo, BitsPerElementCountEverything) {
  const KvLayout layout = MakeLayout(6, 2, 128, DType::kBF16);
  const OwnedChunk chunk = GaussianChunk(layout, 256, 3);
  const double elements = static_cast<double>(chunk.info().num_elements());
  const std::vector<std::pair<std::string, double>> table = {
      {"turbo:2", 2.125},
      {"turbo:2.5", 2.75},
      {"turbo:3", 3.125},
      {"turbo:3.5", 3.75},
      {"turbo:4", 4.125}};
  for (const auto& [spec, want] : table) {
    auto codec = MakeTurbo(spec, layout);
    std::string out;
    ASSERT_TRUE(codec->Encode(chunk.info(), chunk.data, out).ok());
    const double bits = out.size() * 8.0 / elements;
    EXPECT_GE(bits, want) << spec;
    EXPECT_LT(bits, want + 0.005) << spec;  // header and channel masks
  }
}

TEST(Turbo, RoundTripsEveryDtypeAndShape) {
  struct Case {
    KvLayout layout;
    uint32_t tokens;
  };
  std::vector<Case> cases;
  for (DType dtype : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    cases.push_back({MakeLayout(3, 2, 128, dtype), 100});
    cases.push_back({MakeLayout(1, 5, 64, dtype), 33});
    cases.push_back({MakeLayout(2, 1, 256, dtype), 17});
    cases.push_back({MakeLayout(2, 3, 96, dtype), 20});         // not 2^k
    cases.push_back({MakeLayout(2, 1, 576, dtype, true), 19});  // MLA latent
  }
  for (const Case& c : cases) {
    const OwnedChunk chunk = GaussianChunk(c.layout, c.tokens, 5, 0.5f, 1.0f);
    for (const char* spec :
         {"turbo:2", "turbo:2.5", "turbo:3", "turbo:3.5", "turbo:4"}) {
      auto codec = MakeTurbo(spec, c.layout);
      RoundTrip r = EncodeDecode(*codec, chunk);
      const double mse = CompareChunks(chunk, r.decoded).rel_mse_all();
      EXPECT_LT(mse, 0.16) << spec << " " << c.layout.DebugString();
      // Deterministic: encoding again gives the same bytes.
      std::string again;
      ASSERT_TRUE(codec->Encode(chunk.info(), chunk.data, again).ok());
      EXPECT_EQ(again, r.encoded);
    }
  }
}

TEST(Turbo, ZeroVectorsAndEmptyChunks) {
  const KvLayout layout = MakeLayout(1, 1, 128, DType::kBF16);
  OwnedChunk chunk = GaussianChunk(layout, 4, 1);
  std::fill(chunk.data.begin(), chunk.data.end(), std::byte{0});
  auto codec = MakeTurbo("turbo:3", layout);
  RoundTrip r = EncodeDecode(*codec, chunk);
  EXPECT_EQ(r.decoded, chunk.data);

  OwnedChunk empty = GaussianChunk(layout, 0, 1);
  RoundTrip e = EncodeDecode(*codec, empty);
  EXPECT_TRUE(e.decoded.empty());
}

TEST(Turbo, RejectsBadSpecsAndInputs) {
  ModelContext model;
  model.layout = MakeLayout(1, 1, 128, DType::kBF16);
  for (const char* spec : {"turbo", "turbo:", "turbo:1", "turbo:5",
                           "turbo:2.25", "turbo:x", "turbo:3,seed=1"}) {
    auto codec = CreateCodec(spec, model);
    EXPECT_EQ(codec.status().code(), absl::StatusCode::kInvalidArgument)
        << spec;
  }
  auto codec = MakeTurbo("turbo:3", model.layout);
  EXPECT_EQ(codec->spec(), "turbo:3");
  EXPECT_EQ(MakeTurbo("turbo:2.5", model.layout)->spec(), "turbo:2.5");
  EXPECT_FALSE(codec->lossless());

  const KvLayout fp32 = MakeLayout(1, 1, 4, DType::kFP32);
  OwnedChunk chunk = GaussianChunk(fp32, 2, 1);
  std::vector<float> values = chunk.Floats();
  values[3] = NAN;
  StoreElements(DType::kFP32, values, 0, chunk.data);
  std::string out;
  EXPECT_EQ(codec->Encode(chunk.info(), chunk.data, out).code(),
            absl::StatusCode::kInvalidArgument);
  values[3] = 1e6f;  // the row norm no longer fits the fp16 norm
  StoreElements(DType::kFP32, values, 0, chunk.data);
  EXPECT_EQ(codec->Encode(chunk.info(), chunk.data, out).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      codec->Encode(chunk.info(), std::span(chunk.data).first(8), out).code(),
      absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace seqkv
