// Format 3 of the "lossless" codec: every (layer, tensor) stream of a chunk
// coded with a static model fitted to the chunk, one interleaved rANS stream
// for the whole chunk (the coder of codec/predictive/rans.h), and the bits
// that carry no information left uncoded. Decoding is table lookups and
// integer arithmetic, vectorized with run-time dispatch
// (lossless_kernels.h); every kernel decodes to the same bits.
//
// The model, per channel (head, head_dim index) of a stream:
//   * a prediction p: the channel's mean over the chunk, or for a RoPE pair
//     of keys its mean before RoPE, turned to each token's position;
//   * a power-of-two step delta near the mean absolute error of p.
// A value x falls in cell n = floor(|x| / delta) (mirrored for negative x,
// so that cells never straddle zero). The coder sends n - round(p / delta)
// as a symbol; the float values inside a cell away from zero are equally
// likely and lie in one binade, so which one it is costs exactly its
// log2(count) raw bits: the mantissa bits below delta. The two cells at zero
// hold every smaller binade, so there the symbol names the binade and the
// mantissa goes raw. Anything else (NaN, Inf, residuals beyond the
// alphabet) is an escape followed by the value verbatim.
//
// Symbols use one of 14 frequency tables per stream, picked per channel by
// round(p / delta) near zero and the step's fit, so a table's statistics
// are those of similar channels. All statistics come from the chunk itself;
// the model state adds only the layer-0 rows of TokenRowSource.
//
// In the first layer a row whose token is known (model state, or an
// earlier row of the chunk with the same token) is predicted exactly most
// of the time: one bit per such row says so, and the row is not coded.
#ifndef SEQKV_CODEC_LOSSLESS_CHUNK_CODER_H_
#define SEQKV_CODEC_LOSSLESS_CHUNK_CODER_H_

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "codec/lossless_codec_stream.h"

namespace seqkv::lossless {

// One stream of a chunk: its spec, its bytes in the chunk buffer and its
// kind (the tensor within its layer: streams of one kind share tables).
struct ChunkStream {
  StreamSpec spec;
  size_t offset = 0;  // bytes into the chunk
  uint32_t kind = 0;  // < 16
  // Format 4: rows that reference runs predict (ChunkInfo::references).
  // Per token of the stream, whether a run covers it, and the predictions,
  // [head][token][dim], finite, read only where covered. Null: none.
  const uint8_t* referenced = nullptr;
  const float* reference = nullptr;
};

// Appends the format-3 body for `streams` of `data` to `out`, or with
// `references` the format-4 body, which codes the rows of streams' reference
// predictions against them (ChunkStream::reference). Every spec must share
// one format, heads, tokens, dim, rope and first_position.
void EncodeChunkStreams(std::span<const ChunkStream> streams,
                        std::span<const std::byte> data, bool references,
                        std::string& out);

// Decodes a body made by EncodeChunkStreams for the same streams (and
// predictions) into `out`; DATA_LOSS on anything an encoder could not have
// produced.
absl::Status DecodeChunkStreams(std::span<const ChunkStream> streams,
                                std::string_view in, bool references,
                                std::span<std::byte> out);

}  // namespace seqkv::lossless

#endif  // SEQKV_CODEC_LOSSLESS_CHUNK_CODER_H_
