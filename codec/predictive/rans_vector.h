// Vector kernels for the hot loop of the predictive decoder: rANS-decode
// one row of symbols, 16 (AVX-512) or 8 (AVX2) states per register, and
// dequantize it. They compute exactly what the portable loop does (same
// integer steps, same float operations in the same order), so every kernel
// decodes a payload to the same bits.
#ifndef SEQKV_CODEC_PREDICTIVE_RANS_VECTOR_H_
#define SEQKV_CODEC_PREDICTIVE_RANS_VECTOR_H_

#include <cstdint>

#include "codec/predictive/rans.h"

namespace seqkv::predictive {

enum class DecodeKernel { kPortable, kAvx2, kAvx512 };

// The fastest kernel this CPU (and compiler) can run, within the limit set
// by LimitDecodeKernel.
DecodeKernel BestDecodeKernel();

// Caps BestDecodeKernel (kAvx512, the default, caps nothing), so that
// tests and benchmarks can run every kernel on one CPU.
void LimitDecodeKernel(DecodeKernel limit);

// Decodes the next `width` symbols of `rans`, symbol d with the table at
// entries + table_of[d], into symbols[d], and writes
// row[d] = (symbol + offsets[d]) * step. Needs a kernel other than
// kPortable that the CPU runs, width % kNumStates == 0,
// rans.position() % kNumStates == 0 and rans.words_left() >= width.
// Returns true when any symbol is `escape`.
bool DecodeRow(DecodeKernel kernel, RansDecoder& rans, const uint32_t* entries,
               const uint32_t* table_of, const float* offsets, float step,
               uint32_t width, uint8_t escape, uint8_t* symbols, float* row);

}  // namespace seqkv::predictive

#endif  // SEQKV_CODEC_PREDICTIVE_RANS_VECTOR_H_
