// bf16 rounding at the points where a bf16 PyTorch forward pass rounds:
// values are carried as float but always hold a bf16-representable number.
#ifndef SEQKV_TOOLS_LM_BF16_OPS_H_
#define SEQKV_TOOLS_LM_BF16_OPS_H_

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "codec/float_bits.h"

namespace seqkv::lm {

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

}  // namespace seqkv::lm

#endif  // SEQKV_TOOLS_LM_BF16_OPS_H_
