#include "model/hf_config.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace seqkv {
namespace {

using nlohmann::json;

// Generous like KvLayout::Validate: rejects garbage, not real models.
constexpr uint64_t kMaxCount = uint64_t{1} << 24;

class Reader {
 public:
  Reader(const json& config, std::string_view source)
      : config_(config), source_(source) {}

  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(source_), ": ", std::string(what)));
  }

  // The field, or nullptr when it is absent or null.
  const json* Find(const char* key) const {
    auto it = config_.find(key);
    return it == config_.end() || it->is_null() ? nullptr : &*it;
  }

  // A positive integer field; `out` is left as it is when the field is
  // absent (the caller tells missing required fields apart).
  absl::Status Count(const char* key, uint32_t& out) const {
    const json* value = Find(key);
    if (value == nullptr) return absl::OkStatus();
    // 4096.0 is what some exporters write for an integer.
    double number = 0;
    if (value->is_number_unsigned())
      number = static_cast<double>(value->get<uint64_t>());
    else if (value->is_number_float())
      number = value->get<double>();
    else
      number = -1;
    if (!(number >= 1 && number <= kMaxCount) || number != std::floor(number))
      return Error(absl::StrCat("'", key, "' must be an integer in [1, ",
                                kMaxCount, "], got ", value->dump()));
    out = static_cast<uint32_t>(number);
    return absl::OkStatus();
  }

  absl::Status Number(const json& value, std::string_view name,
                      double& out) const {
    if (!value.is_number())
      return Error(absl::StrCat("'", std::string(name),
                                "' must be a number, got ", value.dump()));
    out = value.get<double>();
    return absl::OkStatus();
  }

  absl::Status Bool(const char* key, bool& out) const {
    const json* value = Find(key);
    if (value == nullptr) return absl::OkStatus();
    if (!value->is_boolean())
      return Error(absl::StrCat("'", key, "' must be true or false, got ",
                                value->dump()));
    out = value->get<bool>();
    return absl::OkStatus();
  }

  absl::Status String(const char* key, std::string& out) const {
    const json* value = Find(key);
    if (value == nullptr) return absl::OkStatus();
    if (!value->is_string())
      return Error(
          absl::StrCat("'", key, "' must be a string, got ", value->dump()));
    out = value->get<std::string>();
    return absl::OkStatus();
  }

  // eos_token_id may be an int or a list of ints; the first one is used.
  int32_t TokenId(const char* key) const {
    const json* value = Find(key);
    if (value == nullptr) return -1;
    if (value->is_number_integer()) return value->get<int32_t>();
    if (value->is_array() && !value->empty() && (*value)[0].is_number_integer())
      return (*value)[0].get<int32_t>();
    return -1;
  }

 private:
  const json& config_;
  std::string_view source_;
};

absl::Status ReadRope(const Reader& reader, HfConfig& out) {
  // transformers 5 keeps theta and type in rope_parameters; 4.x has
  // rope_theta at the top and the type in rope_scaling.
  const json* parameters = reader.Find("rope_parameters");
  if (parameters != nullptr && !parameters->is_object())
    return reader.Error("'rope_parameters' must be an object");
  const json* scaling = reader.Find("rope_scaling");
  if (scaling != nullptr && !scaling->is_object())
    return reader.Error("'rope_scaling' must be an object");

  const json* nested_theta = nullptr;
  if (parameters != nullptr) {
    auto it = parameters->find("rope_theta");
    if (it != parameters->end() && !it->is_null()) nested_theta = &*it;
  }
  const json* top_theta = reader.Find("rope_theta");
  double theta = out.rope.theta;
  if (nested_theta != nullptr) {
    if (absl::Status s =
            reader.Number(*nested_theta, "rope_parameters.rope_theta", theta);
        !s.ok())
      return s;
  }
  if (top_theta != nullptr) {
    double top = 0;
    if (absl::Status s = reader.Number(*top_theta, "rope_theta", top); !s.ok())
      return s;
    if (nested_theta != nullptr && top != theta)
      return reader.Error(absl::StrCat("'rope_theta' (", top,
                                       ") and 'rope_parameters.rope_theta' (",
                                       theta, ") disagree"));
    theta = top;
  }
  if (!(theta > 1.0) || !std::isfinite(theta))
    return reader.Error(
        absl::StrCat("rope_theta must be a finite number > 1, got ", theta));
  out.rope.theta = theta;

  for (const json* object : {scaling, parameters}) {
    if (object == nullptr) continue;
    for (const char* key : {"type", "rope_type"}) {
      auto it = object->find(key);
      if (it == object->end() || it->is_null()) continue;
      if (!it->is_string())
        return reader.Error(absl::StrCat("rope '", key, "' must be a string"));
      out.rope_type = it->get<std::string>();
    }
  }

  if (const json* factor = reader.Find("partial_rotary_factor")) {
    if (absl::Status s = reader.Number(*factor, "partial_rotary_factor",
                                       out.partial_rotary_factor);
        !s.ok())
      return s;
    if (!(out.partial_rotary_factor > 0 && out.partial_rotary_factor <= 1))
      return reader.Error("'partial_rotary_factor' must be in (0, 1]");
  }

  // Not Hugging Face fields: seqkv's ways for a config to name the pairing.
  bool interleaved = false;
  if (absl::Status s = reader.Bool("rope_interleaved", interleaved); !s.ok())
    return s;
  if (interleaved) out.rope.style = RopeStyle::kInterleaved;
  std::string style;
  if (absl::Status s = reader.String("rope_style", style); !s.ok()) return s;
  if (!style.empty()) {
    RopeStyle named;
    if (style == "none")
      named = RopeStyle::kNone;
    else if (style == "rotate_half")
      named = RopeStyle::kRotateHalf;
    else if (style == "interleaved")
      named = RopeStyle::kInterleaved;
    else
      return reader.Error(absl::StrCat(
          "'rope_style' must be none, rotate_half or interleaved, got '", style,
          "'"));
    if (interleaved && named != RopeStyle::kInterleaved)
      return reader.Error(absl::StrCat(
          "'rope_interleaved' is true but 'rope_style' is '", style, "'"));
    out.rope.style = named;
  }
  return absl::OkStatus();
}

