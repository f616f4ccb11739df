// The shape of a Llama-style decoder as a Hugging Face config.json states
// it: the one reader behind `seqkv model register --model_dir`, codec-bench,
// the layer-0 table builder and the reference runtime (tools/lm), so that all
// of them see the same layout, RoPE and norm epsilon for the same directory.
//
// Every number comes from the file; where a field may be left out, the
// default is the one transformers' LlamaConfig applies (listed per field).
// Reading is a pure function of the text; HfConfig is a plain value.
#ifndef SEQKV_MODEL_HF_CONFIG_H_
#define SEQKV_MODEL_HF_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "codec/kv_layout.h"

namespace seqkv {

struct HfConfig {
  std::string model_type;  // "llama", "mistral", "qwen2", ...; "" if absent

  // Required, positive.
  uint32_t num_layers = 0;   // num_hidden_layers
  uint32_t hidden_size = 0;  // hidden_size
  uint32_t num_heads = 0;    // num_attention_heads
  uint32_t vocab_size = 0;   // vocab_size
  // num_key_value_heads; default num_heads (no grouped-query attention).
  uint32_t num_kv_heads = 0;
  // head_dim; default (and when null) hidden_size / num_heads, which must then
  // divide evenly.
  uint32_t head_dim = 0;
  // Optional; 0 when absent (the runtime needs it, the layout does not).
  uint32_t intermediate_size = 0;
  uint32_t max_position_embeddings = 0;

  // RoPE. theta: rope_parameters.rope_theta (transformers 5) or rope_theta
  // (4.x); both present must agree; default 10000. style: rotate_half (HF
  // Llama) unless the seqkv extensions "rope_style" ("none", "rotate_half",
  // "interleaved") or "rope_interleaved": true say otherwise. rotary_dim is
  // 0 (all of head_dim).
  RopeConfig rope = {RopeStyle::kRotateHalf, 10000.0, 0};
  // rope_parameters.rope_type or rope_scaling.rope_type/type; "default" when
  // there is none. Scaled variants ("llama3", "yarn", ...) are recorded, not
  // applied: the KV layout has no place for them.
  std::string rope_type = "default";
  double partial_rotary_factor = 1.0;  // default 1

  // dtype (transformers 5) or torch_dtype: bfloat16, float16 or float32;
  // default bf16.
  DType dtype = DType::kBF16;
  double rms_norm_eps = 1e-6;  // default 1e-6; must be positive
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
  std::string hidden_act = "silu";
  int32_t bos_token_id = -1;  // -1 when absent; the first of a list
  int32_t eos_token_id = -1;

  // The KV cache this model produces: layers, KV heads, head_dim, dtype and
  // RoPE from the config, not latent.
  KvLayout KvCacheLayout() const;
};

// Parses config.json text. A missing required field or a field of the wrong
// type or range is INVALID_ARGUMENT naming the field; `source` (e.g. the
// file's path) prefixes every message.
absl::StatusOr<HfConfig> ParseHfConfig(std::string_view json_text,
                                       std::string_view source = "config.json");

// Reads <model_dir>/config.json: NOT_FOUND when it cannot be read, else as
// ParseHfConfig with the path as source.
absl::StatusOr<HfConfig> ReadHfConfig(const std::string& model_dir);

}  // namespace seqkv

#endif  // SEQKV_MODEL_HF_CONFIG_H_
