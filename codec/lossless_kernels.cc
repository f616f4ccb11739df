#include "codec/lossless_kernels.h"

#include <cmath>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SEQKV_LOSSLESS_VECTOR_KERNELS 1
#if !defined(__clang__)
// GCC 12 warns about the deliberately undefined vectors inside its own
// AVX-512 intrinsics (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

namespace seqkv::lossless {

using predictive::kNumStates;
using predictive::kProbBits;
using predictive::kProbScale;
using predictive::kRansLow;
using predictive::RansDecoder;
using predictive::VectorKernel;

#ifdef SEQKV_LOSSLESS_VECTOR_KERNELS
namespace {

// 16 states (lanes) step at once; lanes below kRansLow take the next words
// of the stream in lane order, the order the portable loop reads them in.
// Loads exactly 16 words at p: the caller keeps 16 words in the stream.
__attribute__((target("avx512f"))) inline void Step16(uint32_t* states,
                                                      const uint32_t* entries,
                                                      const uint32_t* table_of,
                                                      const std::byte*& p,
                                                      uint8_t* out) {
  __m512i x = _mm512_loadu_si512(states);
  const __m512i index =
      _mm512_add_epi32(_mm512_loadu_si512(table_of),
                       _mm512_and_si512(x, _mm512_set1_epi32(kProbScale - 1)));
  const __m512i e = _mm512_i32gather_epi32(index, entries, 4);
  const __m512i low12 = _mm512_set1_epi32(0xFFF);
  const __m512i freq = _mm512_and_si512(_mm512_srli_epi32(e, 12), low12);
  x = _mm512_add_epi32(
      _mm512_mullo_epi32(freq, _mm512_srli_epi32(x, kProbBits)),
      _mm512_and_si512(e, low12));
  const __mmask16 refill =
      _mm512_cmplt_epu32_mask(x, _mm512_set1_epi32(kRansLow));
  const __m512i words = _mm512_cvtepu16_epi32(
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  x = _mm512_mask_or_epi32(x, refill, _mm512_slli_epi32(x, 16),
                           _mm512_maskz_expand_epi32(refill, words));
  p += 2 * __builtin_popcount(refill);
  _mm512_storeu_si512(states, x);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out),
                   _mm512_cvtepi32_epi8(_mm512_srli_epi32(e, 24)));
}

__attribute__((target("avx512f"))) uint32_t DecodeSymbolsAvx512(
    RansDecoder& rans, const uint32_t* entries, const uint32_t* table_of,
    uint32_t n, uint8_t* out) {
  // Vector steps need the next state to be lane 0 of a group of 16.
  if (rans.position() % 16 != 0) return 0;
  uint32_t* states = rans.states();
  const std::byte* p = rans.next();
  size_t words = rans.words_left();
  size_t position = rans.position();
  uint32_t d = 0;
  // Each step consumes at most 16 words and reads exactly 16.
  for (; d + 16 <= n && words >= 16; d += 16, position += 16) {
    const std::byte* before = p;
    Step16(states + (position & (kNumStates - 1)), entries, table_of + d, p,
           out + d);
    words -= static_cast<size_t>(p - before) / 2;
  }
  rans.Advance(d, p);
  return d;
}

// Shifts lanes up by s (lane i takes lane i - s), zeros below.
#define SEQKV_LANES_UP(x, s) \
  _mm512_alignr_epi32((x), _mm512_setzero_si512(), 16 - (s))

__attribute__((target("avx512f"))) uint32_t RebuildAvx512(
    const ValueFormat& format, const uint8_t* symbols,
    const int32_t* step_biased, const int32_t* cells, uint32_t n, RawBits& raw,
    uint32_t* out) {
  const __m512i zero = _mm512_setzero_si512();
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i m = _mm512_set1_epi32(format.mant_bits);
  const __m512i mant_mask = _mm512_set1_epi32((1 << format.mant_bits) - 1);
  const __m512i all_ones = _mm512_set1_epi32(format.exp_all_ones);
  const __m512i sign = _mm512_set1_epi32(format.sign_mask);
  const __m512i near_base = _mm512_set1_epi32(kNearBase);
  const __m512i max_below = _mm512_set1_epi32(kMaxBelow);
  size_t position = raw.position;
  uint32_t d = 0;
  for (; d + 16 <= n; d += 16) {
    const __m512i symbol = _mm512_cvtepu8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(symbols + d)));
    if (_mm512_cmplt_epu32_mask(symbol, _mm512_set1_epi32(kEscape)) != 0xFFFF)
      break;  // an escape or an invalid symbol
    const __mmask16 residual = _mm512_cmplt_epu32_mask(symbol, near_base);
    const __mmask16 near = static_cast<__mmask16>(~residual);
    const __m512i step = _mm512_loadu_si512(step_biased + d);

