// The per-row work around the residual coder: from stored values to the
// residual that is quantized (encoder) and back (decoder). One function per
// direction does every step in one pass over a row, with loops the compiler
// vectorizes; they are compiled for several instruction sets and picked at
// run time. Every variant rounds identically (no FMA contraction, no
// reassociation), so encoder and decoder agree on any machine.
#ifndef SEQKV_CODEC_PREDICTIVE_ROW_OPS_H_
#define SEQKV_CODEC_PREDICTIVE_ROW_OPS_H_

#include <cstddef>
#include <cstdint>

#include "codec/kv_layout.h"
#include "codec/predictive/rope.h"

// Marks a function to be compiled for AVX-512, AVX2 and the baseline, the
// loader picking one (GCC's function multiversioning). Only for loops whose
// results do not depend on the vector width.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SEQKV_ROW_CLONES \
  __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SEQKV_ROW_CLONES
#endif

namespace seqkv::predictive {

// What lies between one stored row (head_dim values of one token and head)
// and its residual.
struct RowTransform {
  DType dtype = DType::kBF16;
  uint32_t width = 0;                    // head_dim
  const uint16_t* prediction = nullptr;  // bf16 layer-0 row to subtract
  // A row of a reference source (cross-prefix residuals), already in the
  // frame the row is coded in, to subtract; or null. Never set together
  // with `prediction`.
  const float* reference = nullptr;
  const RopeTable* rope = nullptr;  // RoPE to undo, or null
  uint32_t token = 0;               // the row's token within the chunk
};

// Decoder: adds the prediction to `row` (the dequantized residual), applies
// RoPE and writes the row to `dst` in the dtype, rounding to nearest even.
// `row` is scratch afterwards.
void FinishRow(const RowTransform& transform, float* row, std::byte* dst);

// Encoder: loads the stored row from `src`, undoes RoPE and subtracts the
// prediction, leaving the residual in `row`. Returns the sum of squares of
// the stored values, in double (not finite when a value is NaN or Inf).
double StartRow(const RowTransform& transform, const std::byte* src,
                float* row);

// Loads `width` values of `dtype` from `src` as floats (exactly).
void LoadRow(DType dtype, uint32_t width, const std::byte* src, float* row);

}  // namespace seqkv::predictive

#endif  // SEQKV_CODEC_PREDICTIVE_ROW_OPS_H_
