// The CPU runtime against the reference: caches and log-probabilities that
// the bf16 GPU forward pass stored in shared/data/kv.
#include <cmath>
#include <cstring>
#include <string>

#include "codec/float_bits.h"
#include "gtest/gtest.h"
#include "model/kv_cache.h"
#include "model/safetensors.h"
#include "tests/test_data.h"
#include "tools/lm/fidelity.h"
#include "tools/lm/llama_model.h"
#include "tools/lm/lm_config.h"

namespace seqkv::lm {
namespace {

const std::string kDataDir = SEQKV_DATA_DIR;
constexpr uint32_t kTokens = 320;  // a few hundred: enough, and fast

// The tolerances reached, stated in docs/RUNTIME.md (measured values are
// about half of these).
constexpr double kMaxRelMseK = 5e-5;
constexpr double kMaxRelMseV = 1.5e-4;
constexpr double kMaxMeanAbsLogprob = 0.03;
constexpr double kMaxAbsLogprob = 0.3;
constexpr double kMaxMeanNllDiff = 0.01;

const LlamaModel& Model() {
  static const LlamaModel* model = [] {
    auto loaded = LlamaModel::Load(kDataDir + "/lm");
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return loaded.ok() ? loaded->release() : nullptr;
  }();
  return *model;
}

double BitIdenticalFraction(const KvCache& a, const KvCache& b, uint32_t layer,
                            bool values) {
  const size_t count =
      size_t{a.layout.num_kv_heads} * a.num_tokens() * a.layout.head_dim;
  const std::byte* x = (values ? a.v : a.k).data() + layer * count * 2;
  const std::byte* y = (values ? b.v : b.k).data() + layer * count * 2;
  size_t same = 0;
  for (size_t i = 0; i < count; ++i)
    same += std::memcmp(x + 2 * i, y + 2 * i, 2) == 0;
  return double(same) / count;
}

class ReproduceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ReproduceTest, MatchesStoredCacheAndLogprobs) {
  SEQKV_NEEDS_TEST_DATA("lm", "kv/" + GetParam() + ".safetensors");
  const std::string path = kDataDir + "/kv/" + GetParam() + ".safetensors";
  auto file = ReadKvCacheFile(path);
  ASSERT_TRUE(file.ok()) << file.status();
  file->layout = Model().kv_layout();
  const KvCache reference = PrefixCache(*file, kTokens);
  const std::string name = "logprobs";
  auto logprobs_file = ReadSafetensorsTensors(path, {&name, 1});
  ASSERT_TRUE(logprobs_file.ok()) << logprobs_file.status();
  auto logprobs = logprobs_file->tensors.at(name).as<float>();

  KvCache cache = Model().EmptyCache();
  auto result = Model().Forward(reference.tokens, cache);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(cache.num_tokens(), kTokens);

  // Layer 0 K depends only on the token and position: every rounding point
  // is reproduced, so it is the same bit for bit up to
  // summation order (over 99% of elements).
  EXPECT_GT(BitIdenticalFraction(reference, cache, 0, false), 0.99);
  EXPECT_GT(BitIdenticalFraction(reference, cache, 0, true), 0.99);
  EXPECT_LT(CompareTensor(reference, cache, false).relative(), kMaxRelMseK);
  EXPECT_LT(CompareTensor(reference, cache, true).relative(), kMaxRelMseV);

