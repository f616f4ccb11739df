// The model behind the "lossless" codec: codes one stream of floats (one
// layer's K, V or latent tensor of a chunk, [heads][tokens][head_dim]) bit
// exactly, with a range coder and adaptive context models.
//
// Each value x is coded against a prediction p and a scale s kept per
// channel from the values already coded (a running mean and a running mean
// absolute error; for RoPE'd keys the mean is kept in the rotating frame).
// A power-of-two step delta in (s/2, s] splits the real line into cells
// [n delta, (n+1) delta): the coder sends n - round(p / delta) with an
// adaptive model, then which of the float values inside the cell x is. A
// cell away from zero lies within one binade, so its values are equally
// likely and the index costs log2(count); the two cells touching zero hold
// every tiny value, so there the binade is sent first. This is linear near
// the prediction (unlike residuals of order-preserving integers, which
// explode when a prediction has the wrong sign) and exact for any IEEE
// format: bf16, fp16 and fp32 alike.
//
// In the first layer a row whose token already occurred in the chunk is
// predicted from that earlier row (layer-0 K/V depend on the token alone,
// up to RoPE), or else from a TokenRowSource (model state) when there is
// one: one adaptive flag says whether the prediction is exact, otherwise
// the values are coded against it.
//
// Determinism: encoder and decoder must compute the same predictions, so
// the arithmetic uses only IEEE double +, -, *, / and exact functions
// (floor, ldexp, frexp); the source is compiled with -ffp-contract=off.
#ifndef SEQKV_CODEC_LOSSLESS_CODEC_STREAM_H_
#define SEQKV_CODEC_LOSSLESS_CODEC_STREAM_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "codec/kv_layout.h"

namespace seqkv::lossless {

// An IEEE binary format viewed as integers.
struct FloatFormat {
  int width_bits = 16;  // 16 or 32
  int mant_bits = 7;
  int exp_bits = 8;
  int bias = 127;

  static FloatFormat For(DType dtype);

  uint32_t mask() const {
    return width_bits == 32 ? 0xFFFFFFFFu : (1u << width_bits) - 1;
  }
  uint32_t sign_mask() const { return 1u << (width_bits - 1); }
  uint32_t exp_all_ones() const { return (1u << exp_bits) - 1; }
  uint32_t Exponent(uint32_t bits) const {
    return (bits >> mant_bits) & exp_all_ones();
  }
  bool IsFinite(uint32_t bits) const {
    return Exponent(bits) != exp_all_ones();
  }
  // Order-preserving map: a < b as numbers (for non-NaN) iff Ord(a) < Ord(b);
  // -0 sits just below +0.
  uint32_t ToOrd(uint32_t bits) const {
    return (bits & sign_mask()) ? (~bits & mask()) : (bits | sign_mask());
  }
  uint32_t FromOrd(uint32_t ord) const {
    return (ord & sign_mask()) ? (ord & ~sign_mask()) : (~ord & mask());
  }
  // Exact value of finite bits.
  double ToDouble(uint32_t bits) const;
  // Ord of the smallest value of the format (finite or +Inf) that is >= v.
  uint32_t OrdCeil(double v) const;
};

// Per-token rotation of RoPE pairs: channel first[i] and second[i] of a
// head turn by angle theta_i per position; cos/sin of theta_i are given by
// the encoder (and carried in the payload) so decoding needs no libm.
struct RopePairs {
  std::vector<uint32_t> first, second;
  std::vector<double> cos, sin;
  bool empty() const { return first.empty(); }
};

// Rows known before any data is seen, such as a model's layer-0 K (before
// RoPE) and V per vocabulary token.
class TokenRowSource {
 public:
  virtual ~TokenRowSource() = default;
  // Fills `row` (head_dim values) with the row of `token` for `head` and
  // returns true, or returns false for a token it does not know.
  virtual bool Row(int32_t token, uint32_t head,
                   std::span<double> row) const = 0;
};

struct StreamSpec {
  FloatFormat format;
  uint32_t heads = 0;
  uint32_t tokens = 0;
  uint32_t dim = 0;
  const RopePairs* rope = nullptr;  // null: no rotation (V, latent, no RoPE)
  // Token ids of the chunk when rows may be predicted from an earlier
  // occurrence of the same token (the first layer); empty otherwise.
  std::span<const int32_t> token_ids;
  // With token_ids: predicts rows of tokens not seen earlier in the chunk.
  // Its rows are pre-RoPE; they are turned to position first_position + t.
  const TokenRowSource* token_source = nullptr;
  uint64_t first_position = 0;

  size_t num_elements() const { return size_t{heads} * tokens * dim; }
};

// Appends the range-coded stream for `data` (num_elements() little-endian
// values of spec.format) to `out`.
void EncodeStream(const StreamSpec& spec, std::span<const std::byte> data,
                  std::string& out);

// Decodes exactly one stream into `out` (num_elements() values); DATA_LOSS
// on anything an encoder could not have produced.
absl::Status DecodeStream(const StreamSpec& spec, std::string_view in,
                          std::span<std::byte> out);

}  // namespace seqkv::lossless

#endif  // SEQKV_CODEC_LOSSLESS_CODEC_STREAM_H_
