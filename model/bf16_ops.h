// bf16 arithmetic as a bf16 PyTorch forward pass rounds it: values are
// carried as float but always hold a bf16-representable number. Shared by the
// reference runtime (tools/lm) and the layer-0 table builder
// (model/model_state_builder.h): the table must match the runtime's layer-0 K
// and V bit for bit, so both must round at the same points.
//
// Header-only free functions; no state, safe from any thread.
#ifndef SEQKV_MODEL_BF16_OPS_H_
#define SEQKV_MODEL_BF16_OPS_H_

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "codec/float_bits.h"

namespace seqkv {

// Round to nearest even bf16, returned as float. Inputs here are finite.
inline float RoundBf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  bits += 0x7FFF + ((bits >> 16) & 1);
  return std::bit_cast<float>(bits & 0xFFFF0000u);
}

inline void RoundBf16InPlace(std::span<float> values) {
  for (float& value : values) value = RoundBf16(value);
}

// bf16 little-endian bytes -> floats (count = out.size()).
inline void Bf16BytesToFloats(const std::byte* bytes, std::span<float> out) {
  for (size_t i = 0; i < out.size(); ++i) {
    uint16_t bits;
    std::memcpy(&bits, bytes + 2 * i, 2);
    out[i] = Bf16ToFloat(bits);
  }
}

// floats (already bf16-representable or not) -> bf16 little-endian bytes.
inline void FloatsToBf16Bytes(std::span<const float> values, std::byte* out) {
  for (size_t i = 0; i < values.size(); ++i) {
    uint16_t bits = FloatToBf16(values[i]);
    std::memcpy(out + 2 * i, &bits, 2);
  }
}

// HF LlamaRMSNorm of one row in a bf16 model: normalize in fp32, round to
// bf16, then multiply by the bf16 weight (one more rounding). `x`, `weight`
// and `out` have the same size; `out` may be `x` (the sum is taken first).
inline void RmsNormBf16(std::span<const float> x, std::span<const float> weight,
                        float eps, std::span<float> out) {
  float square_sum = 0;
  for (float value : x) square_sum += value * value;
  const float scale =
      1.0f / std::sqrt(square_sum / static_cast<float>(x.size()) + eps);
  for (size_t i = 0; i < x.size(); ++i)
    out[i] = RoundBf16(weight[i] * RoundBf16(x[i] * scale));
}

}  // namespace seqkv

#endif  // SEQKV_MODEL_BF16_OPS_H_
