// Fidelity tiers: what a chunk becomes under storage pressure before it is
// removed. A chunk stored losslessly is first re-encoded to lossy tier 1,
// then tier 2 (each within its error target); then its payload is dropped
// and its record kept as tokens only, so that a returning prefix is
// recognised; only then is it removed. See docs/ARCHITECTURE.md.
#ifndef SEQKV_SERVER_TIERS_H_
#define SEQKV_SERVER_TIERS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "codec/codec.h"

namespace seqkv {

// Which steps a namespace's chunks take before removal (--tiers, and the
// `tiers` of a tenant in the config).
struct TierPolicy {
  bool lossy = true;        // re-encode to the lossy tiers first
  bool tokens_only = true;  // then keep the tokens without the KV

  bool operator==(const TierPolicy&) const = default;
};

// How much of a limit (an evicting quota, or the capacity) each tier may
// hold before the demoter moves its least valued chunks down: chunks held
// exact up to `exact` of it, at lossy tier 1 up to `lossy_1`; tier 2 takes
// the rest, and eviction (or tokens only) what the limit cannot hold. A
// chunk leaving the exact tier goes straight to tier 2 while tier 1 is
// full, so that it is re-encoded once. Smaller shares keep more chunks
// (as lossy) and fewer exact (--tier_shares).
struct TierShares {
  double exact = 0.8;
  double lossy_1 = 0.1;

  bool operator==(const TierShares&) const = default;
};

// "EXACT,LOSSY_1": two fractions, each in [0, 1], summing to at most 1.
absl::StatusOr<TierShares> ParseTierShares(std::string_view text);

// "none", "lossy", "tokens" or "lossy,tokens" (in either order).
absl::StatusOr<TierPolicy> ParseTierPolicy(std::string_view text);
std::string TierPolicyName(const TierPolicy& policy);

// The error target of lossy tier `tier` (1 or 2) as a relative MSE: what
// turbo:4 (tier 1) and turbo:3 (tier 2) reach, i.e. the distortion of the
// 4- and 3-bit Lloyd-Max quantizers of a Gaussian.
double LossyTierRelativeMse(uint32_t tier);

// The codec spec that takes a chunk held at tier `from` (0: as Put, with a
// lossless codec) to tier `to`, for `model`: a KL budget through the
// model's calibrated fidelity profile (the KL the profile predicts at the
// tier's relative MSE), or the relative MSE itself where the model has no
// profile. Re-encoding adds its error to the one already there, so a step
// from a lossy tier gets the difference of the two targets.
std::string LossyTierCodec(const ModelContext& model, uint32_t from,
                           uint32_t to);

}  // namespace seqkv

#endif  // SEQKV_SERVER_TIERS_H_
