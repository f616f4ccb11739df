#include "codec/predictive/rans_vector.h"

#include <algorithm>
#include <array>
#include <atomic>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SEQKV_HAVE_VECTOR_KERNELS 1
#if !defined(__clang__)
// GCC 12 warns about the deliberately undefined vectors inside its own
// AVX-512 intrinsics (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

namespace seqkv::predictive {
namespace {
std::atomic<VectorKernel> kernel_limit{VectorKernel::kAvx512};
}  // namespace

void LimitVectorKernel(VectorKernel limit) {
  kernel_limit.store(limit, std::memory_order_relaxed);
}

void AddVectorEncodeTable(std::span<const uint16_t> freqs,
                          std::vector<uint32_t>& tables) {
  uint32_t start = 0;
  for (int s = 0; s < kAlphabetSize; ++s) {
    tables.push_back(freqs[s] | start << 16);
    start += freqs[s];
  }
}

#ifdef SEQKV_HAVE_VECTOR_KERNELS

VectorKernel BestVectorKernel() {
  static const VectorKernel supported =
      __builtin_cpu_supports("avx512f") ? VectorKernel::kAvx512
      : __builtin_cpu_supports("avx2")  ? VectorKernel::kAvx2
                                        : VectorKernel::kPortable;
  return std::min(supported, kernel_limit.load(std::memory_order_relaxed));
}

namespace {

struct Constants {
  __m512i slot_mask;
  __m512i low12;
  __m512i rans_low;
  __m512i escape;
};

// One rANS step for 16 states (lanes) at once, then dequantization. Lanes
// that fall below kRansLow take the next words of the stream in lane
// order, which is the order the portable loop reads them in.
__attribute__((target("avx512f"))) inline __m512i Step(
    __m512i x, const uint32_t* entries, const uint32_t* table_of,
    const float* offsets, const float* steps, const Constants& k,
    const std::byte*& p, __mmask16& escapes, uint8_t* symbols, float* row) {
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
      _mm512_loadu_ps(steps));
  _mm512_storeu_ps(row, value);
  return x;
}

__attribute__((target("avx512f"))) bool DecodeRowAvx512(
    RansDecoder& rans, const uint32_t* entries, const uint32_t* table_of,
    const float* offsets, const float* steps, uint32_t width, uint8_t escape,
    uint8_t* symbols, float* row) {
  static_assert(kNumStates == 64, "four registers of 16 states");
  const Constants k{_mm512_set1_epi32(kProbScale - 1), _mm512_set1_epi32(0xFFF),
                    _mm512_set1_epi32(kRansLow), _mm512_set1_epi32(escape)};
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
    x0 = Step(x0, entries, table_of + d, offsets + d, steps + d, k, p, escapes,
              symbols + d, row + d);
    x1 = Step(x1, entries, table_of + d + 16, offsets + d + 16, steps + d + 16,
              k, p, escapes, symbols + d + 16, row + d + 16);
    x2 = Step(x2, entries, table_of + d + 32, offsets + d + 32, steps + d + 32,
              k, p, escapes, symbols + d + 32, row + d + 32);
    x3 = Step(x3, entries, table_of + d + 48, offsets + d + 48, steps + d + 48,
              k, p, escapes, symbols + d + 48, row + d + 48);
  }
  _mm512_storeu_si512(states, x0);
  _mm512_storeu_si512(states + 16, x1);
  _mm512_storeu_si512(states + 32, x2);
  _mm512_storeu_si512(states + 48, x3);
  rans.Advance(width, p);
  return escapes != 0;
}

// AVX2 has no expand instruction: the refill words go to their lanes by a
// permutation looked up by the mask of lanes that take one.
struct ExpandTable {
  std::array<std::array<int32_t, 8>, 256> lanes;
  constexpr ExpandTable() : lanes() {
    for (int mask = 0; mask < 256; ++mask) {
      int next = 0;
      for (int lane = 0; lane < 8; ++lane)
        lanes[mask][lane] = mask >> lane & 1 ? next++ : 0;
    }
  }
};
constexpr ExpandTable kExpand;

struct Avx2Constants {
  __m256i slot_mask;
  __m256i low12;
  __m256i escape;
};

