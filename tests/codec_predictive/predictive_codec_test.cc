// Round trips of the predictive codec on synthetic chunks: relative-MSE
// targets met per group, layouts of other shapes, KL budgets, bad specs.
#include <gtest/gtest.h>

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "codec/model_state.h"
#include "codec/predictive/rans_vector.h"
#include "nlohmann/json.hpp"
#include "tests/codec_predictive/test_util.h"

namespace seqkv {
namespace {

using testing::GroupError;
using testing::MakeChunkData;
using testing::MeasureGroup;

KvLayout MakeLayout(uint32_t layers, uint32_t heads, uint32_t head_dim,
                    DType dtype, RopeStyle style, uint32_t rotary_dim = 0) {
  KvLayout layout;
  layout.num_layers = layers;
  layout.num_kv_heads = heads;
  layout.head_dim = head_dim;
  layout.dtype = dtype;
  layout.rope = RopeConfig{style, 10000.0, rotary_dim};
  return layout;
}

std::unique_ptr<Codec> MakeCodec(const std::string& spec,
                                 const ModelContext& model) {
  absl::StatusOr<std::unique_ptr<Codec>> codec = CreateCodec(spec, model);
  EXPECT_TRUE(codec.ok()) << codec.status();
  return codec.ok() ? *std::move(codec) : nullptr;
}

// Encodes and decodes one chunk and returns each group's error.
std::vector<GroupError> RoundTrip(const Codec& codec, const ChunkInfo& chunk,
                                  const std::vector<std::byte>& data,
                                  size_t* encoded_size = nullptr) {
  std::string encoded;
  absl::Status status = codec.Encode(chunk, data, encoded);
  EXPECT_TRUE(status.ok()) << status;
  std::vector<std::byte> decoded(data.size());
  status = codec.Decode(chunk, encoded, decoded);
  EXPECT_TRUE(status.ok()) << status;
  if (encoded_size != nullptr) *encoded_size = encoded.size();
  std::vector<GroupError> errors;
  for (uint32_t l = 0; l < chunk.layout->num_layers; ++l)
    for (uint32_t t = 0; t < chunk.layout->tensors_per_layer(); ++t)
      errors.push_back(MeasureGroup(chunk, l, t, data, decoded));
  return errors;
}

struct LayoutCase {
  const char* name;
  KvLayout layout;
  uint32_t tokens;
  uint64_t first_position;
};

class PredictiveLayoutTest : public ::testing::TestWithParam<LayoutCase> {};

TEST_P(PredictiveLayoutTest, MeetsRelativeMseOnEveryGroup) {
  const LayoutCase& c = GetParam();
  ModelContext model{"synthetic", c.layout, {}};
  std::vector<int32_t> tokens(c.tokens);
  ChunkInfo chunk{&model.layout, c.tokens, c.first_position, tokens};
  const std::vector<std::byte> data = MakeChunkData(chunk, 7);
  const bool large =
      size_t{c.tokens} * c.layout.num_kv_heads * c.layout.head_dim >= 2048;
  for (double target : {0.001, 0.01, 0.0335, 0.1}) {
    auto uniform = MakeCodec(
        absl::StrCat("predictive:rel_mse=", target, ",trellis=0"), model);
    ASSERT_NE(uniform, nullptr);
    size_t uniform_size = 0;
    std::vector<GroupError> errors =
        RoundTrip(*uniform, chunk, data, &uniform_size);
    for (size_t g = 0; g < errors.size(); ++g) {
      EXPECT_LE(errors[g].rel(), target) << c.name << " group " << g;
      // The step search lands close to the target, not far below it.
      if (large) {
        EXPECT_GE(errors[g].rel(), 0.8 * target) << c.name << " group " << g;
      }
    }
    // The default (a group coded with the trellis quantizer where that is
    // smaller) meets the same target in no more bytes. (A trellis group's
    // error may end further below the target: where the channels' means
    // carry most of the energy, its finer offsets leave little to spend.)
    auto codec = MakeCodec(absl::StrCat("predictive:rel_mse=", target), model);
    ASSERT_NE(codec, nullptr);
    size_t size = 0;
    errors = RoundTrip(*codec, chunk, data, &size);
    for (size_t g = 0; g < errors.size(); ++g)
      EXPECT_LE(errors[g].rel(), target) << c.name << " group " << g;
    if (large) {
      EXPECT_LT(size, data.size()) << c.name << " target " << target;
      EXPECT_LE(size, uniform_size) << c.name << " target " << target;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, PredictiveLayoutTest,
    ::testing::Values(
        LayoutCase{"hd64_rotate_half",
                   MakeLayout(3, 2, 64, DType::kBF16, RopeStyle::kRotateHalf),
                   96, 0},
        LayoutCase{"hd256_interleaved",
                   MakeLayout(2, 1, 256, DType::kBF16, RopeStyle::kInterleaved),
                   40, 1000},
        LayoutCase{
            "hd128_partial_rotary_fp16",
            MakeLayout(2, 4, 128, DType::kFP16, RopeStyle::kRotateHalf, 64), 33,
            77},
        LayoutCase{"hd80_no_rope_fp32",
                   MakeLayout(2, 3, 80, DType::kFP32, RopeStyle::kNone), 17, 0},
        LayoutCase{"odd_head_dim_one_token",
                   MakeLayout(1, 1, 6, DType::kBF16, RopeStyle::kRotateHalf), 1,
                   5}),
    [](const ::testing::TestParamInfo<LayoutCase>& info) {
      return std::string(info.param.name);
    });

// Every kernel the CPU runs (AVX-512, AVX2, the portable loops) must encode
// every chunk to the same payload and decode it to the same bits.
TEST(PredictiveCodecTest, KernelsAgree) {
  using predictive::VectorKernel;
  for (uint32_t head_dim : {64u, 128u, 256u}) {
    for (RopeStyle style : {RopeStyle::kRotateHalf, RopeStyle::kInterleaved}) {
      ModelContext model{
          "m", MakeLayout(2, 2, head_dim, DType::kBF16, style), {}};
      // Enough tokens that groups are coded with the trellis quantizer.
      const ChunkInfo chunk{&model.layout, 160, 1000, {}};
      const std::vector<std::byte> data = MakeChunkData(chunk, head_dim);
      for (const char* spec :
           {"predictive:rel_mse=0.0001", "predictive:rel_mse=0.05",
            "predictive:rel_mse=0.05,trellis=0"}) {
        std::unique_ptr<Codec> codec = MakeCodec(spec, model);
        std::string encoded;
        ASSERT_TRUE(codec->Encode(chunk, data, encoded).ok());
        std::vector<std::byte> best(data.size());
        ASSERT_TRUE(codec->Decode(chunk, encoded, best).ok());
        for (VectorKernel kernel :
             {VectorKernel::kPortable, VectorKernel::kAvx2}) {
          predictive::LimitVectorKernel(kernel);
          std::string other_encoded;
          const absl::Status encoded_ok =
              codec->Encode(chunk, data, other_encoded);
          std::vector<std::byte> other(data.size());
          const absl::Status status = codec->Decode(chunk, encoded, other);
          predictive::LimitVectorKernel(VectorKernel::kAvx512);
          ASSERT_TRUE(encoded_ok.ok()) << encoded_ok;
          ASSERT_TRUE(status.ok()) << status;
          EXPECT_EQ(other_encoded, encoded) << head_dim << " " << spec;
          EXPECT_TRUE(best == other) << head_dim << " " << spec;
        }
      }
    }
  }
}

TEST(PredictiveCodecTest, LatentLayout) {
  KvLayout layout = MakeLayout(2, 1, 96, DType::kBF16, RopeStyle::kNone);
  layout.latent = true;
  ModelContext model{"latent", layout, {}};
  std::vector<int32_t> tokens(50);
  ChunkInfo chunk{&model.layout, 50, 0, tokens};
  auto codec = MakeCodec("predictive:rel_mse=0.02", model);
  for (const GroupError& e : RoundTrip(*codec, chunk, MakeChunkData(chunk, 3)))
    EXPECT_LE(e.rel(), 0.02);
}

TEST(PredictiveCodecTest, EmptyConstantAndZeroChunks) {
  const KvLayout layout =
      MakeLayout(2, 2, 64, DType::kBF16, RopeStyle::kRotateHalf);
  ModelContext model{"m", layout, {}};
  auto codec = MakeCodec("predictive:rel_mse=0.01", model);
  // No tokens.
  ChunkInfo empty{&model.layout, 0, 0, {}};
  std::string encoded;
  ASSERT_TRUE(codec->Encode(empty, {}, encoded).ok());
  std::vector<std::byte> none;
  EXPECT_TRUE(codec->Decode(empty, encoded, none).ok());
  // All zeros: decoded exactly.
  std::vector<int32_t> tokens(20);
  ChunkInfo chunk{&model.layout, 20, 3, tokens};
  std::vector<std::byte> zeros(chunk.num_bytes());
  for (const GroupError& e : RoundTrip(*codec, chunk, zeros))
    EXPECT_EQ(e.error, 0);
  // A constant (every element 1.5): the offsets alone carry it.
  std::vector<std::byte> constant(chunk.num_bytes());
  for (size_t i = 0; i < constant.size(); i += 2)
    testing::StoreValue(DType::kBF16, 1.5f, &constant[i]);
  for (const GroupError& e : RoundTrip(*codec, chunk, constant))
    EXPECT_LE(e.rel(), 0.01);
}

TEST(PredictiveCodecTest, RejectsNonFiniteInputAndWrongSizes) {
  const KvLayout layout = MakeLayout(1, 1, 8, DType::kFP32, RopeStyle::kNone);
  ModelContext model{"m", layout, {}};
  auto codec = MakeCodec("predictive", model);
  std::vector<int32_t> tokens(4);
  ChunkInfo chunk{&model.layout, 4, 0, tokens};
  std::vector<std::byte> data(chunk.num_bytes());
  testing::StoreValue(DType::kFP32, std::nanf(""), &data[12]);
  std::string encoded;
  EXPECT_EQ(codec->Encode(chunk, data, encoded).code(),
            absl::StatusCode::kInvalidArgument);
  data.resize(data.size() - 4);
  EXPECT_EQ(codec->Encode(chunk, data, encoded).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PredictiveCodecTest, SpecParsing) {
  ModelContext model{
      "m", MakeLayout(2, 2, 64, DType::kBF16, RopeStyle::kRotateHalf), {}};
  EXPECT_EQ(MakeCodec("predictive", model)->spec(), "predictive:rel_mse=0.01");
  EXPECT_EQ(MakeCodec("predictive:rel_mse=0.02,prerope=0", model)->spec(),
            "predictive:rel_mse=0.02,prerope=0");
  EXPECT_EQ(MakeCodec("predictive:trellis=0", model)->spec(),
            "predictive:rel_mse=0.01,trellis=0");
  EXPECT_EQ(MakeCodec("predictive:trellis=1", model)->spec(),
            "predictive:rel_mse=0.01");
  for (const char* bad :
       {"predictive:rel_mse=0", "predictive:rel_mse=2", "predictive:rel_mse=x",
        "predictive:kl=-1", "predictive:bits=3", "predictive:prerope=2",
        "predictive:trellis=2", "predictive:rel_mse=0.01,kl=0.001",
        "predictive:rel_mse"}) {
    EXPECT_EQ(CreateCodec(bad, model).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

// A KL budget without a profile cannot be split.
TEST(PredictiveCodecTest, KlNeedsProfile) {
  ModelContext model{
      "m", MakeLayout(2, 2, 64, DType::kBF16, RopeStyle::kRotateHalf), {}};
  EXPECT_EQ(CreateCodec("predictive:kl=0.001", model).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // A profile that misses a group is not enough either.
  model.codec_state[std::string(kProfileKey)] =
      R"({"metric": "kl_per_rel_mse", "groups": [
          {"layer": 0, "tensor": "k", "sensitivity": 0.01}]})";
  EXPECT_EQ(CreateCodec("predictive:kl=0.001", model).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// A profile of `layers` layers with a K and a V group each, every group with
// `channel_weights` when given.
std::string MakeProfile(int layers,
                        const std::function<double(int, int)>& sensitivity,
                        const std::vector<double>& channel_weights = {}) {
  nlohmann::json groups = nlohmann::json::array();
  for (int l = 0; l < layers; ++l)
    for (int t = 0; t < 2; ++t) {
      nlohmann::json group = {{"layer", l},
                              {"tensor", t ? "v" : "k"},
                              {"sensitivity", sensitivity(l, t)}};
      if (!channel_weights.empty()) group["channel_weights"] = channel_weights;
      groups.push_back(std::move(group));
    }
  return nlohmann::json{
      {"model", "m"}, {"metric", "kl_per_rel_mse"}, {"groups", groups}}
      .dump();
}

TEST(PredictiveCodecTest, KlBudgetSplitBySensitivity) {
  const KvLayout layout =
      MakeLayout(4, 2, 64, DType::kBF16, RopeStyle::kRotateHalf);
  const double sensitivity[4][2] = {
      {0.004, 0.002}, {0.01, 0.005}, {0.074, 0.02}, {0.003, 0.001}};
  const std::string profile =
      MakeProfile(4, [&](int l, int t) { return sensitivity[l][t]; });
  ModelContext model{"m", layout, {{std::string(kProfileKey), profile}}};
  std::vector<int32_t> tokens(128);
  ChunkInfo chunk{&model.layout, 128, 0, tokens};
  const std::vector<std::byte> data = MakeChunkData(chunk, 11);
  const double kl = 0.0013;
  auto codec = MakeCodec(absl::StrCat("predictive:kl=", kl), model);
  EXPECT_EQ(codec->spec(), "predictive:kl=0.0013");
  std::vector<GroupError> errors = RoundTrip(*codec, chunk, data);
  double spent = 0;
  for (int g = 0; g < 8; ++g)
    spent += sensitivity[g / 2][g % 2] * errors[g].rel();
  EXPECT_LE(spent, kl);
  EXPECT_GE(spent, 0.8 * kl);
  // Targets go as 1 / sensitivity: the most sensitive group is coded finest.
  EXPECT_LT(errors[4].rel(), errors[6].rel() / 5);
  EXPECT_LT(errors[4].rel(), errors[0].rel() / 5);
}

// Squared error of channels [begin, end) of every head of one group.
double ChannelError(const ChunkInfo& chunk, uint32_t layer, uint32_t tensor,
                    uint32_t begin, uint32_t end,
                    std::span<const std::byte> original,
                    std::span<const std::byte> decoded) {
  const KvLayout& layout = *chunk.layout;
  const size_t size = DTypeSize(layout.dtype);
  double error = 0;
  for (uint32_t h = 0; h < layout.num_kv_heads; ++h)
    for (uint32_t t = 0; t < chunk.num_tokens; ++t)
      for (uint32_t d = begin; d < end; ++d) {
        const size_t i = chunk.RowOffset(layer, tensor, h, t) + d;
        const double diff =
            double(testing::LoadValue(layout.dtype, &original[i * size])) -
            testing::LoadValue(layout.dtype, &decoded[i * size]);
        error += diff * diff;
      }
  return error;
}

// Channel weights from the profile move the error to the channels that
// matter less; channel_weights=0 ignores them.
TEST(PredictiveCodecTest, KlBudgetWeighsChannels) {
  KvLayout layout = MakeLayout(2, 2, 64, DType::kFP32, RopeStyle::kNone);
  // Channels 0..31 of every head weigh 16, the others 1/16.
  std::vector<double> weights;
  for (uint32_t h = 0; h < 2; ++h)
    for (uint32_t d = 0; d < 64; ++d) weights.push_back(d < 32 ? 16 : 1.0 / 16);
  const std::string profile = MakeProfile(
      2, [](int, int) { return 0.01; }, weights);
  ModelContext model{"m", layout, {{std::string(kProfileKey), profile}}};
  std::vector<int32_t> tokens(128);
  ChunkInfo chunk{&model.layout, 128, 0, tokens};
  const std::vector<std::byte> data = MakeChunkData(chunk, 5);
  for (const bool weighted : {true, false}) {
    SCOPED_TRACE(weighted ? "weighted" : "unweighted");
    // The uniform quantizer, whose error per element follows its step.
    const std::string spec =
        weighted ? "predictive:kl=0.001,trellis=0"
                 : "predictive:kl=0.001,channel_weights=0,trellis=0";
    auto codec = MakeCodec(spec, model);
    EXPECT_EQ(codec->spec(), spec);
    std::string encoded;
    ASSERT_TRUE(codec->Encode(chunk, data, encoded).ok());
    std::vector<std::byte> decoded(data.size());
    ASSERT_TRUE(codec->Decode(chunk, encoded, decoded).ok());
    for (uint32_t l = 0; l < 2; ++l) {
      for (uint32_t t = 0; t < 2; ++t) {
        const double heavy = ChannelError(chunk, l, t, 0, 32, data, decoded);
        const double light = ChannelError(chunk, l, t, 32, 64, data, decoded);
        // Steps go as 1 / sqrt(weight): 16x finer on the heavy channels,
        // 256x less error per element, where the unweighted coder gives
        // every channel the same step.
        if (weighted) {
          EXPECT_LT(heavy * 64, light) << l << " " << t;
        } else {
          EXPECT_GT(heavy * 4, light) << l << " " << t;
          EXPECT_LT(heavy, light * 4) << l << " " << t;
        }
      }
    }
    // Truncated scale codes are refused, never read past the payload.
    if (weighted) {
      std::string cut = encoded;
      cut.resize(10);
      EXPECT_EQ(codec->Decode(chunk, cut, decoded).code(),
                absl::StatusCode::kDataLoss);
    }
  }
}

}  // namespace
}  // namespace seqkv
