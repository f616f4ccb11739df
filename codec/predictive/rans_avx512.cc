#include "codec/predictive/rans_avx512.h"

#include <atomic>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SEQKV_HAVE_AVX512_KERNEL 1
// GCC 12 warns about the deliberately undefined vectors inside its own
// AVX-512 intrinsics (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace seqkv::predictive {
namespace {
std::atomic<bool> avx512_allowed{true};
}  // namespace

void SetAvx512Allowed(bool allowed) {
  avx512_allowed.store(allowed, std::memory_order_relaxed);
}

#ifdef SEQKV_HAVE_AVX512_KERNEL

bool CanDecodeWithAvx512() {
  static const bool supported = __builtin_cpu_supports("avx512f");
  return supported && avx512_allowed.load(std::memory_order_relaxed);
}

namespace {

struct Constants {
  __m512i slot_mask;
  __m512i low12;
  __m512i rans_low;
  __m512i escape;
  __m512 step;
};

// One rANS step for 16 states (lanes) at once, then dequantization. Lanes
// that fall below kRansLow take the next words of the stream in lane
// order, which is the order the portable loop reads them in.
__attribute__((target("avx512f"))) inline __m512i Step(
    __m512i x, const uint32_t* entries, const uint32_t* table_of,
    const float* offsets, const Constants& k, const std::byte*& p,
    __mmask16& escapes, uint8_t* symbols, float* row) {
  const __m512i index = _mm512_add_epi32(_mm512_loadu_si512(table_of),
                                         _mm512_and_si512(x, k.slot_mask));
  const __m512i e = _mm512_i32gather_epi32(index, entries, 4);
  const __m512i freq = _mm512_and_si512(_mm512_srli_epi32(e, 12), k.low12);
  x = _mm512_add_epi32(
      _mm512_mullo_epi32(freq, _mm512_srli_epi32(x, kProbBits)),
      _mm512_and_si512(e, k.low12));
  const __mmask16 refill = _mm512_cmplt_epu32_mask(x, k.rans_low);
  const __m512i words = _mm512_cvtepu16_epi32(
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  x = _mm512_mask_or_epi32(x, refill, _mm512_slli_epi32(x, 16),
                           _mm512_maskz_expand_epi32(refill, words));
  p += 2 * __builtin_popcount(refill);

  const __m512i symbol = _mm512_srli_epi32(e, 24);
  escapes |= _mm512_cmpeq_epi32_mask(symbol, k.escape);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(symbols),
                   _mm512_cvtepi32_epi8(symbol));
  const __m512 value = _mm512_mul_ps(
      _mm512_add_ps(_mm512_cvtepi32_ps(symbol), _mm512_loadu_ps(offsets)),
      k.step);
  _mm512_storeu_ps(row, value);
  return x;
}

}  // namespace

__attribute__((target("avx512f"))) bool DecodeRowAvx512(
    RansDecoder& rans, const uint32_t* entries, const uint32_t* table_of,
    const float* offsets, float step, uint32_t width, uint8_t escape,
    uint8_t* symbols, float* row) {
  static_assert(kNumStates == 64, "four registers of 16 states");
  const Constants k{_mm512_set1_epi32(kProbScale - 1), _mm512_set1_epi32(0xFFF),
                    _mm512_set1_epi32(kRansLow), _mm512_set1_epi32(escape),
                    _mm512_set1_ps(step)};
  uint32_t* states = rans.states();
  __m512i x0 = _mm512_loadu_si512(states);
  __m512i x1 = _mm512_loadu_si512(states + 16);
  __m512i x2 = _mm512_loadu_si512(states + 32);
  __m512i x3 = _mm512_loadu_si512(states + 48);
  const std::byte* p = rans.next();
  __mmask16 escapes = 0;
  // Every step reads at most 16 words and loads exactly 16: with `width`
  // words left no load passes the end of the stream.
  for (uint32_t d = 0; d < width; d += kNumStates) {
    x0 = Step(x0, entries, table_of + d, offsets + d, k, p, escapes,
              symbols + d, row + d);
    x1 = Step(x1, entries, table_of + d + 16, offsets + d + 16, k, p, escapes,
              symbols + d + 16, row + d + 16);
    x2 = Step(x2, entries, table_of + d + 32, offsets + d + 32, k, p, escapes,
              symbols + d + 32, row + d + 32);
    x3 = Step(x3, entries, table_of + d + 48, offsets + d + 48, k, p, escapes,
              symbols + d + 48, row + d + 48);
  }
  _mm512_storeu_si512(states, x0);
  _mm512_storeu_si512(states + 16, x1);
  _mm512_storeu_si512(states + 32, x2);
  _mm512_storeu_si512(states + 48, x3);
  rans.Advance(width, p);
  return escapes != 0;
}

#else  // !SEQKV_HAVE_AVX512_KERNEL

bool CanDecodeWithAvx512() { return false; }
bool DecodeRowAvx512(RansDecoder&, const uint32_t*, const uint32_t*,
                     const float*, float, uint32_t, uint8_t, uint8_t*, float*) {
  return false;
}

#endif

}  // namespace seqkv::predictive