__attribute__((target("avx2"))) inline __m256i Avx2Step(
    __m256i x, const uint32_t* entries, const uint32_t* table_of,
    const float* offsets, const float* steps, const Avx2Constants& k,
    const std::byte*& p, int& escapes, uint8_t* symbols, float* row) {
  const __m256i index = _mm256_add_epi32(
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(table_of)),
      _mm256_and_si256(x, k.slot_mask));
  const __m256i e =
      _mm256_i32gather_epi32(reinterpret_cast<const int*>(entries), index, 4);
  const __m256i freq = _mm256_and_si256(_mm256_srli_epi32(e, 12), k.low12);
  x = _mm256_add_epi32(
      _mm256_mullo_epi32(freq, _mm256_srli_epi32(x, kProbBits)),
      _mm256_and_si256(e, k.low12));
  // x < kRansLow, unsigned: the high half is zero.
  const __m256i refill =
      _mm256_cmpeq_epi32(_mm256_srli_epi32(x, 16), _mm256_setzero_si256());
  const int mask = _mm256_movemask_ps(_mm256_castsi256_ps(refill));
  const __m256i words = _mm256_permutevar8x32_epi32(
      _mm256_cvtepu16_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
      _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(kExpand.lanes[mask].data())));
  x = _mm256_blendv_epi8(x, _mm256_or_si256(_mm256_slli_epi32(x, 16), words),
                         refill);
  p += 2 * __builtin_popcount(mask);

  const __m256i symbol = _mm256_srli_epi32(e, 24);
  escapes |= _mm256_movemask_ps(
      _mm256_castsi256_ps(_mm256_cmpeq_epi32(symbol, k.escape)));
  const __m128i halves = _mm_packus_epi32(_mm256_castsi256_si128(symbol),
                                          _mm256_extracti128_si256(symbol, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(symbols),
                   _mm_packus_epi16(halves, halves));
  const __m256 value = _mm256_mul_ps(
      _mm256_add_ps(_mm256_cvtepi32_ps(symbol), _mm256_loadu_ps(offsets)),
      _mm256_loadu_ps(steps));
  _mm256_storeu_ps(row, value);
  return x;
}

__attribute__((target("avx2"))) bool DecodeRowAvx2(
    RansDecoder& rans, const uint32_t* entries, const uint32_t* table_of,
    const float* offsets, const float* steps, uint32_t width, uint8_t escape,
    uint8_t* symbols, float* row) {
  static_assert(kNumStates == 64, "eight registers of 8 states");
  const Avx2Constants k{_mm256_set1_epi32(kProbScale - 1),
                        _mm256_set1_epi32(0xFFF), _mm256_set1_epi32(escape)};
  uint32_t* states = rans.states();
  __m256i x[8];
  for (int r = 0; r < 8; ++r)
    x[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(states + 8 * r));
  const std::byte* p = rans.next();
  int escapes = 0;
  // As for AVX-512: a step reads at most 8 words and loads exactly 8.
  for (uint32_t d = 0; d < width; d += kNumStates) {
#pragma GCC unroll 8
    for (int r = 0; r < 8; ++r) {
      const uint32_t i = d + 8 * r;
      x[r] = Avx2Step(x[r], entries, table_of + i, offsets + i, steps + i, k, p,
                      escapes, symbols + i, row + i);
    }
  }
  for (int r = 0; r < 8; ++r)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(states + 8 * r), x[r]);
  rans.Advance(width, p);
  return escapes != 0;
}

// 16-bit masks reversed, a byte at a time.
struct ReverseTable {
  std::array<uint8_t, 256> bits;
  constexpr ReverseTable() : bits() {
    for (int b = 0; b < 256; ++b)
      for (int i = 0; i < 8; ++i)
        if (b >> i & 1) bits[b] |= static_cast<uint8_t>(1 << (7 - i));
  }
};
constexpr ReverseTable kReverse;

