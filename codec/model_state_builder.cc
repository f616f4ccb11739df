#include "codec/model_state_builder.h"

#include <cmath>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/safetensors.h"
#include "codec/float_bits.h"
#include "codec/model_state.h"
#include "nlohmann/json.hpp"

namespace seqkv {
namespace {

struct ModelConfig {
  std::string model_type;
  uint32_t num_layers = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t hidden_size = 0;
  uint32_t vocab_size = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
};

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<uint32_t> GetCount(const nlohmann::json& config,
                                  const char* key) {
  auto it = config.find(key);
  if (it == config.end() || !it->is_number_unsigned() ||
      it->get<uint64_t>() == 0 || it->get<uint64_t>() > (1u << 24))
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: '", key, "' must be a positive integer"));
  return it->get<uint32_t>();
}

absl::StatusOr<ModelConfig> ReadConfig(const std::string& model_dir) {
  absl::StatusOr<std::string> text = ReadText(model_dir + "/config.json");
  if (!text.ok()) return text.status();
  nlohmann::json config = nlohmann::json::parse(*text, nullptr, false);
  if (config.is_discarded() || !config.is_object())
    return absl::InvalidArgumentError("config.json is not a JSON object");
  ModelConfig out;
  out.model_type = config.value("model_type", "");
  static const std::set<std::string> kSupported = {"llama", "mistral", "qwen2",
                                                   "qwen3"};
  if (!kSupported.contains(out.model_type))
    return absl::InvalidArgumentError(absl::StrCat(
        "config.json: model_type '", out.model_type,
        "' is not supported for the layer-0 table (llama, mistral, qwen2, "
        "qwen3 are)"));
  absl::StatusOr<uint32_t> layers = GetCount(config, "num_hidden_layers");
  absl::StatusOr<uint32_t> hidden = GetCount(config, "hidden_size");
  absl::StatusOr<uint32_t> heads = GetCount(config, "num_attention_heads");
  absl::StatusOr<uint32_t> vocab = GetCount(config, "vocab_size");
  for (const auto* s : {&layers, &hidden, &heads, &vocab})
    if (!s->ok()) return s->status();
  out.num_layers = *layers;
  out.hidden_size = *hidden;
  out.vocab_size = *vocab;
  out.num_kv_heads = *heads;
  if (config.contains("num_key_value_heads")) {
    absl::StatusOr<uint32_t> kv_heads = GetCount(config, "num_key_value_heads");
    if (!kv_heads.ok()) return kv_heads.status();
    out.num_kv_heads = *kv_heads;
  }
  out.head_dim = *hidden / *heads;
  if (config.contains("head_dim") && !config["head_dim"].is_null()) {
    absl::StatusOr<uint32_t> head_dim = GetCount(config, "head_dim");
    if (!head_dim.ok()) return head_dim.status();
    out.head_dim = *head_dim;
  }
  if (auto it = config.find("rms_norm_eps"); it != config.end()) {
    if (!it->is_number() || !(it->get<double>() >= 0))
      return absl::InvalidArgumentError("config.json: bad 'rms_norm_eps'");
    out.rms_norm_eps = it->get<double>();
  }
  // transformers 5 keeps theta in rope_parameters, older versions at the top.
  const nlohmann::json* theta = nullptr;
  if (auto it = config.find("rope_parameters");
      it != config.end() && it->is_object() && it->contains("rope_theta"))
    theta = &(*it)["rope_theta"];
  else if (auto top = config.find("rope_theta"); top != config.end())
    theta = &*top;
  if (theta != nullptr) {
    if (!theta->is_number() || !(theta->get<double>() > 0))
      return absl::InvalidArgumentError("config.json: bad 'rope_theta'");
    out.rope_theta = theta->get<double>();
  }
  return out;
}

absl::Status CheckAgainstLayout(const ModelConfig& config,
                                const KvLayout& layout) {
  auto mismatch = [](const char* field, double want, double got) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.json ", field, " is ", got, " but the layout says ", want));
  };
  if (layout.latent)
    return absl::InvalidArgumentError(
        "layer-0 tables need a K/V layout, not a latent one");
  if (config.num_layers != layout.num_layers)
    return mismatch("num_hidden_layers", layout.num_layers, config.num_layers);
  if (config.num_kv_heads != layout.num_kv_heads)
    return mismatch("num_key_value_heads", layout.num_kv_heads,
                    config.num_kv_heads);
  if (config.head_dim != layout.head_dim)
    return mismatch("head_dim", layout.head_dim, config.head_dim);
  if (layout.rope.style != RopeStyle::kNone &&
      std::fabs(config.rope_theta - layout.rope.theta) >
          1e-9 * layout.rope.theta)
    return mismatch("rope_theta", layout.rope.theta, config.rope_theta);
  return absl::OkStatus();
}

// Which file holds each tensor: the sharded index, or one model.safetensors.
absl::StatusOr<std::map<std::string, std::string>> WeightFiles(
    const std::string& model_dir) {
  std::map<std::string, std::string> files;
  absl::StatusOr<std::string> index =
      ReadText(model_dir + "/model.safetensors.index.json");
  if (!index.ok()) return files;  // empty: everything in model.safetensors
  nlohmann::json json = nlohmann::json::parse(*index, nullptr, false);
  if (json.is_discarded() || !json.contains("weight_map") ||
      !json["weight_map"].is_object())
    return absl::InvalidArgumentError(
        "model.safetensors.index.json has no weight_map object");
  for (const auto& [name, file] : json["weight_map"].items()) {
    if (!file.is_string() ||
        file.get<std::string>().find('/') != std::string::npos)
      return absl::InvalidArgumentError(
          absl::StrCat("model.safetensors.index.json: bad file for ", name));
    files[name] = file.get<std::string>();
  }
  return files;
}

// Reads the named tensors as float, each with its shape. Names missing from
// the model are left out when `optional`.
struct FloatTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

absl::StatusOr<FloatTensor> ToFloat(const Tensor& tensor,
                                    const std::string& name) {
  FloatTensor out;
  out.shape = tensor.shape;
  const size_t n = tensor.num_elements();
  out.values.resize(n);
  if (tensor.dtype == "BF16") {
    auto bits = tensor.as<uint16_t>();
    for (size_t i = 0; i < n; ++i) out.values[i] = Bf16ToFloat(bits[i]);
  } else if (tensor.dtype == "F16") {
    auto bits = tensor.as<uint16_t>();
    for (size_t i = 0; i < n; ++i) out.values[i] = Fp16ToFloat(bits[i]);
  } else if (tensor.dtype == "F32") {
    auto values = tensor.as<float>();
    out.values.assign(values.begin(), values.end());
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("weight ", name, " has unsupported dtype ", tensor.dtype));
  }
  return out;
}

