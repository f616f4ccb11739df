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

// Turns the pair (a, b) by the angle with cosine c and sine s, or back
// (kUndo). Written out per direction, so each rounds exactly as before.
// Loads a row of the stored dtype as floats (exact). Inline, so that each
// instruction-set clone of its callers vectorizes it.
inline void LoadRowInline(DType dtype, uint32_t width,
                          const std::byte* __restrict src,
                          float* __restrict row) {
  switch (dtype) {
    case DType::kBF16:
      for (uint32_t i = 0; i < width; ++i) {
        uint16_t bits;
        std::memcpy(&bits, src + 2 * size_t{i}, 2);
        row[i] = Bf16ToFloat(bits);
      }
      return;
    case DType::kFP16:
      for (uint32_t i = 0; i < width; ++i) {
        uint16_t bits;
        std::memcpy(&bits, src + 2 * size_t{i}, 2);
        row[i] = Fp16ToFloat(bits);
      }
      return;
    case DType::kFP32:
      std::memcpy(row, src, 4 * size_t{width});
      return;
  }
}

template <bool kUndo>
[[gnu::always_inline]] inline void TurnPair(float& a, float& b, float c,
                                            float s) {
  const float x = a;
  const float y = b;
  if constexpr (kUndo) {
    a = x * c + y * s;
    b = y * c - x * s;
  } else {
    a = x * c - y * s;
    b = y * c + x * s;
  }
}

// Applies RoPE to a row at its token's position (or undoes it), in the
// layout's pairing: (2i, 2i + 1) interleaved, (i, i + half) rotate_half.
template <bool kUndo>
[[gnu::always_inline]] inline void RotateRow(const RowTransform& transform,
                                             float* __restrict row) {
  const RopeTable& rope = *transform.rope;
  const float* __restrict c = rope.cos(transform.token);
  const float* __restrict s = rope.sin(transform.token);
  const uint32_t half = rope.half();
  if (rope.style() == RopeStyle::kInterleaved) {
    for (uint32_t i = 0; i < half; ++i)
      TurnPair<kUndo>(row[2 * i], row[2 * i + 1], c[i], s[i]);
  } else {
    float* __restrict lo = row;
    float* __restrict hi = row + half;
    for (uint32_t i = 0; i < half; ++i)
      TurnPair<kUndo>(lo[i], hi[i], c[i], s[i]);
  }
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
  if (transform.reference != nullptr) {
    const float* __restrict reference = transform.reference;
    for (uint32_t i = 0; i < width; ++i) row[i] += reference[i];
  }
  if (transform.rope != nullptr) RotateRow</*kUndo=*/false>(transform, row);
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
  LoadRowInline(transform.dtype, width, src, row);
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

  if (transform.rope != nullptr) RotateRow</*kUndo=*/true>(transform, row);
  if (transform.prediction != nullptr) {
    const uint16_t* __restrict prediction = transform.prediction;
    for (uint32_t i = 0; i < width; ++i) row[i] -= Bf16ToFloat(prediction[i]);
  }
  if (transform.reference != nullptr) {
    const float* __restrict reference = transform.reference;
    for (uint32_t i = 0; i < width; ++i) row[i] -= reference[i];
  }
  return energy;
}

void LoadRow(DType dtype, uint32_t width, const std::byte* __restrict src,
             float* __restrict row) {
  LoadRowInline(dtype, width, src, row);
}

}  // namespace seqkv::predictive
