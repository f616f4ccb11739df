#ifndef SEQKV_CODEC_RAW_CODEC_H_
#define SEQKV_CODEC_RAW_CODEC_H_

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "codec/codec.h"

namespace seqkv {

// "raw": the chunk's bytes as they are. Takes no params.
absl::StatusOr<std::unique_ptr<Codec>> CreateRawCodec(
    std::string_view params, const ModelContext& model);

}  // namespace seqkv

#endif  // SEQKV_CODEC_RAW_CODEC_H_