    // Residual lanes: cell n = predicted + residual, |x| in binade top.
    const __m512i r =
        _mm512_xor_si512(_mm512_srli_epi32(symbol, 1),
                         _mm512_sub_epi32(zero, _mm512_and_si512(symbol, one)));
    const __m512i cell = _mm512_add_epi32(_mm512_loadu_si512(cells + d), r);
    const __m512i c = _mm512_xor_si512(cell, _mm512_srai_epi32(cell, 31));
    __mmask16 bad = _mm512_mask_cmpeq_epi32_mask(residual, c, zero);
    // floor(log2 c) from the float exponent (c < 2^24 converts exactly).
    const __m512i top = _mm512_sub_epi32(
        _mm512_srli_epi32(_mm512_castps_si512(_mm512_cvtepi32_ps(c)), 23),
        _mm512_set1_epi32(127));
    const __m512i exponent_r = _mm512_add_epi32(step, top);
    bad |= _mm512_mask_cmpge_epi32_mask(residual, exponent_r, all_ones);
    const __mmask16 wide = _mm512_mask_cmple_epi32_mask(residual, top, m);
    const __mmask16 narrow = residual & static_cast<__mmask16>(~wide);
    const __m512i k_r = _mm512_maskz_sub_epi32(wide, m, top);
    const __m512i drop = _mm512_maskz_sub_epi32(narrow, top, m);
    const __m512i dropped = _mm512_and_si512(
        c, _mm512_sub_epi32(_mm512_sllv_epi32(one, drop), one));
    bad |= _mm512_mask_test_epi32_mask(narrow, dropped, dropped);
    const __m512i mantissa_r = _mm512_mask_blend_epi32(
        wide, _mm512_srlv_epi32(c, drop), _mm512_sllv_epi32(c, k_r));
    const __m512i magnitude_r =
        _mm512_or_si512(_mm512_sllv_epi32(exponent_r, m),
                        _mm512_and_si512(mantissa_r, mant_mask));

    // Near-zero lanes: the binade below the step, the mantissa raw.
    const __m512i index = _mm512_sub_epi32(symbol, near_base);
    const __mmask16 negative_near =
        _mm512_mask_cmpge_epu32_mask(near, index, max_below);
    const __m512i below = _mm512_add_epi32(
        _mm512_mask_sub_epi32(index, negative_near, index, max_below), one);
    const __m512i exponent_n = _mm512_sub_epi32(step, below);
    bad |= _mm512_mask_cmplt_epi32_mask(near, exponent_n, zero);
    if (bad) break;
    const __m512i magnitude_n = _mm512_sllv_epi32(exponent_n, m);

    // Raw bits: lane i starts after the bits of lanes 0..i-1.
    const __m512i k = _mm512_mask_blend_epi32(residual, m, k_r);
    __m512i end = k;
    end = _mm512_add_epi32(end, SEQKV_LANES_UP(end, 1));
    end = _mm512_add_epi32(end, SEQKV_LANES_UP(end, 2));
    end = _mm512_add_epi32(end, SEQKV_LANES_UP(end, 4));
    end = _mm512_add_epi32(end, SEQKV_LANES_UP(end, 8));
    const uint32_t total = static_cast<uint32_t>(_mm512_reduce_add_epi32(k));
    // Each lane loads 4 bytes from its first byte: all inside the stream.
    if (((position + total) >> 3) + 4 > raw.size) break;
    const __m512i start = _mm512_add_epi32(_mm512_sub_epi32(end, k),
                                           _mm512_set1_epi32(position & 7));
    const __m512i words = _mm512_i32gather_epi32(_mm512_srli_epi32(start, 3),
                                                 raw.data + (position >> 3), 1);
    const __m512i bits = _mm512_and_si512(
        _mm512_srlv_epi32(words, _mm512_and_si512(start, _mm512_set1_epi32(7))),
        _mm512_sub_epi32(_mm512_sllv_epi32(one, k), one));
    position += total;

    const __mmask16 negative =
        (residual & _mm512_cmplt_epi32_mask(cell, zero)) | negative_near;
    __m512i value = _mm512_or_si512(
        _mm512_mask_blend_epi32(residual, magnitude_n, magnitude_r), bits);
    value = _mm512_mask_or_epi32(value, negative, value, sign);
    _mm512_storeu_si512(out + d, value);
  }
  raw.position = position;
  return d;
}

