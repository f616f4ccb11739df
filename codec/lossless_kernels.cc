#include "codec/lossless_kernels.h"

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

}  // namespace
#endif

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