class WeightReader {
 public:
  WeightReader(std::string model_dir, std::map<std::string, std::string> files)
      : model_dir_(std::move(model_dir)), files_(std::move(files)) {}

  bool Has(const std::string& name) const {
    return files_.empty() || files_.contains(name);
  }
  absl::StatusOr<FloatTensor> Read(const std::string& name) const {
    std::string file = "model.safetensors";
    if (!files_.empty()) {
      auto it = files_.find(name);
      if (it == files_.end())
        return absl::NotFoundError(
            absl::StrCat("the model has no weight named ", name));
      file = it->second;
    }
    const std::string names[] = {name};
    absl::StatusOr<SafetensorsFile> read =
        ReadSafetensorsTensors(model_dir_ + "/" + file, names);
    if (!read.ok()) return read.status();
    return ToFloat(read->tensors.at(name), name);
  }

 private:
  std::string model_dir_;
  std::map<std::string, std::string> files_;
};

absl::Status CheckShape(const FloatTensor& tensor, const std::string& name,
                        std::vector<int64_t> want) {
  if (tensor.shape == want) return absl::OkStatus();
  std::string got, expected;
  for (int64_t d : tensor.shape) absl::StrAppend(&got, d, " ");
  for (int64_t d : want) absl::StrAppend(&expected, d, " ");
  return absl::InvalidArgumentError(absl::StrCat(
      "weight ", name, " has shape [ ", got, "], expected [ ", expected, "]"));
}

inline float RoundBf16(float x) { return Bf16ToFloat(FloatToBf16(x)); }

float Dot(const float* a, const float* b, size_t n) {
  // Eight partial sums: vectorizes without reassociation flags.
  float partial[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) partial[j] += a[i + j] * b[i + j];
  float sum = 0;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (float p : partial) sum += p;
  return sum;
}

// HF RMSNorm in a bf16 model: normalize in float, round to the activation
// dtype, then scale by the weight (another rounding).
void RmsNorm(const float* x, const float* weight, size_t n, double eps,
             float* out) {
  float square_sum = 0;
  for (size_t i = 0; i < n; ++i) square_sum += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(square_sum / static_cast<float>(n) +
                                       static_cast<float>(eps));
  for (size_t i = 0; i < n; ++i)
    out[i] = RoundBf16(weight[i] * RoundBf16(x[i] * scale));
}

}  // namespace

