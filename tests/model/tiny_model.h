// Test helper: a tiny synthetic Llama-style model directory (config.json and
// model.safetensors with small random bf16 weights for every tensor the
// runtime reads) and a KV dump of its layout, written to a directory of the
// test's choosing.
#ifndef SEQKV_TESTS_MODEL_TINY_MODEL_H_
#define SEQKV_TESTS_MODEL_TINY_MODEL_H_

#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "codec/float_bits.h"
#include "model/kv_cache.h"
#include "model/safetensors.h"
#include "nlohmann/json.hpp"

namespace seqkv::testing {

struct TinyModel {
  uint32_t num_layers = 2;
  uint32_t hidden_size = 64;
  uint32_t num_heads = 4;
  uint32_t num_kv_heads = 2;
  uint32_t head_dim = 16;
  uint32_t intermediate_size = 96;
  uint32_t vocab_size = 48;
  double rope_theta = 500000.0;
  // Merged over the generated config.json (null removes a field).
  nlohmann::json extra_config = nlohmann::json::object();
  uint32_t seed = 1;
};

inline Tensor RandomBf16(std::vector<int64_t> shape, float scale,
                         std::mt19937& rng) {
  Tensor tensor;
  tensor.dtype = "BF16";
  tensor.shape = std::move(shape);
  tensor.data.resize(tensor.num_elements() * 2);
  std::normal_distribution<float> normal(0.0f, scale);
  for (size_t i = 0; i < tensor.num_elements(); ++i) {
    const uint16_t bits = FloatToBf16(normal(rng));
    std::memcpy(&tensor.data[2 * i], &bits, 2);
  }
  return tensor;
}

inline Tensor OnesNearBf16(int64_t n, std::mt19937& rng) {
  Tensor tensor = RandomBf16({n}, 0.1f, rng);
  auto* bits = reinterpret_cast<uint16_t*>(tensor.data.data());
  for (int64_t i = 0; i < n; ++i)
    bits[i] = FloatToBf16(1.0f + Bf16ToFloat(bits[i]));
  return tensor;
}

inline nlohmann::json TinyConfigJson(const TinyModel& m) {
  nlohmann::json config = {
      {"model_type", "llama"},
      {"hidden_size", m.hidden_size},
      {"num_hidden_layers", m.num_layers},
      {"num_attention_heads", m.num_heads},
      {"num_key_value_heads", m.num_kv_heads},
      {"head_dim", m.head_dim},
      {"intermediate_size", m.intermediate_size},
      {"vocab_size", m.vocab_size},
      {"max_position_embeddings", 512},
      {"rms_norm_eps", 1e-5},
      {"rope_parameters",
       {{"rope_theta", m.rope_theta}, {"rope_type", "default"}}},
      {"hidden_act", "silu"},
      {"tie_word_embeddings", true},
      {"dtype", "bfloat16"},
  };
  config.merge_patch(m.extra_config);
  return config;
}

// Writes <dir>/config.json and <dir>/model.safetensors.
inline absl::Status WriteTinyModel(const std::string& dir, const TinyModel& m) {
  std::ofstream(dir + "/config.json") << TinyConfigJson(m).dump(2);
  std::mt19937 rng(m.seed);
  const int64_t hidden = m.hidden_size;
  const int64_t q = int64_t{m.num_heads} * m.head_dim;
  const int64_t kv = int64_t{m.num_kv_heads} * m.head_dim;
  SafetensorsFile file;
  file.tensors["model.embed_tokens.weight"] =
      RandomBf16({m.vocab_size, hidden}, 1.0f, rng);
  file.tensors["model.norm.weight"] = OnesNearBf16(hidden, rng);
  for (uint32_t l = 0; l < m.num_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    const float s = 0.2f;
    file.tensors[p + "input_layernorm.weight"] = OnesNearBf16(hidden, rng);
    file.tensors[p + "post_attention_layernorm.weight"] =
        OnesNearBf16(hidden, rng);
    file.tensors[p + "self_attn.q_proj.weight"] =
        RandomBf16({q, hidden}, s, rng);
    file.tensors[p + "self_attn.k_proj.weight"] =
        RandomBf16({kv, hidden}, s, rng);
    file.tensors[p + "self_attn.v_proj.weight"] =
        RandomBf16({kv, hidden}, s, rng);
    file.tensors[p + "self_attn.o_proj.weight"] =
        RandomBf16({hidden, q}, s, rng);
    file.tensors[p + "mlp.gate_proj.weight"] =
        RandomBf16({m.intermediate_size, hidden}, s, rng);
    file.tensors[p + "mlp.up_proj.weight"] =
        RandomBf16({m.intermediate_size, hidden}, s, rng);
    file.tensors[p + "mlp.down_proj.weight"] =
        RandomBf16({hidden, m.intermediate_size}, s, rng);
  }
  return WriteSafetensors(dir + "/model.safetensors", file);
}

// A KV dump of the model's layout (bf16) with `tokens` random tokens and
// random K and V, in the format of shared/data/kv.
inline absl::Status WriteTinyDump(const std::string& path, const TinyModel& m,
                                  uint32_t tokens, uint32_t seed = 2) {
  KvCache cache;
  cache.layout.num_layers = m.num_layers;
  cache.layout.num_kv_heads = m.num_kv_heads;
  cache.layout.head_dim = m.head_dim;
  cache.layout.dtype = DType::kBF16;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> token(0, m.vocab_size - 1);
  for (uint32_t t = 0; t < tokens; ++t) cache.tokens.push_back(token(rng));
  cache.AllocateTensors();
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto* tensor : {&cache.k, &cache.v})
    for (size_t i = 0; i + 1 < tensor->size(); i += 2) {
      const uint16_t bits = FloatToBf16(normal(rng));
      std::memcpy(&(*tensor)[i], &bits, 2);
    }
  return WriteKvCacheFile(path, cache);
}

}  // namespace seqkv::testing

#endif  // SEQKV_TESTS_MODEL_TINY_MODEL_H_
