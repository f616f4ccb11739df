// Conversions between bf16 / fp16 bit patterns and float.
#ifndef SEQKV_CODEC_FLOAT_BITS_H_
#define SEQKV_CODEC_FLOAT_BITS_H_

#include <bit>
#include <cmath>
#include <cstdint>

namespace seqkv {

inline float Bf16ToFloat(uint16_t bits) {
  return std::bit_cast<float>(uint32_t{bits} << 16);
}

// Round to nearest even, as torch does; NaN stays NaN.
inline uint16_t FloatToBf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if (std::isnan(value)) return static_cast<uint16_t>((bits >> 16) | 0x40);
  uint32_t rounding = 0x7FFF + ((bits >> 16) & 1);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

inline float Fp16ToFloat(uint16_t bits) {
  return static_cast<float>(std::bit_cast<_Float16>(bits));
}

inline uint16_t FloatToFp16(float value) {
  return std::bit_cast<uint16_t>(static_cast<_Float16>(value));
}

}  // namespace seqkv

#endif  // SEQKV_CODEC_FLOAT_BITS_H_
