#ifndef SEQKV_CODEC_LOSSLESS_CODEC_H_
#define SEQKV_CODEC_LOSSLESS_CODEC_H_

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "codec/codec.h"

namespace seqkv {

// "lossless": bit-exact for bf16, fp16 and fp32.
absl::StatusOr<std::unique_ptr<Codec>> CreateLosslessCodec(
    std::string_view params, const ModelContext& model);

}  // namespace seqkv

#endif  // SEQKV_CODEC_LOSSLESS_CODEC_H_
