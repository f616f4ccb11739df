// Vector kernels of the lossless decoder (format 3). Each computes exactly
// what its portable loop does, in integers only, so every kernel decodes a
// payload to the same bits. The kernel is the one of
// predictive::BestVectorKernel (capped by predictive::LimitVectorKernel).
#ifndef SEQKV_CODEC_LOSSLESS_KERNELS_H_
#define SEQKV_CODEC_LOSSLESS_KERNELS_H_

#include <cstddef>
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

// The symbol alphabet of format 3: zigzag residuals of the cell index, then
// the binade of a value in one of the two cells at zero (positive, then
// negative), then the escape (the value follows verbatim).
inline constexpr int kMaxResidual = 20;
inline constexpr uint32_t kNearBase = 2 * kMaxResidual + 1;
inline constexpr uint32_t kMaxBelow = 40;
inline constexpr uint32_t kEscape = kNearBase + 2 * kMaxBelow;

// Uncoded bits of the lossless stream, read by bit position (least
// significant bit of each byte first).
struct RawBits {
  const uint8_t* data = nullptr;
  size_t size = 0;      // bytes
  size_t position = 0;  // bits read so far
};

// What a row's values need besides their symbols (see
// lossless_chunk_coder.h): per value the biased exponent of the step and
// the predicted cell, and of the format the mantissa width and masks.
struct ValueFormat {
  int mant_bits;
  uint32_t exp_all_ones;
  uint32_t sign_mask;
};

// Rebuilds values from their symbols, 16 at a time, as far as it can:
// stops before a group of 16 that holds an escape, a symbol no encoder
// makes, or whose raw bits would be read past the stream's end (the
// caller decodes such a group one value at a time) and returns how many
// values it wrote. Needs the AVX-512 kernel; the portable kernel writes
// none.
uint32_t RebuildValues(predictive::VectorKernel kernel,
                       const ValueFormat& format, const uint8_t* symbols,
                       const int32_t* step_biased, const int32_t* cells,
                       uint32_t n, RawBits& raw, uint32_t* out);

// Predicted cells of a row of n channels: channel d takes fixed[d] where
// paired[d] is 0, else round((a[d] cos[d] + b[d] sin[d]) factor[d])
// clamped to +-kMaxPredictedCell, all in double in that order: every kernel
// gives the same cells, as encoder and decoder must.
inline constexpr int32_t kMaxPredictedCell = int32_t{1} << 20;
void PredictCells(predictive::VectorKernel kernel, const double* a,
                  const double* b, const double* factor, const double* cos,
                  const double* sin, const int32_t* fixed,
                  const uint8_t* paired, uint32_t n, int32_t* cells);

// The encoder's side of RebuildValues: codes values 16 at a time as far as
// it can, writing each value's symbol, its number of raw bits and the raw
// bits themselves; stops before a group of 16 that holds a value needing
// an escape (the caller codes such a group one value at a time) and
// returns how many values it coded. Needs the AVX-512 kernel; the portable
// kernel codes none.
uint32_t CodeValues(predictive::VectorKernel kernel, const ValueFormat& format,
                    const uint32_t* values, const int32_t* step_biased,
                    const int32_t* cells, uint32_t n, uint8_t* symbols,
                    uint8_t* raw_lengths, uint32_t* raw);

}  // namespace seqkv::lossless

#endif  // SEQKV_CODEC_LOSSLESS_KERNELS_H_
