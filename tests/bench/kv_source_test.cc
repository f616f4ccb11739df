// Replay's KV source (real KV caches cut to a slice as blocks' content) and
// the mapping between a trace's tokens and the tokens a block stores.
#include "bench/replay/kv_source.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "bench/replay/replay_runner.h"
#include "codec/float_bits.h"
#include "codec/model_state.h"
#include "codec/predictive/rope.h"
#include "model/hf_config.h"
#include "model/kv_cache.h"
#include "tests/test_data.h"

namespace seqkv::bench {
namespace {

TEST(StoredTokensTest, ScalesBlocksAndMapsMatchesBack) {
  EXPECT_EQ(StoredTokens(512, 512, 16), 16u);
  EXPECT_EQ(StoredTokens(100, 512, 16), 4u);  // 3.1 rounded up
  EXPECT_EQ(StoredTokens(1, 512, 16), 1u);    // never empty
  EXPECT_EQ(StoredTokens(77, 512, 512), 77u);

  TraceRequest request;
  request.block_tokens = 64;
  request.input_length = 150;  // 64 + 64 + 22
  request.hash_ids = {1, 2, 3};
  // 16 stored tokens per block: 16 + 16 + 6.
  EXPECT_EQ(TraceTokensMatched(request, 0, 16), 0u);
  EXPECT_EQ(TraceTokensMatched(request, 15, 16), 0u);
  EXPECT_EQ(TraceTokensMatched(request, 16, 16), 64u);
  EXPECT_EQ(TraceTokensMatched(request, 37, 16), 128u);
  EXPECT_EQ(TraceTokensMatched(request, 38, 16), 150u);
  EXPECT_EQ(TraceTokensMatched(request, 150, 64), 150u);
  EXPECT_EQ(TraceTokensMatched(request, 149, 64), 128u);
}

// The shared data's caches, their model's config and its committed profile.
class KvSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SEQKV_NEEDS_TEST_DATA("kv/a_dev_00.safetensors", "lm/config.json");
    auto config = ReadHfConfig(SEQKV_DATA_DIR "/lm");
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
    options_.glob = SEQKV_DATA_DIR "/kv/*.safetensors";
    options_.rope = config_.rope;
    options_.model_layout = config_.KvCacheLayout();
    options_.slice_tokens = 16;
  }

  HfConfig config_;
  KvSourceOptions options_;
};

TEST_F(KvSourceTest, SliceTakesTheModelsLayoutAndSkipsTokenOnlyFiles) {
  auto source = KvSource::Load(options_);
  ASSERT_TRUE(source.ok()) << source.status();
  const KvLayout& layout = source->layout();
  EXPECT_EQ(layout.num_layers, 1u);
  EXPECT_EQ(layout.num_kv_heads, 1u);
  EXPECT_EQ(layout.head_dim, config_.head_dim);
  EXPECT_EQ(layout.dtype, config_.dtype);
  EXPECT_EQ(layout.rope, config_.rope);
  EXPECT_EQ(source->layer(), config_.num_layers / 2);
  const nlohmann::json described = source->Describe();
  EXPECT_EQ(described["slice"]["tokens_per_block"], 16);
  EXPECT_EQ(described["profile"], "none");
  // dev_eval_tokens holds a token stream, no KV.
  bool skipped_tokens = false;
  for (const auto& entry : described["skipped"])
    skipped_tokens |= entry["path"].get<std::string>().find(
                          "dev_eval_tokens") != std::string::npos;
  EXPECT_TRUE(skipped_tokens) << described.dump();
}

