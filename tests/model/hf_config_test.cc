#include "model/hf_config.h"

#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/model/tiny_model.h"
#include "tests/scoped_temp_dir.h"

namespace seqkv {
namespace {

using nlohmann::json;

// The smallest config the reader accepts.
json Minimal() {
  return {{"hidden_size", 512},
          {"num_hidden_layers", 8},
          {"num_attention_heads", 8},
          {"vocab_size", 1000}};
}

absl::StatusOr<HfConfig> Parse(const json& config) {
  return ParseHfConfig(config.dump());
}

// The status message, or "" for OK (gtest prints it on failure).
std::string Message(const absl::StatusOr<HfConfig>& config) {
  return config.ok() ? "" : std::string(config.status().message());
}

bool Contains(const absl::StatusOr<HfConfig>& config, const std::string& s) {
  return Message(config).find(s) != std::string::npos;
}

TEST(HfConfigTest, DefaultsOfAMinimalConfig) {
  auto config = Parse(Minimal());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_layers, 8u);
  EXPECT_EQ(config->num_kv_heads, 8u);  // no GQA unless stated
  EXPECT_EQ(config->head_dim, 64u);     // hidden_size / num_attention_heads
  EXPECT_EQ(config->rope.style, RopeStyle::kRotateHalf);
  EXPECT_EQ(config->rope.theta, 10000.0);  // transformers' LlamaConfig default
  EXPECT_EQ(config->rope_type, "default");
  EXPECT_EQ(config->dtype, DType::kBF16);
  EXPECT_EQ(config->rms_norm_eps, 1e-6);
  EXPECT_EQ(config->intermediate_size, 0u);
  EXPECT_EQ(config->bos_token_id, -1);
  const KvLayout layout = config->KvCacheLayout();
  EXPECT_EQ(layout.DebugString(), "8 layers x 8 kv heads x 64 bf16");
  EXPECT_TRUE(layout.Validate().ok());
}

TEST(HfConfigTest, RopeTheta500000AtTheTopOrInRopeParameters) {
  json top = Minimal();
  top["rope_theta"] = 500000.0;
  auto config = Parse(top);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->rope.theta, 500000.0);
  EXPECT_EQ(config->KvCacheLayout().rope.theta, 500000.0);

  json nested = Minimal();
  nested["rope_parameters"] = {{"rope_theta", 500000},
                               {"rope_type", "default"}};
  config = Parse(nested);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->rope.theta, 500000.0);

  // Both, agreeing (some exporters write both).
  nested["rope_theta"] = 500000.0;
  config = Parse(nested);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->rope.theta, 500000.0);

  nested["rope_theta"] = 10000.0;
  config = Parse(nested);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(config, "disagree")) << Message(config);
  EXPECT_TRUE(Contains(config, "500000")) << Message(config);
}

TEST(HfConfigTest, RopeTypeFromEitherPlace) {
  json scaled = Minimal();
  scaled["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  auto config = Parse(scaled);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->rope_type, "linear");
  scaled = Minimal();
  scaled["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 5e5}};
  config = Parse(scaled);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->rope_type, "llama3");
  scaled["rope_scaling"] = nullptr;  // null is "absent"
  EXPECT_TRUE(Parse(scaled).ok());
}

TEST(HfConfigTest, InterleavedAndNoRope) {
  json config = Minimal();
  config["rope_interleaved"] = true;
  auto read = Parse(config);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->rope.style, RopeStyle::kInterleaved);

  config = Minimal();
  config["rope_style"] = "interleaved";
  config["rope_theta"] = 1e6;
  read = Parse(config);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->KvCacheLayout().rope.style, RopeStyle::kInterleaved);
  EXPECT_EQ(read->KvCacheLayout().rope.theta, 1e6);

  config = Minimal();
  config["rope_style"] = "none";
  config["head_dim"] = 63;  // odd is fine without rotation
  read = Parse(config);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->rope.style, RopeStyle::kNone);
  EXPECT_TRUE(read->KvCacheLayout().Validate().ok());

  config["rope_style"] = "rotate_half";
  read = Parse(config);
  EXPECT_TRUE(Contains(read, "head_dim (63) must be even")) << Message(read);

  config = Minimal();
  config["rope_style"] = "sideways";
  read = Parse(config);
  EXPECT_TRUE(Contains(read,
                       "'rope_style' must be none, rotate_half or "
                       "interleaved, got 'sideways'"))
      << Message(read);

  config = Minimal();
  config["rope_style"] = "none";
  config["rope_interleaved"] = true;
  read = Parse(config);
  EXPECT_TRUE(Contains(read, "rope_interleaved")) << Message(read);
}

TEST(HfConfigTest, MissingRequiredFieldsAreAllNamed) {
  auto config = Parse({{"hidden_size", 256}});
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(config),
            "config.json: missing 'num_hidden_layers', "
            "'num_attention_heads', 'vocab_size'");
  json no_vocab = Minimal();
  no_vocab.erase("vocab_size");
  EXPECT_EQ(Message(Parse(no_vocab)), "config.json: missing 'vocab_size'");
  no_vocab["vocab_size"] = nullptr;
  EXPECT_EQ(Message(Parse(no_vocab)), "config.json: missing 'vocab_size'");
}

