#include "tools/lm/lm_config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace seqkv::lm {
namespace {

using nlohmann::json;

absl::Status ReadUint(const json& config, const char* key, bool required,
                      uint32_t& out) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) {
    if (required)
      return absl::InvalidArgumentError(
          absl::StrCat("config.json: missing '", key, "'"));
    return absl::OkStatus();
  }
  if (!it->is_number_unsigned() || it->get<uint64_t>() == 0 ||
      it->get<uint64_t>() > (1u << 24))
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: '", key, "' must be a positive integer"));
  out = it->get<uint32_t>();
  return absl::OkStatus();
}

// eos_token_id may be an int or a list of ints; the first one is used.
int32_t ReadTokenId(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return -1;
  if (it->is_number_integer()) return it->get<int32_t>();
  if (it->is_array() && !it->empty() && (*it)[0].is_number_integer())
    return (*it)[0].get<int32_t>();
  return -1;
}

}  // namespace

KvLayout LmConfig::KvCacheLayout() const {
  KvLayout layout;
  layout.num_layers = num_layers;
  layout.num_kv_heads = num_kv_heads;
  layout.head_dim = head_dim;
  layout.dtype = DType::kBF16;
  layout.latent = false;
  layout.rope.style = rope_style;
  layout.rope.theta = rope_theta;
  layout.rope.rotary_dim = 0;
  return layout;
}

absl::StatusOr<LmConfig> ParseLmConfig(const std::string& json_text) {
  json config = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object())
    return absl::InvalidArgumentError("config.json is not a JSON object");
  LmConfig out;
  if (auto it = config.find("model_type");
      it != config.end() && it->is_string())
    out.model_type = it->get<std::string>();
  absl::Status status;
  for (auto [key, field] :
       {std::pair{"hidden_size", &out.hidden_size},
        std::pair{"num_hidden_layers", &out.num_layers},
        std::pair{"num_attention_heads", &out.num_heads},
        std::pair{"intermediate_size", &out.intermediate_size},
        std::pair{"vocab_size", &out.vocab_size}}) {
    if (status = ReadUint(config, key, true, *field); !status.ok())
      return status;
  }
  out.num_kv_heads = out.num_heads;  // no GQA unless stated
  if (status = ReadUint(config, "num_key_value_heads", false, out.num_kv_heads);
      !status.ok())
    return status;
  if (out.hidden_size % out.num_heads != 0 && !config.contains("head_dim"))
    return absl::InvalidArgumentError(
        "config.json: hidden_size is not a multiple of num_attention_heads");
  out.head_dim = out.hidden_size / out.num_heads;
  if (status = ReadUint(config, "head_dim", false, out.head_dim); !status.ok())
    return status;
  if (out.num_heads % out.num_kv_heads != 0)
    return absl::InvalidArgumentError(
        "config.json: num_attention_heads is not a multiple of "
        "num_key_value_heads");
  if (out.head_dim % 2 != 0)
    return absl::InvalidArgumentError("config.json: head_dim must be even");
  if (status = ReadUint(config, "max_position_embeddings", false,
                        out.max_position_embeddings);
      !status.ok())
    return status;

  // RoPE: transformers 5 puts it in rope_parameters, 4.x in rope_theta and
  // rope_scaling. Only the plain (unscaled) form is implemented.
  const json* rope = nullptr;
  if (auto it = config.find("rope_parameters");
      it != config.end() && it->is_object())
    rope = &*it;
  else if (auto it = config.find("rope_scaling");
           it != config.end() && it->is_object())
    rope = &*it;
  if (rope != nullptr) {
    std::string type = "default";
    for (const char* key : {"rope_type", "type"})
      if (auto it = rope->find(key); it != rope->end() && it->is_string())
        type = it->get<std::string>();
    if (type != "default")
      return absl::UnimplementedError(absl::StrCat(
          "config.json: rope_type '", type, "' is not implemented"));
    if (auto it = rope->find("rope_theta"); it != rope->end()) {
      if (!it->is_number())
        return absl::InvalidArgumentError(
            "config.json: rope_parameters.rope_theta must be a number");
      out.rope_theta = it->get<double>();
    }
  }
  if (auto it = config.find("rope_theta"); it != config.end()) {
    if (!it->is_number())
      return absl::InvalidArgumentError(
          "config.json: rope_theta must be a number");
    out.rope_theta = it->get<double>();
  }
  if (!(out.rope_theta > 1.0))
    return absl::InvalidArgumentError("config.json: rope_theta must be > 1");
  if (auto it = config.find("partial_rotary_factor");
      it != config.end() && it->is_number() && it->get<double>() != 1.0)
    return absl::UnimplementedError(
        "config.json: partial_rotary_factor != 1 is not implemented");
  // Not an HF Llama field; lets a config ask for GPT-J style pairs.
  if (auto it = config.find("rope_interleaved");
      it != config.end() && it->is_boolean() && it->get<bool>())
    out.rope_style = RopeStyle::kInterleaved;

  if (auto it = config.find("rms_norm_eps"); it != config.end()) {
    if (!it->is_number() || it->get<double>() <= 0)
      return absl::InvalidArgumentError(
          "config.json: rms_norm_eps must be a positive number");
    out.rms_norm_eps = it->get<double>();
  }
  if (auto it = config.find("tie_word_embeddings");
      it != config.end() && it->is_boolean())
    out.tie_word_embeddings = it->get<bool>();
  for (const char* key : {"attention_bias", "mlp_bias"})
    if (auto it = config.find(key);
        it != config.end() && it->is_boolean() && it->get<bool>())
      return absl::UnimplementedError(
          absl::StrCat("config.json: '", key, "' = true is not implemented"));
  if (auto it = config.find("hidden_act");
      it != config.end() && it->is_string() && it->get<std::string>() != "silu")
    return absl::UnimplementedError(
        absl::StrCat("config.json: hidden_act '", it->get<std::string>(),
                     "' is not implemented (only silu)"));
  out.bos_token_id = ReadTokenId(config, "bos_token_id");
  out.eos_token_id = ReadTokenId(config, "eos_token_id");
  return out;
}

absl::StatusOr<LmConfig> LoadLmConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream text;
  text << in.rdbuf();
  return ParseLmConfig(text.str());
}

}  // namespace seqkv::lm
