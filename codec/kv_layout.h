// Shapes of KV caches and chunks, independent of the wire format.
#ifndef SEQKV_CODEC_KV_LAYOUT_H_
#define SEQKV_CODEC_KV_LAYOUT_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace seqkv {

enum class DType : uint8_t { kBF16 = 1, kFP16 = 2, kFP32 = 3 };

size_t DTypeSize(DType dtype);
const char* DTypeName(DType dtype);  // "bf16", "fp16", "fp32"
absl::StatusOr<DType> ParseDType(std::string_view name);

enum class RopeStyle : uint8_t { kNone = 0, kRotateHalf = 1, kInterleaved = 2 };

const char* RopeStyleName(RopeStyle style);  // "none", "rotate_half", ...

struct RopeConfig {
  RopeStyle style = RopeStyle::kNone;
  double theta = 10000.0;
  uint32_t rotary_dim = 0;  // 0 means head_dim

  friend bool operator==(const RopeConfig&, const RopeConfig&) = default;
};

// The KV cache of one model: per layer either K and V, or one latent tensor.
struct KvLayout {
  uint32_t num_layers = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  DType dtype = DType::kBF16;
  bool latent = false;
  RopeConfig rope = {};

  uint32_t tensors_per_layer() const { return latent ? 1 : 2; }
  // Elements of one token across all layers, tensors and heads.
  size_t elements_per_token() const {
    return size_t{num_layers} * tensors_per_layer() * num_kv_heads * head_dim;
  }
  size_t bytes_per_token() const {
    return elements_per_token() * DTypeSize(dtype);
  }
  // Rejects zero or absurd dimensions; the message names the field.
  absl::Status Validate() const;
  std::string DebugString() const;

  friend bool operator==(const KvLayout&, const KvLayout&) = default;
};

// Names every field in which `got` differs from `expected`, each with both
// values, e.g. "rope theta 10000 (expected 500000), head_dim 128 (expected
// 64)"; empty when they agree. As on the wire, a RoPE style of none in `got`
// means the caller did not say, so its RoPE fields are not compared; theta
// and rotary_dim are compared only where both rotate.
std::string DescribeLayoutDifference(const KvLayout& expected,
                                     const KvLayout& got);

// Describes one chunk of a sequence. Chunk data is laid out as
// [layer][tensor (K, V)][kv_head][token][head_dim] in the layout's dtype.
// A run of a chunk's tokens whose token ids a chunk stored earlier holds
// too, maybe at other positions and after another prefix: that chunk's
// decoded rows predict these rows (cross-prefix residual coding).
struct ReferenceRun {
  uint32_t token = 0;  // first token of the run in the chunk being coded
  uint32_t num_tokens = 0;
  uint32_t source = 0;        // index into ChunkReferences::sources
  uint32_t source_token = 0;  // first token of the run in that source
};

// A stored chunk that predicts rows of the chunk being coded: its decoded
// KV in chunk layout (the same KvLayout), and where it sits in its own
// sequence.
struct ReferenceSource {
  uint32_t num_tokens = 0;
  uint64_t first_position = 0;
  std::span<const std::byte> data;  // layout bytes_per_token x num_tokens
};

// Everything a codec that codes against references needs; Decode must be
// given exactly what Encode was given (the same runs, sources decoded to the
// same bytes).
struct ChunkReferences {
  std::vector<ReferenceSource> sources;
  std::vector<ReferenceRun> runs;  // ascending by token, disjoint
};

struct ChunkInfo {
  const KvLayout* layout = nullptr;
  uint32_t num_tokens = 0;
  // Position of the chunk's first token in its sequence (for RoPE).
  uint64_t first_position = 0;
  // Token ids of the chunk, num_tokens of them.
  std::span<const int32_t> tokens;
  // Rows predicted by chunks stored earlier (null: none). Only codecs whose
  // codes_against_references() is true read it.
  const ChunkReferences* references = nullptr;

  size_t num_elements() const {
    return layout->elements_per_token() * num_tokens;
  }
  size_t num_bytes() const { return layout->bytes_per_token() * num_tokens; }
  // Offset in elements of row (layer, tensor, head, token) in chunk layout.
  size_t RowOffset(uint32_t layer, uint32_t tensor, uint32_t head,
                   uint32_t token) const {
    return (((size_t{layer} * layout->tensors_per_layer() + tensor) *
                 layout->num_kv_heads +
             head) *
                num_tokens +
            token) *
           layout->head_dim;
  }
};

}  // namespace seqkv

#endif  // SEQKV_CODEC_KV_LAYOUT_H_
