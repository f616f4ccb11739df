// Loads the weights of a Llama-style model from Hugging Face safetensors
// (one file or shards listed in model.safetensors.index.json) as bf16 values
// held in floats, checking every shape against the config.
#ifndef SEQKV_TOOLS_LM_LM_WEIGHTS_H_
#define SEQKV_TOOLS_LM_LM_WEIGHTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/lm/lm_config.h"

namespace seqkv::lm {

// Linear weights are [out][in] row-major, as in torch.nn.Linear.
struct LayerWeights {
  std::vector<float> input_norm;  // [hidden]
  std::vector<float> q_proj;      // [heads * head_dim][hidden]
  std::vector<float> k_proj;      // [kv_heads * head_dim][hidden]
  std::vector<float> v_proj;      // [kv_heads * head_dim][hidden]
  std::vector<float> o_proj;      // [hidden][heads * head_dim]
  std::vector<float> post_norm;   // [hidden]
  std::vector<float> gate_proj;   // [intermediate][hidden]
  std::vector<float> up_proj;     // [intermediate][hidden]
  std::vector<float> down_proj;   // [hidden][intermediate]
};

struct LmWeights {
  std::vector<float> embed;       // [vocab][hidden]
  std::vector<float> lm_head;     // [vocab][hidden]; empty when tied
  std::vector<float> final_norm;  // [hidden]
  std::vector<LayerWeights> layers;

  const std::vector<float>& output_embedding() const {
    return lm_head.empty() ? embed : lm_head;
  }
};

absl::StatusOr<LmWeights> LoadLmWeights(const std::string& model_dir,
                                        const LmConfig& config);

}  // namespace seqkv::lm

#endif  // SEQKV_TOOLS_LM_LM_WEIGHTS_H_
