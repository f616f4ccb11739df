// Calibration: how much each (layer, K/V) group of the KV cache matters to
// the model. Each group of a real prefix cache in turn gets Gaussian noise of
// a known relative MSE (the rest stays exact); the model runs the rest of the
// sequence and the KL divergence of its predictions from the exact run is
// measured. A group's sensitivity is KL per unit of relative MSE: the
// profile a fidelity-targeting codec reads.
//
// The KL is not proportional to the error near zero: any perturbation moves
// some of the model's bf16 roundings, which costs a floor of KL whatever the
// error. So each group is measured twice, at the noise level and at a tiny
// one, and its sensitivity is the slope between the two; dividing the KL
// at one level by that level would count the floor in every group and
// flatten the profile.
//
// Within a group, channels matter unequally: an error in a key channel moves
// attention logits in proportion to the queries' energy in that channel,
// one in a value channel reaches the residual stream through the output
// projection's column. Calibration measures these first-order weights from
// the model's attention (AttentionSensitivity) and writes them to the
// profile; the codec then scales channels by them, and the group noise is
// shaped the same way so that each sensitivity describes the error the codec
// makes.
#ifndef SEQKV_TOOLS_LM_CALIBRATION_H_
#define SEQKV_TOOLS_LM_CALIBRATION_H_

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/kv_cache.h"
#include "tools/lm/llama_model.h"

namespace seqkv::lm {

struct GroupSensitivity {
  uint32_t layer = 0;
  bool values = false;  // false: K, true: V
  double kl = 0;        // summed over files
  double rel_mse = 0;   // summed over files
  // The same at the floor's noise level (both 0 when it is not measured).
  double floor_kl = 0;
  double floor_rel_mse = 0;
  // How much each channel ([kv_head][head_dim]) matters relative to the
  // group's average (mean 1), from the attention of the exact runs (see
  // AttentionSensitivity); empty until AddAttention. With them, kl and
  // rel_mse are measured with noise shaped by them and the relative MSE
  // weighted by them, as the predictive codec shapes and counts its error.
  std::vector<double> channel_weights = {};

  // KL per unit of relative MSE above the floor; at least kMinSensitivity,
  // as a slope that noise makes zero or negative is too small to measure.
  double sensitivity() const;
  static constexpr double kMinSensitivity = 1e-6;
};

struct CalibrationOptions {
  // Relative MSE of the noise put on a group: in the range codecs work at
  // (turbo:4's error is 0.009, turbo:3's 0.034), where KL grows linearly.
  double noise_rel_mse = 0.01;
  // The tiny noise level whose KL is the floor (0: do not measure it).
  double floor_rel_mse = 1e-4;
  // Tokens of each file that form the perturbed prefix (0: 3/4 of it).
  uint32_t prefix_tokens = 0;
  uint64_t seed = 1;
};

class Calibrator {
 public:
  Calibrator(const LlamaModel& model, CalibrationOptions options);

  // Measures how much each channel matters (channel_weights) from the
  // model's attention over one cache (the model's layout). Add every cache
  // this way before AddCache, whose noise these weights shape.
  absl::Status AddAttention(const KvCache& cache);

  // Measures every group's sensitivity on one cache. `progress` receives
  // one line per group.
  absl::Status AddCache(
      const KvCache& cache,
      const std::function<void(const std::string&)>& progress);

  const std::vector<GroupSensitivity>& groups() const { return groups_; }

 private:
  // Recomputes every group's channel_weights from attention_.
  void UpdateChannelWeights();
  // Tokens of `cache` that form the perturbed prefix.
  absl::StatusOr<uint32_t> PrefixTokens(const KvCache& cache) const;

  const LlamaModel& model_;
  CalibrationOptions options_;
  std::vector<GroupSensitivity> groups_;
  AttentionSensitivity attention_;  // summed over caches
  uint64_t caches_seen_ = 0;
};

// The profile JSON: {"model", "metric": "kl_per_rel_mse", "groups": [...]},
// each group with its sensitivity and, when measured, channel_weights.
std::string ProfileJson(const std::string& model_name,
                        std::span<const GroupSensitivity> groups);

}  // namespace seqkv::lm

#endif  // SEQKV_TOOLS_LM_CALIBRATION_H_
