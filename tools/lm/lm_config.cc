#include "tools/lm/lm_config.h"

#include "absl/strings/str_cat.h"

namespace seqkv::lm {
namespace {

absl::StatusOr<LmConfig> ForRuntime(absl::StatusOr<HfConfig> config) {
  if (!config.ok()) return config.status();
  if (absl::Status s = CheckRuntimeSupport(*config); !s.ok()) return s;
  config->dtype = DType::kBF16;
  return config;
}

}  // namespace

absl::Status CheckRuntimeSupport(const HfConfig& config) {
  if (config.intermediate_size == 0)
    return absl::InvalidArgumentError(
        "config.json: missing 'intermediate_size' (the MLP width)");
  if (config.rope.style == RopeStyle::kNone)
    return absl::UnimplementedError(
        "config.json: a model without RoPE is not implemented");
  if (config.rope_type != "default")
    return absl::UnimplementedError(absl::StrCat(
        "config.json: rope_type '", config.rope_type, "' is not implemented"));
  if (config.partial_rotary_factor != 1.0)
    return absl::UnimplementedError(
        "config.json: partial_rotary_factor != 1 is not implemented");
  if (config.attention_bias)
    return absl::UnimplementedError(
        "config.json: 'attention_bias' = true is not implemented");
  if (config.mlp_bias)
    return absl::UnimplementedError(
        "config.json: 'mlp_bias' = true is not implemented");
  if (config.hidden_act != "silu")
    return absl::UnimplementedError(
        absl::StrCat("config.json: hidden_act '", config.hidden_act,
                     "' is not implemented (only silu)"));
  return absl::OkStatus();
}

absl::StatusOr<LmConfig> ParseLmConfig(const std::string& json_text) {
  return ForRuntime(ParseHfConfig(json_text));
}

absl::StatusOr<LmConfig> LoadLmConfig(const std::string& model_dir) {
  return ForRuntime(ReadHfConfig(model_dir));
}

}  // namespace seqkv::lm