absl::Status ReadDType(const Reader& reader, HfConfig& out) {
  for (const char* key : {"torch_dtype", "dtype"}) {  // the latter wins
    std::string name;
    if (absl::Status s = reader.String(key, name); !s.ok()) return s;
    if (name.empty()) continue;
    if (name == "bfloat16")
      out.dtype = DType::kBF16;
    else if (name == "float16")
      out.dtype = DType::kFP16;
    else if (name == "float32")
      out.dtype = DType::kFP32;
    else
      return reader.Error(absl::StrCat(
          "'", key, "' must be bfloat16, float16 or float32, got '", name,
          "'"));
  }
  return absl::OkStatus();
}

}  // namespace

KvLayout HfConfig::KvCacheLayout() const {
  KvLayout layout;
  layout.num_layers = num_layers;
  layout.num_kv_heads = num_kv_heads;
  layout.head_dim = head_dim;
  layout.dtype = dtype;
  layout.latent = false;
  layout.rope = rope;
  return layout;
}

absl::StatusOr<HfConfig> ParseHfConfig(std::string_view json_text,
                                       std::string_view source) {
  json config = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  const Reader reader(config, source);
  if (config.is_discarded() || !config.is_object())
    return reader.Error("not a JSON object");
  HfConfig out;
  if (absl::Status s = reader.String("model_type", out.model_type); !s.ok())
    return s;

  std::vector<std::string> missing;
  for (auto [key, field] : {std::pair{"num_hidden_layers", &out.num_layers},
                            std::pair{"hidden_size", &out.hidden_size},
                            std::pair{"num_attention_heads", &out.num_heads},
                            std::pair{"vocab_size", &out.vocab_size}}) {
    if (absl::Status s = reader.Count(key, *field); !s.ok()) return s;
    if (*field == 0) missing.push_back(absl::StrCat("'", key, "'"));
  }
  if (!missing.empty())
    return reader.Error(absl::StrCat("missing ", absl::StrJoin(missing, ", ")));
  for (auto [key, field] :
       {std::pair{"num_key_value_heads", &out.num_kv_heads},
        std::pair{"head_dim", &out.head_dim},
        std::pair{"intermediate_size", &out.intermediate_size},
        std::pair{"max_position_embeddings", &out.max_position_embeddings}}) {
    if (absl::Status s = reader.Count(key, *field); !s.ok()) return s;
  }
  if (out.num_kv_heads == 0) out.num_kv_heads = out.num_heads;
  if (out.num_heads % out.num_kv_heads != 0)
    return reader.Error(absl::StrCat(
        "num_attention_heads (", out.num_heads,
        ") is not a multiple of num_key_value_heads (", out.num_kv_heads, ")"));
  if (out.head_dim == 0) {
    if (out.hidden_size % out.num_heads != 0)
      return reader.Error(absl::StrCat(
          "no 'head_dim', and hidden_size (", out.hidden_size,
          ") is not a multiple of num_attention_heads (", out.num_heads, ")"));
    out.head_dim = out.hidden_size / out.num_heads;
  }

  if (absl::Status s = ReadRope(reader, out); !s.ok()) return s;
  if (out.rope.style != RopeStyle::kNone && out.head_dim % 2 != 0)
    return reader.Error(
        absl::StrCat("head_dim (", out.head_dim, ") must be even for RoPE"));
  if (absl::Status s = ReadDType(reader, out); !s.ok()) return s;

  if (const json* eps = reader.Find("rms_norm_eps")) {
    if (absl::Status s = reader.Number(*eps, "rms_norm_eps", out.rms_norm_eps);
        !s.ok())
      return s;
    if (!(out.rms_norm_eps > 0))
      return reader.Error("'rms_norm_eps' must be positive");
  }
  for (auto [key, field] :
       {std::pair{"tie_word_embeddings", &out.tie_word_embeddings},
        std::pair{"attention_bias", &out.attention_bias},
        std::pair{"mlp_bias", &out.mlp_bias}}) {
    if (absl::Status s = reader.Bool(key, *field); !s.ok()) return s;
  }
  if (absl::Status s = reader.String("hidden_act", out.hidden_act); !s.ok())
    return s;
  out.bos_token_id = reader.TokenId("bos_token_id");
  out.eos_token_id = reader.TokenId("eos_token_id");
  if (absl::Status s = out.KvCacheLayout().Validate(); !s.ok())
    return reader.Error(std::string(s.message()));
  return out;
}

absl::StatusOr<HfConfig> ReadHfConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return ParseHfConfig(text.str(), path);
}

}  // namespace seqkv
