// Vector kernels for the hot loop of the predictive decoder: rANS-decode
// one row of symbols, 16 (AVX-512) or 8 (AVX2) states per register, and
// dequantize it. They compute exactly what the portable loop does (same
// integer steps, same float operations in the same order), so every kernel
// decodes a payload to the same bits.
#ifndef SEQKV_CODEC_PREDICTIVE_RANS_VECTOR_H_
#define SEQKV_CODEC_PREDICTIVE_RANS_VECTOR_H_

#include <cstdint>
#include <span>
#include <vector>

#include "codec/predictive/rans.h"

namespace seqkv::predictive {

enum class VectorKernel { kPortable, kAvx2, kAvx512 };

// The fastest kernel this CPU (and compiler) can run, within the limit set
// by LimitVectorKernel.
VectorKernel BestVectorKernel();

// Caps BestVectorKernel (kAvx512, the default, caps nothing), so that
// tests and benchmarks can run every kernel on one CPU.
void LimitVectorKernel(VectorKernel limit);

// Decodes the next `width` symbols of `rans`, symbol d with the table at
// entries + table_of[d], into symbols[d], and writes
// row[d] = (symbol + offsets[d]) * steps[d]. Needs a kernel other than
// kPortable that the CPU runs, width % kNumStates == 0,
// rans.position() % kNumStates == 0 and rans.words_left() >= width.
// Returns true when any symbol is `escape`.
bool DecodeRow(VectorKernel kernel, RansDecoder& rans, const uint32_t* entries,
               const uint32_t* table_of, const float* offsets,
               const float* steps, uint32_t width, uint8_t escape,
               uint8_t* symbols, float* row);

// Appends one table (kAlphabetSize symbols) for EncodeRowAvx512 to
// `tables`: freq | start << 16 per symbol.
void AddVectorEncodeTable(std::span<const uint16_t> freqs,
                          std::vector<uint32_t>& tables);

// Encodes the `width` symbols of one row, last to first, exactly as
// RansEncoder::Put would: symbol d with the table starting at
// tables + table_of[d]. Needs the AVX-512 kernel, width % kNumStates == 0
// and the row's first position a multiple of kNumStates.
void EncodeRowAvx512(RansEncoder& encoder, const uint8_t* symbols,
                     const uint32_t* table_of, const uint32_t* tables,
                     uint32_t width);

}  // namespace seqkv::predictive

#endif  // SEQKV_CODEC_PREDICTIVE_RANS_VECTOR_H_