TEST(HfConfigTest, InvalidFieldsAreNamedWithTheirValue) {
  struct Case {
    const char* key;
    json value;
    const char* expected;
  };
  const Case cases[] = {
      {"num_hidden_layers", -2,
       "'num_hidden_layers' must be an integer in [1, 16777216], got -2"},
      {"num_hidden_layers", 0, "'num_hidden_layers' must be an integer"},
      {"num_attention_heads", "8", "got \"8\""},
      {"head_dim", 64.5, "'head_dim' must be an integer"},
      {"num_key_value_heads", 3,
       "num_attention_heads (8) is not a multiple of num_key_value_heads (3)"},
      {"rope_theta", "big", "'rope_theta' must be a number, got \"big\""},
      {"rope_theta", 0.5, "rope_theta must be a finite number > 1, got 0.5"},
      {"rope_parameters", 3, "'rope_parameters' must be an object"},
      {"rms_norm_eps", 0, "'rms_norm_eps' must be positive"},
      {"torch_dtype", "int8",
       "'torch_dtype' must be bfloat16, float16 or float32, got 'int8'"},
      {"tie_word_embeddings", "yes", "'tie_word_embeddings' must be true"},
      {"num_hidden_layers", 4096, "layout.num_layers must be in [1, 1024]"},
  };
  for (const Case& c : cases) {
    json config = Minimal();
    config[c.key] = c.value;
    auto read = Parse(config);
    EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument)
        << c.key;
    EXPECT_TRUE(Contains(read, c.expected))
        << c.key << ": " << Message(read) << "\nwanted: " << c.expected;
  }
  EXPECT_EQ(Message(ParseHfConfig("[1, 2]")), "config.json: not a JSON object");
  EXPECT_EQ(Message(ParseHfConfig("{")), "config.json: not a JSON object");

  json uneven = Minimal();
  uneven["num_attention_heads"] = 7;
  EXPECT_TRUE(Contains(Parse(uneven),
                       "no 'head_dim', and hidden_size (512) "
                       "is not a multiple of "
                       "num_attention_heads (7)"));
  uneven["head_dim"] = 64;  // stated: no need to divide
  EXPECT_TRUE(Parse(uneven).ok());
}

TEST(HfConfigTest, DTypeAndTokenIds) {
  json config = Minimal();
  config["torch_dtype"] = "float16";
  config["eos_token_id"] = json::array({7, 9});
  config["bos_token_id"] = 1;
  auto read = Parse(config);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->dtype, DType::kFP16);
  EXPECT_EQ(read->KvCacheLayout().dtype, DType::kFP16);
  EXPECT_EQ(read->eos_token_id, 7);
  EXPECT_EQ(read->bos_token_id, 1);
  config["dtype"] = "float32";  // transformers 5's name wins
  read = Parse(config);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->dtype, DType::kFP32);
}

// Real-looking configs with head_dim 64, 128 and 256, read from directories
// as the commands read them.
TEST(HfConfigTest, ReadsModelDirectoriesOfEachHeadDim) {
  for (uint32_t head_dim : {64u, 128u, 256u}) {
    testing::ScopedTempDir dir("seqkv-hf-config");
    testing::TinyModel model;
    model.num_layers = 3;
    model.num_heads = 8;
    model.num_kv_heads = 2;
    model.head_dim = head_dim;
    model.hidden_size = 1024;
    model.rope_theta = 500000.0;
    std::ofstream(dir.string() + "/config.json")
        << testing::TinyConfigJson(model).dump(2);
    auto read = ReadHfConfig(dir.string());
    ASSERT_TRUE(read.ok()) << read.status();
    const KvLayout layout = read->KvCacheLayout();
    EXPECT_EQ(layout.num_layers, 3u);
    EXPECT_EQ(layout.num_kv_heads, 2u);
    EXPECT_EQ(layout.head_dim, head_dim);
    EXPECT_EQ(layout.dtype, DType::kBF16);
    EXPECT_EQ(layout.rope.style, RopeStyle::kRotateHalf);
    EXPECT_EQ(layout.rope.theta, 500000.0);
    EXPECT_EQ(read->intermediate_size, model.intermediate_size);
    EXPECT_EQ(read->rms_norm_eps, 1e-5);
    EXPECT_TRUE(read->tie_word_embeddings);
  }
}

TEST(HfConfigTest, ErrorsNameTheFile) {
  testing::ScopedTempDir dir("seqkv-hf-config");
  auto missing = ReadHfConfig(dir.string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(missing, dir.string() + "/config.json"));
  std::ofstream(dir.string() + "/config.json") << R"({"hidden_size": 64})";
  auto bad = ReadHfConfig(dir.string());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(bad, dir.string() + "/config.json: missing"))
      << Message(bad);
}

}  // namespace
}  // namespace seqkv
