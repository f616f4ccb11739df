#include "tools/lm/calibration.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "codec/predictive/rope.h"
#include "model/bf16_ops.h"
#include "nlohmann/json.hpp"
#include "tools/lm/fidelity.h"

namespace seqkv::lm {
namespace {

// Adds Gaussian noise to every vector (one token of one head) of one
// (layer, K/V) group and rounds back to bf16. Each vector gets noise of
// relative MSE `target` against its own energy, as codecs' errors scale:
// attention-sink tokens have small vectors that take most of the attention,
// and noise of the group's average size would swamp them.
//
// With channel weights ([kv_head][head_dim], mean 1) the noise is shaped as
// the predictive codec shapes its error: channel c gets variance / weight,
// keys in the codec's pre-RoPE frame, and the returned error is weighted
// likewise. Returns the group's (weighted) relative MSE after rounding.
double PerturbGroup(KvCache& cache, uint32_t layer, bool values, double target,
                    std::span<const double> weights, uint64_t seed) {
  const KvLayout& layout = cache.layout;
  const size_t dim = layout.head_dim;
  const size_t tokens = cache.num_tokens();
  const size_t count = size_t{layout.num_kv_heads} * tokens * dim;
  std::vector<std::byte>& bytes = values ? cache.v : cache.k;
  std::byte* data = bytes.data() + size_t{layer} * count * 2;
  std::vector<float> x(count);
  Bf16BytesToFloats(data, x);
  const std::vector<float> original = x;
  const bool shaped = !weights.empty();
  std::optional<predictive::RopeTable> rope;
  if (shaped && !values && layout.rope.style != RopeStyle::kNone)
    rope.emplace(layout.rope, layout.head_dim, 0, tokens);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0.0, 1.0);
  // Channel weights of the head that element `row` belongs to.
  auto head_weights = [&](size_t row) {
    return shaped ? weights.subspan(row / (tokens * dim) * dim, dim) : weights;
  };
  std::vector<float> delta(dim);
  for (size_t row = 0; row < count; row += dim) {
    const std::span<const double> row_weights = head_weights(row);
    double energy = 0;
    for (size_t d = 0; d < dim; ++d) energy += double(x[row + d]) * x[row + d];
    const double sigma = std::sqrt(target * energy / dim);
    for (size_t d = 0; d < dim; ++d)
      delta[d] = static_cast<float>(sigma * noise(rng) /
                                    (shaped ? std::sqrt(row_weights[d]) : 1));
    if (rope) rope->Apply(row / dim % tokens, delta.data());
    for (size_t d = 0; d < dim; ++d) x[row + d] += delta[d];
  }
  FloatsToBf16Bytes(x, data);
  double error = 0, energy = 0;
  for (size_t row = 0; row < count; row += dim) {
    for (size_t d = 0; d < dim; ++d) {
      delta[d] = RoundBf16(x[row + d]) - original[row + d];
      energy += double(original[row + d]) * original[row + d];
    }
    if (rope) rope->Undo(row / dim % tokens, delta.data());
    const std::span<const double> row_weights = head_weights(row);
    for (size_t d = 0; d < dim; ++d)
      error += double(delta[d]) * delta[d] * (shaped ? row_weights[d] : 1);
  }
  return energy > 0 ? error / energy : 0;
}

}  // namespace

double GroupSensitivity::sensitivity() const {
  const double excess_mse = rel_mse - floor_rel_mse;
  if (excess_mse <= 0) return kMinSensitivity;
  return std::max(kMinSensitivity, (kl - floor_kl) / excess_mse);
}

Calibrator::Calibrator(const LlamaModel& model, CalibrationOptions options)
    : model_(model), options_(options) {
  for (uint32_t l = 0; l < model.config().num_layers; ++l)
    for (bool values : {false, true})
      groups_.push_back({.layer = l, .values = values});
}

absl::StatusOr<uint32_t> Calibrator::PrefixTokens(const KvCache& cache) const {
  const uint32_t total = cache.num_tokens();
  const uint32_t prefix_tokens =
      options_.prefix_tokens > 0 ? options_.prefix_tokens : total * 3 / 4;
  if (prefix_tokens < 1 || prefix_tokens + 2 > total)
    return absl::InvalidArgumentError(absl::StrCat(
        "calibration prefix of ", prefix_tokens, " tokens must leave at least ",
        "2 of ", total, " tokens to run"));
  return prefix_tokens;
}