#undef SEQKV_LANES_UP

__attribute__((target("avx512f"))) uint32_t PredictAvx512(
    const double* a, const double* b, const double* factor, const double* cos,
    const double* sin, const int32_t* fixed, const uint8_t* paired, uint32_t n,
    int32_t* cells) {
  const __m512d half = _mm512_set1_pd(0.5);
  const __m512d low = _mm512_set1_pd(-double{kMaxPredictedCell});
  const __m512d high = _mm512_set1_pd(double{kMaxPredictedCell});
  uint32_t d = 0;
  for (; d + 8 <= n; d += 8) {
    const __m512d v = _mm512_add_pd(
        _mm512_mul_pd(_mm512_loadu_pd(a + d), _mm512_loadu_pd(cos + d)),
        _mm512_mul_pd(_mm512_loadu_pd(b + d), _mm512_loadu_pd(sin + d)));
    __m512d r = _mm512_roundscale_pd(
        _mm512_add_pd(_mm512_mul_pd(v, _mm512_loadu_pd(factor + d)), half),
        _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    r = _mm512_min_pd(_mm512_max_pd(r, low), high);  // NaN: low
    int use = 0;
    for (int j = 0; j < 8; ++j) use |= (paired[d + j] != 0) << j;
    r = _mm512_mask_blend_pd(static_cast<__mmask8>(use),
                             _mm512_cvtepi32_pd(_mm256_loadu_si256(
                                 reinterpret_cast<const __m256i*>(fixed + d))),
                             r);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(cells + d),
                        _mm512_cvtpd_epi32(r));
  }
  return d;
}

__attribute__((target("avx512f"))) uint32_t CodeAvx512(
    const ValueFormat& format, const uint32_t* values,
    const int32_t* step_biased, const int32_t* cells, uint32_t n,
    uint8_t* symbols, uint8_t* raw_lengths, uint32_t* raw) {
  const __m512i zero = _mm512_setzero_si512();
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i m = _mm512_set1_epi32(format.mant_bits);
  const __m512i mant_mask = _mm512_set1_epi32((1 << format.mant_bits) - 1);
  const __m512i all_ones = _mm512_set1_epi32(format.exp_all_ones);
  const __m512i sign = _mm512_set1_epi32(format.sign_mask);
  const __m512i implicit = _mm512_set1_epi32(1 << format.mant_bits);
  // Cells below 2^22 need shifts of the significand up to 22 - mant - 1.
  const __m512i max_shift = _mm512_set1_epi32(21 - format.mant_bits);
  uint32_t d = 0;
  for (; d + 16 <= n; d += 16) {
    const __m512i bits = _mm512_loadu_si512(values + d);
    const __m512i step = _mm512_loadu_si512(step_biased + d);
    const __m512i magnitude = _mm512_andnot_si512(sign, bits);
    const __mmask16 negative = _mm512_test_epi32_mask(bits, sign);
    const __m512i exponent = _mm512_srlv_epi32(magnitude, m);
    const __m512i mantissa = _mm512_and_si512(magnitude, mant_mask);
    __mmask16 escape = _mm512_cmpeq_epi32_mask(exponent, all_ones);
    const __mmask16 near = _mm512_cmplt_epi32_mask(exponent, step);
    const __mmask16 far = static_cast<__mmask16>(~near);

    // Near zero: the binade below the step, the mantissa raw.
    const __m512i below = _mm512_sub_epi32(step, exponent);
    escape |=
        _mm512_mask_cmpgt_epi32_mask(near, below, _mm512_set1_epi32(kMaxBelow));
    __m512i symbol_n =
        _mm512_add_epi32(below, _mm512_set1_epi32(kNearBase - 1));
    symbol_n = _mm512_mask_add_epi32(symbol_n, negative, symbol_n,
                                     _mm512_set1_epi32(kMaxBelow));

    // Away from zero: cell c = significand shifted to the step's scale.
    const __m512i significand = _mm512_or_si512(implicit, mantissa);
    const __m512i shift = _mm512_sub_epi32(_mm512_sub_epi32(exponent, step), m);
    escape |= _mm512_mask_cmpgt_epi32_mask(far, shift, max_shift);
    const __mmask16 up = _mm512_cmpge_epi32_mask(shift, zero);
    const __m512i c = _mm512_mask_blend_epi32(
        up, _mm512_srlv_epi32(significand, _mm512_sub_epi32(zero, shift)),
        _mm512_sllv_epi32(significand, shift));
    const __m512i cell =
        _mm512_mask_sub_epi32(c, negative, _mm512_sub_epi32(zero, c), one);
    const __m512i residual =
        _mm512_sub_epi32(cell, _mm512_loadu_si512(cells + d));
    escape |= _mm512_mask_cmpgt_epi32_mask(far, _mm512_abs_epi32(residual),
                                           _mm512_set1_epi32(kMaxResidual));
    if (escape) break;
    const __m512i symbol_r = _mm512_xor_si512(_mm512_slli_epi32(residual, 1),
                                              _mm512_srai_epi32(residual, 31));
    const __m512i top = _mm512_sub_epi32(
        _mm512_srli_epi32(_mm512_castps_si512(_mm512_cvtepi32_ps(c)), 23),
        _mm512_set1_epi32(127));
    const __m512i k_r =
        _mm512_maskz_sub_epi32(_mm512_cmple_epi32_mask(top, m), m, top);
    const __m512i k = _mm512_mask_blend_epi32(near, k_r, m);
    const __m512i low = _mm512_and_si512(
        magnitude, _mm512_sub_epi32(_mm512_sllv_epi32(one, k), one));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(symbols + d),
                     _mm512_cvtepi32_epi8(
                         _mm512_mask_blend_epi32(near, symbol_r, symbol_n)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(raw_lengths + d),
                     _mm512_cvtepi32_epi8(k));
    _mm512_storeu_si512(raw + d, low);
  }
  return d;
}

}  // namespace
#endif

