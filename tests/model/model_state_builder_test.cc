// The layer-0 table built from a synthetic model directory: its config.json
// decides the layout it is checked against, and its rows are what
// RMSNorm and the K/V projections of layer 0 give in bf16.
#include "model/model_state_builder.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "codec/float_bits.h"
#include "codec/model_state.h"
#include "gtest/gtest.h"
#include "model/bf16_ops.h"
#include "model/hf_config.h"
#include "model/safetensors.h"
#include "tests/model/tiny_model.h"
#include "tests/scoped_temp_dir.h"

namespace seqkv {
namespace {

std::vector<float> Floats(const Tensor& tensor) {
  std::vector<float> out(tensor.num_elements());
  Bf16BytesToFloats(tensor.data.data(), out);
  return out;
}

class ModelStateBuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_.rope_theta = 500000.0;
    ASSERT_TRUE(testing::WriteTinyModel(dir_.string(), model_).ok());
    auto config = ReadHfConfig(dir_.string());
    ASSERT_TRUE(config.ok()) << config.status();
    layout_ = config->KvCacheLayout();
  }

  testing::ScopedTempDir dir_{"seqkv-model-state"};
  testing::TinyModel model_;
  KvLayout layout_;
};

TEST_F(ModelStateBuilderTest, TableRowsAreLayerZeroKAndV) {
  auto state = BuildCodecStateFromModelDir(dir_.string(), layout_);
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_TRUE(state->contains(std::string(kLayer0TableKey)));
  auto table =
      Layer0Table::Parse(state->at(std::string(kLayer0TableKey)), layout_);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->vocab(), model_.vocab_size);

  // Recompute a few rows straight from the weights.
  auto weights = ReadSafetensors(dir_.string() + "/model.safetensors");
  ASSERT_TRUE(weights.ok()) << weights.status();
  const std::vector<float> embed =
      Floats(weights->tensors.at("model.embed_tokens.weight"));
  const std::vector<float> norm =
      Floats(weights->tensors.at("model.layers.0.input_layernorm.weight"));
  const std::vector<float> w_k =
      Floats(weights->tensors.at("model.layers.0.self_attn.k_proj.weight"));
  const std::vector<float> w_v =
      Floats(weights->tensors.at("model.layers.0.self_attn.v_proj.weight"));
  const size_t hidden = model_.hidden_size;
  for (int32_t token : {0, 1, int32_t(model_.vocab_size) - 1}) {
    std::vector<float> normed(hidden);
    RmsNormBf16({&embed[token * hidden], hidden}, norm, 1e-5f, normed);
    for (uint32_t head = 0; head < model_.num_kv_heads; ++head) {
      const uint16_t* k = table->Row(0, token, head);
      const uint16_t* v = table->Row(1, token, head);
      for (uint32_t d = 0; d < model_.head_dim; ++d) {
        const size_t row = (size_t{head} * model_.head_dim + d) * hidden;
        double want_k = 0, want_v = 0;
        for (size_t i = 0; i < hidden; ++i) {
          want_k += double(w_k[row + i]) * normed[i];
          want_v += double(w_v[row + i]) * normed[i];
        }
        // One bf16 rounding apart at most (the builder sums in float).
        EXPECT_NEAR(Bf16ToFloat(k[d]), want_k, 1e-2 * (1 + std::abs(want_k)))
            << token << " " << head << " " << d;
        EXPECT_NEAR(Bf16ToFloat(v[d]), want_v, 1e-2 * (1 + std::abs(want_v)))
            << token << " " << head << " " << d;
      }
    }
  }
}

TEST_F(ModelStateBuilderTest, LayoutMustAgreeWithConfigJson) {
  KvLayout legacy = layout_;
  legacy.rope.theta = 10000.0;  // what a missing --rope used to mean
  auto state = BuildCodecStateFromModelDir(dir_.string(), legacy);
  EXPECT_EQ(state.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(state.status().message(),
            "config.json rope_theta is 500000 but the layout says 10000");

  KvLayout heads = layout_;
  heads.num_kv_heads = 4;
  state = BuildCodecStateFromModelDir(dir_.string(), heads);
  EXPECT_EQ(state.status().message(),
            "config.json num_key_value_heads is 2 but the layout says 4");
}

TEST_F(ModelStateBuilderTest, UnsupportedModelTypeIsNamed) {
  testing::TinyModel other = model_;
  other.extra_config = {{"model_type", "gpt_neox"}};
  testing::ScopedTempDir dir("seqkv-model-state");
  ASSERT_TRUE(testing::WriteTinyModel(dir.string(), other).ok());
  auto state = BuildCodecStateFromModelDir(dir.string(), layout_);
  EXPECT_EQ(state.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(state.status().message().find("model_type 'gpt_neox'"),
            std::string::npos)
      << state.status();
}

}  // namespace
}  // namespace seqkv
