#include "model/model_state_builder.h"

#include <cmath>
#include <fstream>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/float_bits.h"
#include "codec/model_state.h"
#include "model/bf16_ops.h"
#include "model/hf_config.h"
#include "model/safetensors.h"
#include "nlohmann/json.hpp"

namespace seqkv {
namespace {

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The config as far as the layer-0 table needs it: a Llama-family model
// whose layer 0 is RMSNorm then K and V projections (with optional biases and
// a K norm).
absl::StatusOr<HfConfig> ReadTableConfig(const std::string& model_dir) {
  absl::StatusOr<HfConfig> config = ReadHfConfig(model_dir);
  if (!config.ok()) return config.status();
  static const std::set<std::string> kSupported = {"llama", "mistral", "qwen2",
                                                   "qwen3"};
  if (!kSupported.contains(config->model_type))
    return absl::InvalidArgumentError(absl::StrCat(
        "config.json: model_type '", config->model_type,
        "' is not supported for the layer-0 table (llama, mistral, qwen2, "
        "qwen3 are)"));
  return config;
}

absl::Status CheckAgainstLayout(const HfConfig& config,
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
      std::fabs(config.rope.theta - layout.rope.theta) >
          1e-9 * layout.rope.theta)
    return mismatch("rope_theta", layout.rope.theta, config.rope.theta);
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

}  // namespace

absl::StatusOr<std::map<std::string, std::string>> BuildCodecStateFromModelDir(
    const std::string& model_dir, const KvLayout& layout) {
  if (absl::Status s = layout.Validate(); !s.ok()) return s;
  absl::StatusOr<HfConfig> config = ReadTableConfig(model_dir);
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

  const float eps = static_cast<float>(config->rms_norm_eps);
  std::vector<uint16_t> table_k(vocab * kv_width), table_v(vocab * kv_width);
  std::vector<float> normed(hidden), k_row(kv_width);
  for (int64_t token = 0; token < vocab; ++token) {
    RmsNormBf16({&embedding->values[token * hidden], size_t(hidden)},
                norm->values, eps, normed);
    for (int64_t o = 0; o < kv_width; ++o) {
      k_row[o] = RoundBf16(
          Dot(&w_k->values[o * hidden], normed.data(), hidden) + bias_k[o]);
      table_v[token * kv_width + o] = FloatToBf16(
          Dot(&w_v->values[o * hidden], normed.data(), hidden) + bias_v[o]);
    }
    if (k_norm) {
      for (uint32_t h = 0; h < layout.num_kv_heads; ++h) {
        std::span<float> head(&k_row[size_t{h} * layout.head_dim],
                              layout.head_dim);
        RmsNormBf16(head, *k_norm, eps, head);
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
