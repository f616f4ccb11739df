#ifndef SEQKV_CODEC_TURBO_TURBO_CODEC_H_
#define SEQKV_CODEC_TURBO_TURBO_CODEC_H_

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "codec/codec.h"

namespace seqkv {

// "turbo:B", B in {2, 2.5, 3, 3.5, 4}: the TurboQuant baseline. Each
// head_dim row is stored as its fp16 norm plus B-bit Lloyd-Max indices of its
// randomly rotated unit vector. A fractional B gives ceil(B) bits to the
// highest-energy channels of each head (chosen per chunk) and floor(B) bits
// to the rest, each group with its own norm and rotation.
absl::StatusOr<std::unique_ptr<Codec>> CreateTurboCodec(
    std::string_view params, const ModelContext& model);

}  // namespace seqkv

#endif  // SEQKV_CODEC_TURBO_TURBO_CODEC_H_
