// A CPU reference implementation of a Llama-style decoder (pre-RMSNorm, RoPE,
// GQA attention, SwiGLU MLP) that reproduces a bf16 PyTorch forward pass:
// weights and activations are bf16, matrix products accumulate in fp32 and
// round to bf16 where HF's LlamaForCausalLM rounds. The KV cache it reads and
// extends is a seqkv::KvCache ([layer][kv_head][token][head_dim], bf16,
// post-RoPE), so caches move between the model and seqkv unchanged.
#ifndef SEQKV_TOOLS_LM_LLAMA_MODEL_H_
#define SEQKV_TOOLS_LM_LLAMA_MODEL_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/kv_cache.h"
#include "tools/lm/lm_config.h"
#include "tools/lm/lm_weights.h"

namespace seqkv::lm {

struct ForwardResult {
  // [rows][vocab] bf16-rounded logits: one row per new token, or only the
  // last one when asked for.
  std::vector<float> logits;
  uint32_t rows = 0;
  uint32_t vocab = 0;

  std::span<const float> row(uint32_t i) const {
    return {logits.data() + size_t{i} * vocab, vocab};
  }
};

// First-order sensitivity of the attention outputs to errors in each channel
// of the cached keys and values, summed over the queries of a forward run.
// For a query at position m and a cached key at position n with attention
// probability a:
//   value channel c: a^2 * |o_proj column of c|^2 (an error in v_n reaches
//     the residual stream scaled by a and by the output projection);
//   key channel c (before RoPE): a^2 * |v_n - o_m|^2 * |o_proj of the head|^2
//     / head_dim * (R(n)^T q_m)_c^2 (an error in a key moves its logit by
//     the query rotated into the key's pre-RoPE frame).
// Only keys of the cache the run attends to (positions before the run) count.
struct AttentionSensitivity {
  std::vector<double> key;    // [layer][kv_head][head_dim]
  std::vector<double> value;  // [layer][kv_head][head_dim]
};

class LlamaModel {
 public:
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Load(
      const std::string& model_dir);
  LlamaModel(LmConfig config, LmWeights weights);

  const LmConfig& config() const { return config_; }
  // Layout of the caches this model reads and writes.
  KvLayout kv_layout() const { return config_.KvCacheLayout(); }
  // An empty cache (no tokens) in this model's layout.
  KvCache EmptyCache() const;

  // Runs `tokens` at positions cache.num_tokens() onwards, attending to the
  // cache, and appends their K/V (and ids) to `cache`. Returns the logits of
  // every new token, or only of the last when `last_only`. A cache whose
  // layout does not match the model gives INVALID_ARGUMENT.
  // With `sensitivity`, also adds this run's attention sensitivities to it
  // (sized on first use).
  absl::StatusOr<ForwardResult> Forward(
      std::span<const int32_t> tokens, KvCache& cache, bool last_only = false,
      AttentionSensitivity* sensitivity = nullptr) const;

  // Runs a prompt (at least one token) after `cache` and returns the logits
  // of its last token. The last token is run on its own, as decoding runs
  // tokens: BLAS results depend on the number of rows, so this keeps a
  // generation whose cache of prompt[0, n-1) came from a store bit for bit
  // the same as one that prefilled it here.
  absl::StatusOr<ForwardResult> Prefill(std::span<const int32_t> tokens,
                                        KvCache& cache) const;

  // Picks the most likely token of `logits`, feeds it, and repeats until
  // max_new_tokens are chosen. `cache` ends holding every token fed (all
  // but the last new one).
  absl::StatusOr<std::vector<int32_t>> DecodeGreedy(
      std::span<const float> logits, KvCache& cache,
      uint32_t max_new_tokens) const;

  // Prefill, then DecodeGreedy.
  absl::StatusOr<std::vector<int32_t>> GenerateGreedy(
      std::span<const int32_t> tokens, KvCache& cache,
      uint32_t max_new_tokens) const;

 private:
  LmConfig config_;
  LmWeights weights_;
  // RoPE inverse frequencies, computed in fp32 as torch does.
  std::vector<float> inv_freq_;
};

// log_softmax of one row of logits, in fp32 (as torch's logits.float()).
std::vector<float> LogSoftmax(std::span<const float> logits);
// Index of the largest logit (the first one on ties, as torch.argmax).
int32_t ArgMax(std::span<const float> logits);

}  // namespace seqkv::lm

#endif  // SEQKV_TOOLS_LM_LLAMA_MODEL_H_
