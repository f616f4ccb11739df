// The `predictive` codec: a target fidelity in, the fewest bits out.
//
// Each (layer, K/V) group is coded as a residual against what the decoder
// can already predict (layer 0 from the token ids via the model's layer-0
// table; K in the pre-RoPE frame, where its large per-channel offsets are
// constant), quantized with a uniform step chosen to meet the group's
// relative-MSE target, and entropy-coded with static rANS models per class
// of channels. No prediction runs along tokens, so errors cannot drift.
//
// Spec: predictive[:rel_mse=R | :kl=B][,prerope=0|1][,layer0=0|1]
//   rel_mse  relative MSE target of every group (default 0.01)
//   kl       KL budget split over groups by the model's fidelity profile
//   prerope  code K before RoPE when the layout declares it (default 1)
//   layer0   predict layer 0 from the token ids when registered (default 1)
#ifndef SEQKV_CODEC_PREDICTIVE_PREDICTIVE_CODEC_H_
#define SEQKV_CODEC_PREDICTIVE_PREDICTIVE_CODEC_H_

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "codec/codec.h"

namespace seqkv {

absl::StatusOr<std::unique_ptr<Codec>> CreatePredictiveCodec(
    std::string_view params, const ModelContext& model);

}  // namespace seqkv

#endif  // SEQKV_CODEC_PREDICTIVE_PREDICTIVE_CODEC_H_