// One rANS encoding step for 16 states at once, as RansEncoder::Put does
// lane 15 first: the renormalization words are stored in descending lane
// order. q = x / freq is trunc of the double-precision quotient, which is
// exact for x < 2^32 and freq < 2^11: a quotient that is an integer comes
// out exactly, and any other lies at least 1 / freq > 2^-11 from the
// integers, far more than the rounding error (at most 2^-21).
__attribute__((target("avx512f"))) inline __m512i EncodeStep(
    __m512i x, const uint8_t* symbols, const uint32_t* table_of,
    const uint32_t* tables, uint16_t*& out) {
  const __m512i symbol = _mm512_cvtepu8_epi32(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(symbols)));
  const __m512i index = _mm512_add_epi32(_mm512_loadu_si512(table_of), symbol);
  const __m512i e = _mm512_i32gather_epi32(index, tables, 4);
  const __m512i freq = _mm512_and_si512(e, _mm512_set1_epi32(0xFFFF));
  const __m512i start = _mm512_srli_epi32(e, 16);
  const __mmask16 renormalize =
      _mm512_cmpge_epu32_mask(x, _mm512_slli_epi32(freq, 21));
  const __m512i reverse =
      _mm512_set_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __mmask16 reversed = static_cast<__mmask16>(
      kReverse.bits[renormalize >> 8] | kReverse.bits[renormalize & 0xFF] << 8);
  const __m512i words = _mm512_maskz_compress_epi32(
      reversed, _mm512_permutexvar_epi32(reverse, x));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                      _mm512_cvtepi32_epi16(words));
  out += __builtin_popcount(renormalize);
  x = _mm512_mask_srli_epi32(x, renormalize, x, 16);

  const __m512d freq_lo = _mm512_cvtepu32_pd(_mm512_castsi512_si256(freq));
  const __m512d freq_hi =
      _mm512_cvtepu32_pd(_mm512_extracti64x4_epi64(freq, 1));
  const __m256i q_lo = _mm512_cvttpd_epu32(
      _mm512_div_pd(_mm512_cvtepu32_pd(_mm512_castsi512_si256(x)), freq_lo));
  const __m256i q_hi = _mm512_cvttpd_epu32(_mm512_div_pd(
      _mm512_cvtepu32_pd(_mm512_extracti64x4_epi64(x, 1)), freq_hi));
  const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(q_lo), q_hi, 1);
  // x' = x + start + q * (kProbScale - freq).
  return _mm512_add_epi32(
      _mm512_add_epi32(x, start),
      _mm512_mullo_epi32(
          q, _mm512_sub_epi32(_mm512_set1_epi32(kProbScale), freq)));
}

}  // namespace

__attribute__((target("avx512f"))) void EncodeRowAvx512(
    RansEncoder& encoder, const uint8_t* symbols, const uint32_t* table_of,
    const uint32_t* tables, uint32_t width) {
  uint32_t* states = encoder.states();
  __m512i x0 = _mm512_loadu_si512(states);
  __m512i x1 = _mm512_loadu_si512(states + 16);
  __m512i x2 = _mm512_loadu_si512(states + 32);
  __m512i x3 = _mm512_loadu_si512(states + 48);
  uint16_t* out = encoder.tail();
  for (uint32_t d = width; d > 0; d -= kNumStates) {
    x3 = EncodeStep(x3, symbols + d - 16, table_of + d - 16, tables, out);
    x2 = EncodeStep(x2, symbols + d - 32, table_of + d - 32, tables, out);
    x1 = EncodeStep(x1, symbols + d - 48, table_of + d - 48, tables, out);
    x0 = EncodeStep(x0, symbols + d - 64, table_of + d - 64, tables, out);
  }
  _mm512_storeu_si512(states, x0);
  _mm512_storeu_si512(states + 16, x1);
  _mm512_storeu_si512(states + 32, x2);
  _mm512_storeu_si512(states + 48, x3);
  encoder.SetTail(out);
}

bool DecodeRow(VectorKernel kernel, RansDecoder& rans, const uint32_t* entries,
               const uint32_t* table_of, const float* offsets,
               const float* steps, uint32_t width, uint8_t escape,
               uint8_t* symbols, float* row) {
  return kernel == VectorKernel::kAvx512
             ? DecodeRowAvx512(rans, entries, table_of, offsets, steps, width,
                               escape, symbols, row)
             : DecodeRowAvx2(rans, entries, table_of, offsets, steps, width,
                             escape, symbols, row);
}

#else  // !SEQKV_HAVE_VECTOR_KERNELS

VectorKernel BestVectorKernel() { return VectorKernel::kPortable; }
bool DecodeRow(VectorKernel, RansDecoder&, const uint32_t*, const uint32_t*,
               const float*, const float*, uint32_t, uint8_t, uint8_t*,
               float*) {
  return false;
}
void EncodeRowAvx512(RansEncoder&, const uint8_t*, const uint32_t*,
                     const uint32_t*, uint32_t) {}

#endif

}  // namespace seqkv::predictive