absl::StatusOr<std::map<std::string, std::string>> BuildCodecStateFromModelDir(
    const std::string& model_dir, const KvLayout& layout) {
  if (absl::Status s = layout.Validate(); !s.ok()) return s;
  absl::StatusOr<ModelConfig> config = ReadConfig(model_dir);
  if (!config.ok()) return config.status();
  if (absl::Status s = CheckAgainstLayout(*config, layout); !s.ok()) return s;
  absl::StatusOr<std::map<std::string, std::string>> files =
      WeightFiles(model_dir);
  if (!files.ok()) return files.status();
  WeightReader weights(model_dir, *std::move(files));

  const int64_t hidden = config->hidden_size;
  const int64_t vocab = config->vocab_size;
  const int64_t kv_width = int64_t{layout.num_kv_heads} * layout.head_dim;
  const std::string prefix = "model.layers.0.";
  absl::StatusOr<FloatTensor> embedding =
      weights.Read("model.embed_tokens.weight");
  if (!embedding.ok()) return embedding.status();
  absl::StatusOr<FloatTensor> norm =
      weights.Read(prefix + "input_layernorm.weight");
  if (!norm.ok()) return norm.status();
  absl::StatusOr<FloatTensor> w_k =
      weights.Read(prefix + "self_attn.k_proj.weight");
  if (!w_k.ok()) return w_k.status();
  absl::StatusOr<FloatTensor> w_v =
      weights.Read(prefix + "self_attn.v_proj.weight");
  if (!w_v.ok()) return w_v.status();
  for (absl::Status s :
       {CheckShape(*embedding, "model.embed_tokens.weight", {vocab, hidden}),
        CheckShape(*norm, "input_layernorm.weight", {hidden}),
        CheckShape(*w_k, "k_proj.weight", {kv_width, hidden}),
        CheckShape(*w_v, "v_proj.weight", {kv_width, hidden})})
    if (!s.ok()) return s;
  // Optional parts: projection biases (Qwen2) and a per-head K norm (Qwen3).
  std::vector<float> bias_k(kv_width, 0.0f), bias_v(kv_width, 0.0f);
  for (auto [name, bias] : {std::pair{"self_attn.k_proj.bias", &bias_k},
                            std::pair{"self_attn.v_proj.bias", &bias_v}}) {
    if (!weights.Has(prefix + name)) continue;
    absl::StatusOr<FloatTensor> read = weights.Read(prefix + name);
    if (read.ok()) {
      if (absl::Status s = CheckShape(*read, name, {kv_width}); !s.ok())
        return s;
      *bias = read->values;
    } else if (!absl::IsNotFound(read.status())) {
      return read.status();
    }
  }
  std::optional<std::vector<float>> k_norm;
  if (weights.Has(prefix + "self_attn.k_norm.weight")) {
    absl::StatusOr<FloatTensor> read =
        weights.Read(prefix + "self_attn.k_norm.weight");
    if (read.ok()) {
      if (absl::Status s =
              CheckShape(*read, "k_norm.weight", {layout.head_dim});
          !s.ok())
        return s;
      k_norm = read->values;
    } else if (!absl::IsNotFound(read.status())) {
      return read.status();
    }
  }

  std::vector<uint16_t> table_k(vocab * kv_width), table_v(vocab * kv_width);
  std::vector<float> normed(hidden), k_row(kv_width);
  for (int64_t token = 0; token < vocab; ++token) {
    RmsNorm(&embedding->values[token * hidden], norm->values.data(), hidden,
            config->rms_norm_eps, normed.data());
    for (int64_t o = 0; o < kv_width; ++o) {
      k_row[o] = RoundBf16(
          Dot(&w_k->values[o * hidden], normed.data(), hidden) + bias_k[o]);
      table_v[token * kv_width + o] = FloatToBf16(
          Dot(&w_v->values[o * hidden], normed.data(), hidden) + bias_v[o]);
    }
    if (k_norm) {
      for (uint32_t h = 0; h < layout.num_kv_heads; ++h) {
        float* head = &k_row[size_t{h} * layout.head_dim];
        RmsNorm(head, k_norm->data(), layout.head_dim, config->rms_norm_eps,
                head);
      }
    }
    for (int64_t o = 0; o < kv_width; ++o)
      table_k[token * kv_width + o] = FloatToBf16(k_row[o]);
  }
  std::map<std::string, std::string> state;
  state[std::string(kLayer0TableKey)] =
      Layer0Table::Serialize(static_cast<uint32_t>(vocab), layout.num_kv_heads,
                             layout.head_dim, table_k, table_v);
  return state;
}

absl::StatusOr<std::string> LoadProfile(const std::string& path,
                                        const KvLayout& layout) {
  absl::StatusOr<std::string> text = ReadText(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<FidelityProfile> profile =
      ParseFidelityProfile(*text, &layout);
  if (!profile.ok())
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", profile.status().message()));
  return *std::move(text);
}

}  // namespace seqkv