TEST_F(KvSourceTest, EqualIdsGiveEqualBytesAndValuesAreTheFilesOwn) {
  options_.glob = SEQKV_DATA_DIR "/kv/a_dev_00.safetensors";
  options_.layer = 1;
  options_.head = 1;
  auto source = KvSource::Load(options_);
  ASSERT_TRUE(source.ok()) << source.status();
  auto file = ReadKvCacheFile(options_.glob);
  ASSERT_TRUE(file.ok()) << file.status();
  const size_t row = size_t{config_.head_dim} * 2;
  const size_t plane = size_t{file->num_tokens()} * row;
  const std::byte* file_v =
      file->v.data() + (1 * file->layout.num_kv_heads + 1) * plane;
  const std::byte* file_k =
      file->k.data() + (1 * file->layout.num_kv_heads + 1) * plane;

  for (uint64_t id : {7u, 123456u, 99u}) {
    std::vector<std::byte> k1, v1, k2, v2;
    source->Fill(id, 48, 16, k1, v1);
    source->Fill(id, 48, 16, k2, v2);
    ASSERT_EQ(k1.size(), 16 * row);
    EXPECT_EQ(k1, k2);
    EXPECT_EQ(v1, v2);
    // V is a window of the file's slice, bit for bit.
    bool found = false;
    for (uint32_t start = 0; start + 16 <= file->num_tokens() && !found;
         start += 16)
      found = std::memcmp(file_v + start * row, v1.data(), v1.size()) == 0;
    EXPECT_TRUE(found) << "id " << id;
    // A shorter block is the prefix of the whole one.
    std::vector<std::byte> k3, v3;
    source->Fill(id, 48, 5, k3, v3);
    EXPECT_TRUE(std::equal(v3.begin(), v3.end(), v1.begin()));
  }

  // K moved to another position turns back into the file's K when its RoPE
  // phase is moved back (up to bf16 rounding), and is bit-exact at the
  // window's own position.
  std::vector<std::byte> k, v;
  source->Fill(42, 4096, 16, k, v);
  uint32_t start = 0;
  while (std::memcmp(file_v + start * row, v.data(), v.size()) != 0)
    start += 16;
  std::vector<std::byte> k_home, v_home;
  source->Fill(42, start, 16, k_home, v_home);
  EXPECT_EQ(0, std::memcmp(file_k + start * row, k_home.data(), k.size()));
  EXPECT_NE(k, k_home);
  const predictive::RopeTable at(config_.rope, config_.head_dim, 4096, 16);
  const predictive::RopeTable home(config_.rope, config_.head_dim, start, 16);
  double error = 0, energy = 0;
  std::vector<float> values(config_.head_dim);
  for (uint32_t t = 0; t < 16; ++t) {
    for (uint32_t d = 0; d < config_.head_dim; ++d) {
      uint16_t bits;
      std::memcpy(&bits, k.data() + t * row + 2 * d, 2);
      values[d] = Bf16ToFloat(bits);
    }
    at.Undo(t, values.data());
    home.Apply(t, values.data());
    for (uint32_t d = 0; d < config_.head_dim; ++d) {
      uint16_t bits;
      std::memcpy(&bits, file_k + (start + t) * row + 2 * d, 2);
      const double want = Bf16ToFloat(bits);
      error += (values[d] - want) * (values[d] - want);
      energy += want * want;
    }
  }
  EXPECT_LT(error / energy, 1e-4);
}

TEST_F(KvSourceTest, ProfileIsCutToTheSlice) {
  const std::string path =
      SEQKV_SOURCE_DIR "/tools/lm/profiles/kvlm-23m.profile.json";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  std::stringstream text;
  text << in.rdbuf();
  options_.profile_json = text.str();
  options_.layer = 2;
  options_.head = 1;
  auto source = KvSource::Load(options_);
  ASSERT_TRUE(source.ok()) << source.status();
  auto full = ParseFidelityProfile(options_.profile_json);
  auto slice = ParseFidelityProfile(source->slice_profile(), &source->layout());
  ASSERT_TRUE(full.ok() && slice.ok()) << slice.status();
  ASSERT_EQ(slice->groups.size(), 2u);
  for (uint32_t tensor = 0; tensor < 2; ++tensor) {
    const auto* want = full->Find(2, tensor);
    const auto* got = slice->Find(0, tensor);
    ASSERT_TRUE(want && got);
    EXPECT_EQ(got->sensitivity, want->sensitivity);
    ASSERT_EQ(got->channel_weights.size(), config_.head_dim);
    EXPECT_EQ(got->channel_weights[0], want->channel_weights[config_.head_dim]);
  }
  EXPECT_EQ(source->Describe()["profile"], "sliced");
}

TEST_F(KvSourceTest, BadSourcesAreRefusedNamingWhy) {
  KvSourceOptions none = options_;
  none.glob = SEQKV_DATA_DIR "/kv/nosuch*.safetensors";
  auto missing = KvSource::Load(none);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("matches no KV cache"),
            std::string::npos);
  KvSourceOptions outside = options_;
  outside.layer = static_cast<int>(config_.num_layers);
  auto bad_layer = KvSource::Load(outside);
  EXPECT_EQ(bad_layer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_layer.status().message().find("--kv_layer"), std::string::npos);
  KvSourceOptions other_model = options_;
  other_model.model_layout->head_dim = config_.head_dim * 2;
  auto mismatch = KvSource::Load(other_model);
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(mismatch.status().message().find("head_dim"), std::string::npos)
      << mismatch.status();
}

}  // namespace
}  // namespace seqkv::bench