uint32_t RebuildValues(VectorKernel kernel, const ValueFormat& format,
                       const uint8_t* symbols, const int32_t* step_biased,
                       const int32_t* cells, uint32_t n, RawBits& raw,
                       uint32_t* out) {
#ifdef SEQKV_LOSSLESS_VECTOR_KERNELS
  if (kernel == VectorKernel::kAvx512)
    return RebuildAvx512(format, symbols, step_biased, cells, n, raw, out);
#endif
  (void)kernel, (void)format, (void)symbols, (void)step_biased, (void)cells,
      (void)n, (void)raw, (void)out;
  return 0;
}

uint32_t CodeValues(VectorKernel kernel, const ValueFormat& format,
                    const uint32_t* values, const int32_t* step_biased,
                    const int32_t* cells, uint32_t n, uint8_t* symbols,
                    uint8_t* raw_lengths, uint32_t* raw) {
#ifdef SEQKV_LOSSLESS_VECTOR_KERNELS
  if (kernel == VectorKernel::kAvx512)
    return CodeAvx512(format, values, step_biased, cells, n, symbols,
                      raw_lengths, raw);
#endif
  (void)kernel, (void)format, (void)values, (void)step_biased, (void)cells,
      (void)n, (void)symbols, (void)raw_lengths, (void)raw;
  return 0;
}

void PredictCells(VectorKernel kernel, const double* a, const double* b,
                  const double* factor, const double* cos, const double* sin,
                  const int32_t* fixed, const uint8_t* paired, uint32_t n,
                  int32_t* cells) {
  uint32_t d = 0;
#ifdef SEQKV_LOSSLESS_VECTOR_KERNELS
  if (kernel == VectorKernel::kAvx512)
    d = PredictAvx512(a, b, factor, cos, sin, fixed, paired, n, cells);
#else
  (void)kernel;
#endif
  for (; d < n; ++d) {
    if (!paired[d]) {
      cells[d] = fixed[d];
      continue;
    }
    const double v = a[d] * cos[d] + b[d] * sin[d];
    const double r = std::floor(v * factor[d] + 0.5);
    cells[d] = !(r > -kMaxPredictedCell)  ? -kMaxPredictedCell
               : !(r < kMaxPredictedCell) ? kMaxPredictedCell
                                          : static_cast<int32_t>(r);
  }
}

void DecodeSymbols(VectorKernel kernel, RansDecoder& rans,
                   const uint32_t* entries, const uint32_t* table_of,
                   uint32_t n, uint8_t* out) {
  uint32_t done = 0;
#ifdef SEQKV_LOSSLESS_VECTOR_KERNELS
  if (kernel == VectorKernel::kAvx512)
    done = DecodeSymbolsAvx512(rans, entries, table_of, n, out);
#else
  (void)kernel;
#endif
  if (done < n) rans.GetSymbols(entries, table_of + done, n - done, out + done);
}

}  // namespace seqkv::lossless
