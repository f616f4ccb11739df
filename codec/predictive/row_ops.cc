#include "codec/predictive/row_ops.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "codec/float_bits.h"

namespace seqkv::predictive {
namespace {

inline float Bf16ToFloat(uint16_t bits) {
  return std::bit_cast<float>(uint32_t{bits} << 16);
}

// Round to nearest even. Finite inputs only; decoded values are never NaN
// unless the payload is garbage, which the checksum rejects first.
inline uint16_t FloatToBf16Bits(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  return static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
}

}  // namespace

SEQKV_ROW_CLONES
void FinishRow(const RowTransform& transform, float* __restrict row,
               std::byte* __restrict dst) {
  const uint32_t width = transform.width;
  if (transform.prediction != nullptr) {
    const uint16_t* __restrict prediction = transform.prediction;
    for (uint32_t i = 0; i < width; ++i) row[i] += Bf16ToFloat(prediction[i]);
  }
  if (transform.rope != nullptr) {
    const RopeTable& rope = *transform.rope;
    const float* __restrict c = rope.cos(transform.token);
    const float* __restrict s = rope.sin(transform.token);
    const uint32_t half = rope.half();
    if (rope.style() == RopeStyle::kInterleaved) {
      for (uint32_t i = 0; i < half; ++i) {
        const float a = row[2 * i];
        const float b = row[2 * i + 1];
        row[2 * i] = a * c[i] - b * s[i];
        row[2 * i + 1] = b * c[i] + a * s[i];
      }
    } else {  // rotate_half: pairs (i, i + half)
      float* __restrict lo = row;
      float* __restrict hi = row + half;
      for (uint32_t i = 0; i < half; ++i) {
        const float a = lo[i];
        const float b = hi[i];
        lo[i] = a * c[i] - b * s[i];
        hi[i] = b * c[i] + a * s[i];
      }
    }
  }
  // Stores go through memcpy: the output has no alignment.
  switch (transform.dtype) {
    case DType::kBF16:
      for (uint32_t i = 0; i < width; ++i) {
        const uint16_t bits = FloatToBf16Bits(row[i]);
        std::memcpy(dst + 2 * size_t{i}, &bits, 2);
      }
      return;
    case DType::kFP16:
      for (uint32_t i = 0; i < width; ++i) {
        const uint16_t bits = FloatToFp16(row[i]);
        std::memcpy(dst + 2 * size_t{i}, &bits, 2);
      }
      return;
    case DType::kFP32:
      std::memcpy(dst, row, 4 * size_t{width});
      return;
  }
}

SEQKV_ROW_CLONES
double StartRow(const RowTransform& transform, const std::byte* __restrict src,
                float* __restrict row) {
  const uint32_t width = transform.width;
  switch (transform.dtype) {
    case DType::kBF16:
      for (uint32_t i = 0; i < width; ++i) {
        uint16_t bits;
        std::memcpy(&bits, src + 2 * size_t{i}, 2);
        row[i] = Bf16ToFloat(bits);
      }
      break;
    case DType::kFP16:
      for (uint32_t i = 0; i < width; ++i) {
        uint16_t bits;
        std::memcpy(&bits, src + 2 * size_t{i}, 2);
        row[i] = Fp16ToFloat(bits);
      }
      break;
    case DType::kFP32:
      std::memcpy(row, src, 4 * size_t{width});
      break;
  }
  // Sum of squares in independent double lanes (a single accumulator would
  // serialize on the adder's latency); squares of floats fit a double.
  constexpr int kLanes = 8;
  double lanes[kLanes] = {};
  uint32_t i = 0;
  for (; i + kLanes <= width; i += kLanes)
    for (int j = 0; j < kLanes; ++j)
      lanes[j] += double{row[i + j]} * double{row[i + j]};
  double energy = 0;
  for (; i < width; ++i) energy += double{row[i]} * double{row[i]};
  for (double lane : lanes) energy += lane;

  if (transform.rope != nullptr) {
    const RopeTable& rope = *transform.rope;
    const float* __restrict c = rope.cos(transform.token);
    const float* __restrict s = rope.sin(transform.token);
    const uint32_t half = rope.half();
    if (rope.style() == RopeStyle::kInterleaved) {
      for (uint32_t i = 0; i < half; ++i) {
        const float a = row[2 * i];
        const float b = row[2 * i + 1];
        row[2 * i] = a * c[i] + b * s[i];
        row[2 * i + 1] = b * c[i] - a * s[i];
      }
    } else {
      float* __restrict lo = row;
      float* __restrict hi = row + half;
      for (uint32_t i = 0; i < half; ++i) {
        const float a = lo[i];
        const float b = hi[i];
        lo[i] = a * c[i] + b * s[i];
        hi[i] = b * c[i] - a * s[i];
      }
    }
  }
  if (transform.prediction != nullptr) {
    const uint16_t* __restrict prediction = transform.prediction;
    for (uint32_t i = 0; i < width; ++i) row[i] -= Bf16ToFloat(prediction[i]);
  }
  return energy;
}

}  // namespace seqkv::predictive