  double sum_abs = 0, max_abs = 0, nll = 0, nll_file = 0;
  for (uint32_t t = 0; t + 1 < kTokens; ++t) {
    const float lp = LogSoftmax(result->row(t))[reference.tokens[t + 1]];
    const double diff = std::fabs(lp - logprobs[t]);
    sum_abs += diff;
    max_abs = std::max(max_abs, diff);
    nll -= lp;
    nll_file -= logprobs[t];
  }
  const double n = kTokens - 1;
  EXPECT_LT(sum_abs / n, kMaxMeanAbsLogprob);
  EXPECT_LT(max_abs, kMaxAbsLogprob);
  EXPECT_NEAR(nll / n, nll_file / n, kMaxMeanNllDiff);
}

INSTANTIATE_TEST_SUITE_P(Dumps, ReproduceTest,
                         ::testing::Values("a_dev_00", "a_dev_06",
                                           "b_rag_00_D1_D2"));

TEST(LlamaModelTest, PrefillInPiecesMatchesOnePass) {
  SEQKV_NEEDS_TEST_DATA("lm", "kv/a_dev_05.safetensors");
  auto file = ReadKvCacheFile(kDataDir + "/kv/a_dev_05.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  std::span<const int32_t> tokens(file->tokens.data(), 200);
  KvCache whole = Model().EmptyCache();
  auto one = Model().Forward(tokens, whole);
  ASSERT_TRUE(one.ok());
  KvCache pieces = Model().EmptyCache();
  ASSERT_TRUE(Model().Forward(tokens.first(130), pieces).ok());
  auto two = Model().Forward(tokens.subspan(130), pieces);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(pieces.tokens, whole.tokens);
  // The same computation on other row counts: equal up to summation order.
  EXPECT_LT(CompareTensor(whole, pieces, false).relative(), 1e-5);
  EXPECT_LT(CompareTensor(whole, pieces, true).relative(), 1e-4);
  double max_diff = 0;
  for (uint32_t r = 0; r < two->rows; ++r)
    for (uint32_t i = 0; i < two->vocab; ++i)
      max_diff = std::max<double>(
          max_diff, std::fabs(two->row(r)[i] - one->row(130 + r)[i]));
  EXPECT_LT(max_diff, 0.25);
}

// What `seqkv generate` relies on: given the cache of prompt[0, n-1) that an
// earlier Prefill made, prefilling the rest gives the very same logits.
TEST(LlamaModelTest, PrefillFromItsOwnCacheIsExact) {
  SEQKV_NEEDS_TEST_DATA("lm", "kv/a_dev_02.safetensors");
  auto file = ReadKvCacheFile(kDataDir + "/kv/a_dev_02.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  std::span<const int32_t> prompt(file->tokens.data(), 150);
  KvCache first = Model().EmptyCache();
  auto once = Model().Prefill(prompt, first);
  ASSERT_TRUE(once.ok()) << once.status();
  KvCache stored = PrefixCache(first, 149);
  auto again = Model().Prefill(prompt.subspan(149), stored);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(once->logits, again->logits);
  EXPECT_EQ(first.k, stored.k);
  EXPECT_EQ(first.v, stored.v);
}

TEST(LlamaModelTest, GreedyDecodeExtendsTheCache) {
  SEQKV_NEEDS_TEST_DATA("lm");
  const int32_t prompt[] = {0, 464, 1169, 318};
  KvCache cache = Model().EmptyCache();
  auto generated = Model().GenerateGreedy(prompt, cache, 5);
  ASSERT_TRUE(generated.ok()) << generated.status();
  EXPECT_EQ(generated->size(), 5u);
  EXPECT_EQ(cache.num_tokens(), 4u + 4u);  // the last new token is not fed
  EXPECT_TRUE(cache.Validate().ok());
}

TEST(LlamaModelTest, RejectsBadInput) {
  SEQKV_NEEDS_TEST_DATA("lm");
  KvCache cache = Model().EmptyCache();
  const int32_t out_of_vocab[] = {0, int32_t(Model().config().vocab_size)};
  EXPECT_EQ(Model().Forward(out_of_vocab, cache).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Model().Forward({}, cache).status().code(),
            absl::StatusCode::kInvalidArgument);
  KvCache wrong = Model().EmptyCache();
  wrong.layout.num_kv_heads += 1;
  const int32_t one[] = {0};
  EXPECT_EQ(Model().Forward(one, wrong).status().code(),
            absl::StatusCode::kInvalidArgument);
  KvCache torn = Model().EmptyCache();
  torn.tokens = {0, 1};
  torn.k.resize(10);
  EXPECT_FALSE(Model().Forward(one, torn).ok());
}

TEST(LmConfigTest, ReadsTheShapeFromConfig) {
  SEQKV_NEEDS_TEST_DATA("lm/config.json");
  auto config = LoadLmConfig(kDataDir + "/lm");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_kv_heads * 2, config->num_heads);
  EXPECT_EQ(config->KvCacheLayout().rope.style, RopeStyle::kRotateHalf);
  EXPECT_TRUE(config->tie_word_embeddings);

  auto parsed = ParseLmConfig(R"({"hidden_size": 256, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 1,
      "intermediate_size": 512, "vocab_size": 100, "rope_theta": 500000.0})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->head_dim, 64u);
  EXPECT_EQ(parsed->rope.theta, 500000.0);
}

TEST(LmConfigTest, NamesWhatItCannotRun) {
  auto missing = ParseLmConfig(R"({"hidden_size": 256})");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("num_hidden_layers"),
            std::string::npos);
  auto scaled = ParseLmConfig(R"({"hidden_size": 256, "num_hidden_layers": 2,
      "num_attention_heads": 4, "intermediate_size": 512, "vocab_size": 100,
      "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0}})");
  EXPECT_EQ(scaled.status().code(), absl::StatusCode::kUnimplemented);
  auto bias = ParseLmConfig(R"({"hidden_size": 256, "num_hidden_layers": 2,
      "num_attention_heads": 4, "intermediate_size": 512, "vocab_size": 100,
      "attention_bias": true})");
  EXPECT_EQ(bias.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_FALSE(ParseLmConfig("not json").ok());
}

}  // namespace
}  // namespace seqkv::lm
