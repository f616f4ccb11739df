// An AVX-512 kernel for the hot loop of the predictive decoder: rANS-decode
// one row of symbols, 16 states per vector register, and dequantize it. It
// computes exactly what the portable loop does (same float operations, in
// the same order), so both decode a payload to the same bits.
#ifndef SEQKV_CODEC_PREDICTIVE_RANS_AVX512_H_
#define SEQKV_CODEC_PREDICTIVE_RANS_AVX512_H_

#include <cstdint>

#include "codec/predictive/rans.h"

namespace seqkv::predictive {

// True when the CPU (and the compiler) can run DecodeRowAvx512, and tests
// have not switched it off.
bool CanDecodeWithAvx512();

// Makes CanDecodeWithAvx512 false (or true again where supported), so that
// tests and benchmarks can run the portable loop on any CPU.
void SetAvx512Allowed(bool allowed);

// Decodes the next `width` symbols of `rans`, symbol d with the table at
// entries + table_of[d], into symbols[d], and writes
// row[d] = (symbol + offsets[d]) * step. Needs width % kNumStates == 0,
// rans.position() % kNumStates == 0 and rans.words_left() >= width.
// Returns true when any symbol is `escape`.
bool DecodeRowAvx512(RansDecoder& rans, const uint32_t* entries,
                     const uint32_t* table_of, const float* offsets, float step,
                     uint32_t width, uint8_t escape, uint8_t* symbols,
                     float* row);

}  // namespace seqkv::predictive

#endif  // SEQKV_CODEC_PREDICTIVE_RANS_AVX512_H_
