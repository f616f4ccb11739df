#include "server/tiers.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "codec/model_state.h"
#include "codec/turbo/lloyd_max.h"

namespace seqkv {

absl::StatusOr<TierPolicy> ParseTierPolicy(std::string_view text) {
  if (text == "none") return TierPolicy{.lossy = false, .tokens_only = false};
  TierPolicy policy{.lossy = false, .tokens_only = false};
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(text.data(), text.size()), ',')) {
    if (part == "lossy" && !policy.lossy) {
      policy.lossy = true;
    } else if (part == "tokens" && !policy.tokens_only) {
      policy.tokens_only = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "tiers must be none, lossy, tokens or lossy,tokens; got '",
          std::string(text), "'"));
    }
  }
  return policy;
}

std::string TierPolicyName(const TierPolicy& policy) {
  if (policy.lossy && policy.tokens_only) return "lossy,tokens";
  if (policy.lossy) return "lossy";
  if (policy.tokens_only) return "tokens";
  return "none";
}

absl::StatusOr<TierShares> ParseTierShares(std::string_view text) {
  const std::vector<std::string> parts =
      absl::StrSplit(absl::string_view(text.data(), text.size()), ',');
  TierShares shares;
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("tier_shares must be EXACT,LOSSY_1 (two fractions of a "
                     "limit, summing to at most 1), e.g. 0.8,0.1; got '",
                     std::string(text), "': ", why));
  };
  if (parts.size() != 2) return bad("not two numbers");
  if (!absl::SimpleAtod(parts[0], &shares.exact) ||
      !absl::SimpleAtod(parts[1], &shares.lossy_1))
    return bad("not numbers");
  if (!(shares.exact >= 0 && shares.exact <= 1 && shares.lossy_1 >= 0 &&
        shares.lossy_1 <= 1))
    return bad("each must be in [0, 1]");
  if (shares.exact + shares.lossy_1 > 1 + 1e-9) return bad("sum above 1");
  return shares;
}

double LossyTierRelativeMse(uint32_t tier) {
  if (tier == 0) return 0;
  return GaussianLloydMaxDistortion(tier == 1 ? 4 : 3);
}

std::string LossyTierCodec(const ModelContext& model, uint32_t from,
                           uint32_t to) {
  // From a lossy tier, the errors of the two encodings add up only about
  // (they are not quite independent): leave a margin.
  const double rel_mse =
      from == 0 ? LossyTierRelativeMse(to)
                : 0.9 * (LossyTierRelativeMse(to) - LossyTierRelativeMse(from));
  if (const std::string* json = model.FindState(kProfileKey)) {
    auto profile = ParseFidelityProfile(*json, &model.layout);
    if (profile.ok() && !profile->groups.empty()) {
      double sensitivity = 0;
      for (const FidelityProfile::Group& group : profile->groups)
        sensitivity += group.sensitivity;
      if (sensitivity > 0)
        return absl::StrCat("predictive:kl=", rel_mse * sensitivity);
    }
  }
  return absl::StrCat("predictive:rel_mse=", rel_mse);
}

}  // namespace seqkv
