// Model-level codec state: what a codec may know about a model, registered
// once per model and kept in the store as named blobs of
// ModelContext::codec_state. This file parses and serializes the blobs;
// model_state_builder.h builds them from a model directory.
#ifndef SEQKV_CODEC_MODEL_STATE_H_
#define SEQKV_CODEC_MODEL_STATE_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "codec/kv_layout.h"

namespace seqkv {

// Blob names in ModelContext::codec_state.
inline constexpr std::string_view kLayer0TableKey = "layer0";
inline constexpr std::string_view kProfileKey = "profile";

// Layer 0's K (before RoPE) and V for every vocabulary token, in bf16: a
// Llama-style model's layer-0 K and V depend on the token id alone.
//
// Blob: "SKVL0TB1" | u32 vocab | u32 num_kv_heads | u32 head_dim | u32 0 |
//       K bf16 [vocab][num_kv_heads][head_dim] | V likewise (little-endian).
class Layer0Table {
 public:
  static std::string Serialize(uint32_t vocab, uint32_t num_kv_heads,
                               uint32_t head_dim, std::span<const uint16_t> k,
                               std::span<const uint16_t> v);
  // Copies the blob after checking its header against `layout`.
  static absl::StatusOr<Layer0Table> Parse(std::string_view blob,
                                           const KvLayout& layout);

  uint32_t vocab() const { return vocab_; }
  // bf16 bits of token `token`'s row for head `head` (0 = K, 1 = V);
  // `token` must be in [0, vocab).
  const uint16_t* Row(uint32_t tensor, int32_t token, uint32_t head) const {
    const std::vector<uint16_t>& table = tensor == 0 ? k_ : v_;
    return &table[(size_t(token) * num_kv_heads_ + head) * head_dim_];
  }

 private:
  uint32_t vocab_ = 0;
  uint32_t num_kv_heads_ = 0;
  uint32_t head_dim_ = 0;
  std::vector<uint16_t> k_;
  std::vector<uint16_t> v_;
};

// A per-(layer, K/V) fidelity profile from calibration: how much KL
// divergence each group adds per unit of its relative MSE.
//
// JSON: {"model": "...", "metric": "kl_per_rel_mse",
//        "groups": [{"layer": 0, "tensor": "k", "sensitivity": 0.0123,
//                    "channel_weights": [...]}, ...]}
// "tensor" is "k", "v", or "latent" for latent layouts. The optional
// channel_weights ([kv_head][head_dim], positive) say how much an error in
// each channel matters relative to the others of its group. The optional
// "kl_map": [{"budget": b, "kl": k}, ...] (budgets increasing, both
// positive) is what `seqkv calibrate --kl_budgets` measured end to end: the
// mean KL k of the calibration caches coded with a per-chunk budget b.
struct FidelityProfile {
  struct Group {
    uint32_t layer = 0;
    uint32_t tensor = 0;  // 0 = K (or latent), 1 = V
    double sensitivity = 0;
    std::vector<double> channel_weights;  // empty when not measured
  };
  struct KlPoint {
    double budget = 0;
    double kl = 0;
  };
  std::string model;
  std::string metric;
  std::vector<Group> groups;
  std::vector<KlPoint> kl_map;  // increasing budgets; empty: not measured

  // The budget to spend for a measured KL of `kl`: interpolated in log-log
  // between the map's points (extrapolated along its end segments, at
  // most 4x past them); `kl` itself without a map of two points or more.
  double BudgetForKl(double kl) const;

  // The group, or null when the profile lacks it.
  const Group* Find(uint32_t layer, uint32_t tensor) const;
  std::optional<double> Sensitivity(uint32_t layer, uint32_t tensor) const;
};

// Parses and checks a profile; with `layout`, also that every group names a
// layer and tensor the layout has. INVALID_ARGUMENT names the bad field.
absl::StatusOr<FidelityProfile> ParseFidelityProfile(
    std::string_view json, const KvLayout* layout = nullptr);

}  // namespace seqkv

#endif  // SEQKV_CODEC_MODEL_STATE_H_
