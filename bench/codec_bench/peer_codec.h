// General-purpose compressors that codec-bench measures next to seqkv's own
// codecs. They are baselines only, not part of the codec registry: each one
// sees one tensor (K, V or latent) of a chunk at a time.
#ifndef SEQKV_BENCH_CODEC_BENCH_PEER_CODEC_H_
#define SEQKV_BENCH_CODEC_BENCH_PEER_CODEC_H_

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "codec/kv_layout.h"

namespace seqkv::bench {

// One tensor of a chunk: `slots` (layers x kv_heads) blocks of
// tokens x head_dim elements, row-major.
struct TensorShape {
  DType dtype = DType::kBF16;
  size_t slots = 0;
  size_t tokens = 0;
  size_t head_dim = 0;

  size_t num_elements() const { return slots * tokens * head_dim; }
  size_t num_bytes() const { return num_elements() * DTypeSize(dtype); }
};

class PeerCodec {
 public:
  virtual ~PeerCodec() = default;
  virtual std::string spec() const = 0;
  virtual bool lossless() const = 0;
  // Appends the compressed tensor to `out`.
  virtual absl::Status Encode(const TensorShape& shape,
                              std::span<const std::byte> data,
                              std::string& out) const = 0;
  // Fills `out` (shape.num_bytes()) from `encoded`.
  virtual absl::Status Decode(const TensorShape& shape,
                              std::string_view encoded,
                              std::span<std::byte> out) const = 0;
};

// "zstd:LEVEL", "lz4", "blosc[:LEVEL]" (byte shuffle + zstd, level 9 by
// default), "fpzip" (lossless),
// "zfp:RATE" (fixed rate, bits per element). NOT_FOUND for other names, so
// that callers can fall back to the codec registry.
absl::StatusOr<std::unique_ptr<PeerCodec>> CreatePeerCodec(
    std::string_view spec);

}  // namespace seqkv::bench

#endif  // SEQKV_BENCH_CODEC_BENCH_PEER_CODEC_H_
