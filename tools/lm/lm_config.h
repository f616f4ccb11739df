// The shape of a Llama-style decoder, read from a Hugging Face config.json.
// Every number the runtime uses comes from here, never from constants.
#ifndef SEQKV_TOOLS_LM_LM_CONFIG_H_
#define SEQKV_TOOLS_LM_LM_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "codec/kv_layout.h"

namespace seqkv::lm {

struct LmConfig {
  std::string model_type;  // "llama", "mistral", ...
  uint32_t hidden_size = 0;
  uint32_t num_layers = 0;
  uint32_t num_heads = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t intermediate_size = 0;
  uint32_t vocab_size = 0;
  uint32_t max_position_embeddings = 0;
  double rope_theta = 10000.0;
  // HF Llama rotates (x[i], x[i + d/2]); GPT-J style models rotate
  // (x[2i], x[2i + 1]). The KV dumps and seqkv's layouts name it.
  RopeStyle rope_style = RopeStyle::kRotateHalf;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  int32_t bos_token_id = -1;
  int32_t eos_token_id = -1;

  // The KV-cache layout this model produces: bf16, RoPE from the config.
  KvLayout KvCacheLayout() const;
};

// Parses config.json text. Fields the runtime cannot honour (biases, other
// activations, RoPE scaling) give UNIMPLEMENTED naming the field.
absl::StatusOr<LmConfig> ParseLmConfig(const std::string& json_text);
// Reads <model_dir>/config.json.
absl::StatusOr<LmConfig> LoadLmConfig(const std::string& model_dir);

}  // namespace seqkv::lm

#endif  // SEQKV_TOOLS_LM_LM_CONFIG_H_
