// Vector kernels of the lossless decoder (format 3). Each computes exactly
// what its portable loop does, in integers only, so every kernel decodes a
// payload to the same bits. The kernel is the one of
// predictive::BestVectorKernel (capped by predictive::LimitVectorKernel).
#ifndef SEQKV_CODEC_LOSSLESS_KERNELS_H_
#define SEQKV_CODEC_LOSSLESS_KERNELS_H_

#include <cstdint>

#include "codec/predictive/rans.h"
#include "codec/predictive/rans_vector.h"

namespace seqkv::lossless {

// Decodes the next `n` symbols of `rans`, symbol d with the table at
// entries + table_of[d], into out[0..n). Safe on any input (reads past the
// stream's end yield zero words, as RansDecoder's own loop does).
void DecodeSymbols(predictive::VectorKernel kernel,
                   predictive::RansDecoder& rans, const uint32_t* entries,
                   const uint32_t* table_of, uint32_t n, uint8_t* out);

}  // namespace seqkv::lossless

#endif  // SEQKV_CODEC_LOSSLESS_KERNELS_H_
