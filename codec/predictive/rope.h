// Rotary position embedding (RoPE) as a codec transform: undoing it turns
// post-RoPE keys back into the pre-RoPE frame, where most of their energy is
// a constant offset per channel.
#ifndef SEQKV_CODEC_PREDICTIVE_ROPE_H_
#define SEQKV_CODEC_PREDICTIVE_ROPE_H_

#include <cstdint>
#include <vector>

#include "codec/kv_layout.h"

namespace seqkv::predictive {

// cos/sin of every (token, frequency) pair of a run of positions, with the
// model's float32 inverse frequencies (as Hugging Face computes them) so the
// pre-RoPE frame matches the model's.
class RopeTable {
 public:
  // `rope.style` must not be kNone; rotary_dim 0 means head_dim.
  RopeTable(const RopeConfig& rope, uint32_t head_dim, uint64_t first_position,
            uint32_t num_tokens);

  // Rotates `row` (head_dim values of token `token`) forward, as the model
  // did, or backward into the pre-RoPE frame.
  void Apply(uint32_t token, float* row) const { Rotate(token, row, 1.0f); }
  void Undo(uint32_t token, float* row) const { Rotate(token, row, -1.0f); }

  RopeStyle style() const { return style_; }
  uint32_t half() const { return half_; }
  const float* cos(uint32_t token) const {
    return cos_.data() + size_t{token} * half_;
  }
  const float* sin(uint32_t token) const {
    return sin_.data() + size_t{token} * half_;
  }

 private:
  void Rotate(uint32_t token, float* row, float direction) const;

  RopeStyle style_;
  uint32_t half_;           // rotary_dim / 2: number of rotated pairs
  std::vector<float> cos_;  // [token][half_]
  std::vector<float> sin_;
};

}  // namespace seqkv::predictive

#endif  // SEQKV_CODEC_PREDICTIVE_ROPE_H_
