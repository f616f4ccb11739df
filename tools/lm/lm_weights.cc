#include "tools/lm/lm_weights.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "codec/float_bits.h"
#include "model/bf16_ops.h"
#include "model/safetensors.h"
#include "nlohmann/json.hpp"

namespace seqkv::lm {
namespace {

// Shard file names holding the weights, from the index if there is one.
absl::StatusOr<std::vector<std::string>> WeightFiles(
    const std::string& model_dir) {
  const std::string index_path = model_dir + "/model.safetensors.index.json";
  if (!std::filesystem::exists(index_path)) {
    const std::string single = model_dir + "/model.safetensors";
    if (!std::filesystem::exists(single))
      return absl::NotFoundError(
          absl::StrCat(model_dir,
                       ": neither model.safetensors.index.json nor "
                       "model.safetensors"));
    return std::vector<std::string>{single};
  }
  std::ifstream in(index_path);
  std::stringstream text;
  text << in.rdbuf();
  auto index = nlohmann::json::parse(text.str(), nullptr, false);
  if (index.is_discarded() || !index.is_object() ||
      !index.contains("weight_map") || !index["weight_map"].is_object())
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": no 'weight_map' object"));
  std::set<std::string> shards;
  for (const auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string() ||
        file.get<std::string>().find('/') != std::string::npos)
      return absl::InvalidArgumentError(absl::StrCat(
          index_path, ": weight_map entry '", name, "' is not a file name"));
    shards.insert(file.get<std::string>());
  }
  std::vector<std::string> paths;
  for (const std::string& shard : shards)
    paths.push_back(model_dir + "/" + shard);
  return paths;
}

class TensorSource {
 public:
  absl::Status AddFile(const std::string& path) {
    auto file = ReadSafetensors(path);
    if (!file.ok())
      return absl::Status(file.status().code(),
                          absl::StrCat(path, ": ", file.status().message()));
    for (auto& [name, tensor] : file->tensors)
      tensors_[name] = std::move(tensor);
    return absl::OkStatus();
  }

  bool Has(const std::string& name) const { return tensors_.contains(name); }

  // Copies the named tensor into `out` as bf16 values, checking its shape.
  absl::Status Take(const std::string& name, std::vector<int64_t> shape,
                    std::vector<float>& out) {
    auto it = tensors_.find(name);
    if (it == tensors_.end())
      return absl::NotFoundError(
          absl::StrCat("weights: no tensor '", name, "'"));
    const Tensor& tensor = it->second;
    if (tensor.shape != shape)
      return absl::InvalidArgumentError(absl::StrCat(
          "weights: '", name, "' has shape [", absl::StrJoin(tensor.shape, ","),
          "], config implies [", absl::StrJoin(shape, ","), "]"));
    const size_t count = tensor.num_elements();
    out.resize(count);
    if (tensor.dtype == "BF16") {
      Bf16BytesToFloats(tensor.data.data(), out);
    } else if (tensor.dtype == "F16") {
      auto bits = tensor.as<uint16_t>();
      for (size_t i = 0; i < count; ++i)
        out[i] = RoundBf16(Fp16ToFloat(bits[i]));
    } else if (tensor.dtype == "F32") {
      // The runtime reproduces a bf16 forward pass, so weights are bf16.
      auto values = tensor.as<float>();
      for (size_t i = 0; i < count; ++i) out[i] = RoundBf16(values[i]);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("weights: '", name, "' has dtype ", tensor.dtype,
                       " (expected BF16, F16 or F32)"));
    }
    tensors_.erase(it);  // free the bytes as we go
    return absl::OkStatus();
  }

 private:
  std::map<std::string, Tensor> tensors_;
};

}  // namespace

absl::StatusOr<LmWeights> LoadLmWeights(const std::string& model_dir,
                                        const LmConfig& config) {
  auto files = WeightFiles(model_dir);
  if (!files.ok()) return files.status();
  TensorSource source;
  for (const std::string& path : *files)
    if (auto status = source.AddFile(path); !status.ok()) return status;

  const int64_t hidden = config.hidden_size;
  const int64_t q_dim = int64_t{config.num_heads} * config.head_dim;
  const int64_t kv_dim = int64_t{config.num_kv_heads} * config.head_dim;
  const int64_t inter = config.intermediate_size;
  LmWeights weights;
  absl::Status status;
  if (status = source.Take("model.embed_tokens.weight",
                           {config.vocab_size, hidden}, weights.embed);
      !status.ok())
    return status;
  if (status = source.Take("model.norm.weight", {hidden}, weights.final_norm);
      !status.ok())
    return status;
  if (!config.tie_word_embeddings || source.Has("lm_head.weight")) {
    if (status = source.Take("lm_head.weight", {config.vocab_size, hidden},
                             weights.lm_head);
        !status.ok())
      return status;
  }
  weights.layers.resize(config.num_layers);
  for (uint32_t l = 0; l < config.num_layers; ++l) {
    LayerWeights& layer = weights.layers[l];
    const std::string p = absl::StrCat("model.layers.", l, ".");
    const struct {
      std::string name;
      std::vector<int64_t> shape;
      std::vector<float>* out;
    } entries[] = {
        {p + "input_layernorm.weight", {hidden}, &layer.input_norm},
        {p + "self_attn.q_proj.weight", {q_dim, hidden}, &layer.q_proj},
        {p + "self_attn.k_proj.weight", {kv_dim, hidden}, &layer.k_proj},
        {p + "self_attn.v_proj.weight", {kv_dim, hidden}, &layer.v_proj},
        {p + "self_attn.o_proj.weight", {hidden, q_dim}, &layer.o_proj},
        {p + "post_attention_layernorm.weight", {hidden}, &layer.post_norm},
        {p + "mlp.gate_proj.weight", {inter, hidden}, &layer.gate_proj},
        {p + "mlp.up_proj.weight", {inter, hidden}, &layer.up_proj},
        {p + "mlp.down_proj.weight", {hidden, inter}, &layer.down_proj},
    };
    for (const auto& entry : entries)
      if (status = source.Take(entry.name, entry.shape, *entry.out);
          !status.ok())
        return status;
  }
  return weights;
}

}  // namespace seqkv::lm
