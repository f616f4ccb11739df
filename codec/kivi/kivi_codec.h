#ifndef SEQKV_CODEC_KIVI_KIVI_CODEC_H_
#define SEQKV_CODEC_KIVI_KIVI_CODEC_H_

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "codec/codec.h"

namespace seqkv {

// "kivi:B", B in [1, 8]: the KIVI baseline. Asymmetric uniform B-bit
// quantization in groups of 32 with an fp16 scale and zero point per group;
// keys are grouped per channel (32 tokens of one channel), because their
// outliers are whole channels, and values per token (32 channels of one
// token). A latent (MLA) tensor is grouped like keys, as it carries the
// rotary key part.
absl::StatusOr<std::unique_ptr<Codec>> CreateKiviCodec(
    std::string_view params, const ModelContext& model);

}  // namespace seqkv

#endif  // SEQKV_CODEC_KIVI_KIVI_CODEC_H_