absl::Status Calibrator::AddAttention(const KvCache& cache) {
  absl::StatusOr<uint32_t> prefix_tokens = PrefixTokens(cache);
  if (!prefix_tokens.ok()) return prefix_tokens.status();
  KvCache exact_cache = PrefixCache(cache, *prefix_tokens);
  auto exact = model_.Forward(
      std::span<const int32_t>(cache.tokens).subspan(*prefix_tokens),
      exact_cache, /*last_only=*/false, &attention_);
  if (!exact.ok()) return exact.status();
  UpdateChannelWeights();
  return absl::OkStatus();
}

absl::Status Calibrator::AddCache(
    const KvCache& cache,
    const std::function<void(const std::string&)>& progress) {
  absl::StatusOr<uint32_t> prefix_tokens = PrefixTokens(cache);
  if (!prefix_tokens.ok()) return prefix_tokens.status();
  const KvCache prefix = PrefixCache(cache, *prefix_tokens);
  const std::span<const int32_t> rest =
      std::span<const int32_t>(cache.tokens).subspan(*prefix_tokens);
  KvCache exact_cache = prefix;
  auto exact = model_.Forward(rest, exact_cache);
  if (!exact.ok()) return exact.status();
  const uint32_t rows = exact->rows - 1;  // the last row has no target
  // KL and relative MSE of noise at `level` on group g.
  auto measure =
      [&](size_t g, double level,
          uint64_t stream) -> absl::StatusOr<std::pair<double, double>> {
    const GroupSensitivity& group = groups_[g];
    KvCache noisy = prefix;
    const double rel_mse = PerturbGroup(
        noisy, group.layer, group.values, level, group.channel_weights,
        options_.seed * 1000003 + caches_seen_ * 1009 + g + stream * 7919);
    auto perturbed = model_.Forward(rest, noisy);
    if (!perturbed.ok()) return perturbed.status();
    return std::make_pair(MeanKl(*exact, *perturbed, rows), rel_mse);
  };
  for (size_t g = 0; g < groups_.size(); ++g) {
    GroupSensitivity& group = groups_[g];
    auto at_noise = measure(g, options_.noise_rel_mse, 0);
    if (!at_noise.ok()) return at_noise.status();
    group.kl += at_noise->first;
    group.rel_mse += at_noise->second;
    std::string floor_text;
    if (options_.floor_rel_mse > 0) {
      auto at_floor = measure(g, options_.floor_rel_mse, 1);
      if (!at_floor.ok()) return at_floor.status();
      group.floor_kl += at_floor->first;
      group.floor_rel_mse += at_floor->second;
      floor_text = absl::StrFormat(" (floor: rel_mse %.3g kl %.4g)",
                                   at_floor->second, at_floor->first);
    }
    if (progress)
      progress(absl::StrFormat("layer %u %s: rel_mse %.4g kl %.4g%s",
                               group.layer, group.values ? "v" : "k",
                               at_noise->second, at_noise->first, floor_text));
  }
  ++caches_seen_;
  return absl::OkStatus();
}

void Calibrator::UpdateChannelWeights() {
  const LmConfig& config = model_.config();
  const size_t width = size_t{config.num_kv_heads} * config.head_dim;
  for (GroupSensitivity& group : groups_) {
    const std::vector<double>& sums =
        group.values ? attention_.value : attention_.key;
    const auto first = sums.begin() + group.layer * width;
    double total = 0;
    for (auto it = first; it != first + width; ++it) total += *it;
    group.channel_weights.clear();
    if (!(total > 0)) continue;  // nothing attended to the cache
    for (auto it = first; it != first + width; ++it)
      group.channel_weights.push_back(*it * width / total);
  }
}

std::string ProfileJson(const std::string& model_name,
                        std::span<const GroupSensitivity> groups) {
  nlohmann::json profile;
  profile["model"] = model_name;
  profile["metric"] = "kl_per_rel_mse";
  profile["groups"] = nlohmann::json::array();
  for (const GroupSensitivity& group : groups) {
    nlohmann::json entry = {{"layer", group.layer},
                            {"tensor", group.values ? "v" : "k"},
                            {"sensitivity", group.sensitivity()}};
    if (!group.channel_weights.empty())
      entry["channel_weights"] = group.channel_weights;
    profile["groups"].push_back(std::move(entry));
  }
  return profile.dump(2) + "\n";
}

}  // namespace seqkv::lm
