// The fidelity harness: what a lossy KV cache does to a real model's
// predictions. A prefix of a sequence is coded (with a codec, or through a
// server), the model runs the rest of the sequence attending to the
// reconstructed prefix, and its next-token distributions are compared with
// those it gives attending to the exact prefix.
#ifndef SEQKV_TOOLS_LM_FIDELITY_H_
#define SEQKV_TOOLS_LM_FIDELITY_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "codec/codec.h"
#include "model/kv_cache.h"
#include "tools/lm/llama_model.h"

namespace seqkv::lm {

// Tokens [0, end) of `cache`.
KvCache PrefixCache(const KvCache& cache, uint32_t end);

// Copies tokens [begin, begin + count) into chunk layout
// ([layer][tensor][head][token][dim]), and back.
std::vector<std::byte> GatherChunk(const KvCache& cache, uint32_t begin,
                                   uint32_t count);
void ScatterChunk(std::span<const std::byte> chunk, uint32_t begin,
                  uint32_t count, KvCache& cache);

// Encodes and decodes `cache` chunk by chunk (chunk_tokens per chunk, RoPE
// positions from 0) with `codec`. Adds the encoded size to *encoded_bytes.
absl::StatusOr<KvCache> RoundTripCache(const Codec& codec, const KvCache& cache,
                                       uint32_t chunk_tokens,
                                       uint64_t* encoded_bytes);

// Sums of squared error and of squared value over K (or V), over all
// elements, in float.
struct ErrorEnergy {
  double error = 0;
  double energy = 0;
  double relative() const { return energy > 0 ? error / energy : 0; }
};
ErrorEnergy CompareTensor(const KvCache& exact, const KvCache& approx,
                          bool values);

// Next-token statistics of one run against the exact one.
struct FidelityTotals {
  uint64_t tokens = 0;
  double nll_exact = 0;  // sums over predicted tokens
  double nll_approx = 0;
  double nll_file = 0;  // from the dump's own logprobs, when it has them
  uint64_t file_tokens = 0;
  double kl = 0;  // KL(exact || approx), nats
  uint64_t top1_agree = 0;

  // Row r of both logit sets predicts targets[r]; file_logprobs (may be
  // empty) holds the reference log-probability of the same targets.
  void Add(const ForwardResult& exact, const ForwardResult& approx,
           std::span<const int32_t> targets,
           std::span<const float> file_logprobs);
};

// Mean KL(exact || approx) over rows (first `rows` rows of each result).
double MeanKl(const ForwardResult& exact, const ForwardResult& approx,
              uint32_t rows);

}  // namespace seqkv::lm

#endif  // SEQKV_TOOLS_LM_FIDELITY_H_
