// Synthetic KV chunks for the lossless codec's tests and fuzz target.
#ifndef SEQKV_TESTS_CODEC_LOSSLESS_LOSSLESS_TEST_UTIL_H_
#define SEQKV_TESTS_CODEC_LOSSLESS_LOSSLESS_TEST_UTIL_H_

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "codec/float_bits.h"
#include "codec/kv_layout.h"

namespace seqkv::testing {

// Bit patterns worth having in any float test: zeros, subnormals, the
// extremes, infinities and NaNs (quiet and signalling, with payloads).
inline std::vector<uint32_t> SpecialBits(DType dtype) {
  if (dtype == DType::kFP32)
    return {0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x00800000,
            0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x7FC00000,
            0xFFC00001, 0x7F800001, 0x3F800000, 0xBF800000};
  if (dtype == DType::kFP16)
    return {0x0000, 0x8000, 0x0001, 0x83FF, 0x0400, 0x7BFF, 0xFBFF,
            0x7C00, 0xFC00, 0x7E00, 0xFE01, 0x7C01, 0x3C00, 0xBC00};
  return {0x0000, 0x8000, 0x0001, 0x807F, 0x0080, 0x7F7F, 0xFF7F,
          0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x7F81, 0x3F80, 0xBF80};
}

inline uint32_t ToBits(DType dtype, float value) {
  switch (dtype) {
    case DType::kFP32:
      return std::bit_cast<uint32_t>(value);
    case DType::kFP16:
      return FloatToFp16(value);
    case DType::kBF16:
      break;
  }
  return FloatToBf16(value);
}

inline void StoreBits(DType dtype, uint32_t bits, std::byte* at) {
  if (DTypeSize(dtype) == 4) {
    std::memcpy(at, &bits, 4);
  } else {
    const uint16_t half = static_cast<uint16_t>(bits);
    std::memcpy(at, &half, 2);
  }
}

// KV-like data in chunk layout: per channel an offset and a scale, keys
// turned by RoPE-like rotations, first-layer rows that repeat with the
// token, a sprinkle of special values (fraction `special_rate`) and of
// fully random bit patterns.
inline std::vector<std::byte> MakeChunk(const KvLayout& layout,
                                        uint32_t num_tokens,
                                        std::span<const int32_t> tokens,
                                        uint64_t seed,
                                        double special_rate = 0.001) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> uniform(0, 1);
  const size_t width = DTypeSize(layout.dtype);
  std::vector<std::byte> data(layout.bytes_per_token() * num_tokens);
  const std::vector<uint32_t> specials = SpecialBits(layout.dtype);
  ChunkInfo chunk{&layout, num_tokens, 0, tokens};
  for (uint32_t layer = 0; layer < layout.num_layers; ++layer) {
    for (uint32_t tensor = 0; tensor < layout.tensors_per_layer(); ++tensor) {
      for (uint32_t head = 0; head < layout.num_kv_heads; ++head) {
        std::vector<float> offset(layout.head_dim), scale(layout.head_dim);
        for (uint32_t d = 0; d < layout.head_dim; ++d) {
          offset[d] = normal(rng) * (d % 7 == 0 ? 4.0f : 0.5f);
          scale[d] = std::exp(normal(rng)) * 0.5f;
        }
        for (uint32_t t = 0; t < num_tokens; ++t) {
          // First-layer rows depend on the token alone.
          std::mt19937_64 row_rng(layer == 0 && !tokens.empty()
                                      ? uint64_t(tokens[t]) * 977 + head
                                      : rng());
          std::normal_distribution<float> row_normal;
          std::byte* row =
              data.data() + chunk.RowOffset(layer, tensor, head, t) * width;
          for (uint32_t d = 0; d < layout.head_dim; ++d) {
            float angle =
                tensor == 0 ? t * std::pow(100.0f, -float(d % 32) / 32) : 0.0f;
            float value =
                offset[d] * std::cos(angle) + scale[d] * row_normal(row_rng);
            uint32_t bits = ToBits(layout.dtype, value);
            const float u = uniform(rng);
            if (u < special_rate)
              bits = specials[rng() % specials.size()];
            else if (u < 2 * special_rate)
              bits = static_cast<uint32_t>(rng()) &
                     (width == 4 ? 0xFFFFFFFFu : 0xFFFFu);
            StoreBits(layout.dtype, bits, row + d * width);
          }
        }
      }
    }
  }
  return data;
}

}  // namespace seqkv::testing

#endif  // SEQKV_TESTS_CODEC_LOSSLESS_LOSSLESS_TEST_UTIL_H_
