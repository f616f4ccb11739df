// Shared helpers for the predictive codec tests: synthetic chunks and
// per-group relative MSE.
#ifndef SEQKV_TESTS_CODEC_PREDICTIVE_TEST_UTIL_H_
#define SEQKV_TESTS_CODEC_PREDICTIVE_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <vector>

#include "codec/float_bits.h"
#include "codec/kv_layout.h"

namespace seqkv::testing {

inline float LoadValue(DType dtype, const std::byte* p) {
  if (dtype == DType::kFP32) {
    float value;
    std::memcpy(&value, p, 4);
    return value;
  }
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return dtype == DType::kBF16 ? Bf16ToFloat(bits) : Fp16ToFloat(bits);
}

inline void StoreValue(DType dtype, float value, std::byte* p) {
  if (dtype == DType::kFP32) {
    std::memcpy(p, &value, 4);
    return;
  }
  const uint16_t bits =
      dtype == DType::kBF16 ? FloatToBf16(value) : FloatToFp16(value);
  std::memcpy(p, &bits, 2);
}

// Squared error and energy of one (layer, tensor) group of a chunk.
struct GroupError {
  double error = 0;
  double energy = 0;
  double rel() const { return energy > 0 ? error / energy : 0; }
};

inline GroupError MeasureGroup(const ChunkInfo& chunk, uint32_t layer,
                               uint32_t tensor,
                               std::span<const std::byte> original,
                               std::span<const std::byte> decoded) {
  const KvLayout& layout = *chunk.layout;
  const size_t size = DTypeSize(layout.dtype);
  const size_t begin = chunk.RowOffset(layer, tensor, 0, 0);
  const size_t count =
      size_t{layout.num_kv_heads} * chunk.num_tokens * layout.head_dim;
  GroupError out;
  for (size_t i = begin; i < begin + count; ++i) {
    const double x = LoadValue(layout.dtype, &original[i * size]);
    const double y = LoadValue(layout.dtype, &decoded[i * size]);
    out.error += (x - y) * (x - y);
    out.energy += x * x;
  }
  return out;
}

// KV-like synthetic data: per-channel offsets and scales (some channels
// with large constant offsets, as real K has), Gaussian noise.
inline std::vector<std::byte> MakeChunkData(const ChunkInfo& chunk,
                                            uint64_t seed) {
  const KvLayout& layout = *chunk.layout;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<std::byte> data(chunk.num_bytes());
  const size_t size = DTypeSize(layout.dtype);
  for (uint32_t l = 0; l < layout.num_layers; ++l)
    for (uint32_t ti = 0; ti < layout.tensors_per_layer(); ++ti)
      for (uint32_t h = 0; h < layout.num_kv_heads; ++h) {
        std::vector<float> offset(layout.head_dim), scale(layout.head_dim);
        for (uint32_t d = 0; d < layout.head_dim; ++d) {
          offset[d] = (rng() % 4 == 0) ? 3 * normal(rng) : 0.1f * normal(rng);
          scale[d] = std::exp(0.7f * normal(rng)) * (ti == 0 ? 1.0f : 0.3f);
        }
        for (uint32_t t = 0; t < chunk.num_tokens; ++t) {
          std::byte* row = &data[chunk.RowOffset(l, ti, h, t) * size];
          for (uint32_t d = 0; d < layout.head_dim; ++d)
            StoreValue(layout.dtype, offset[d] + scale[d] * normal(rng),
                       row + d * size);
        }
      }
  return data;
}

}  // namespace seqkv::testing

#endif  // SEQKV_TESTS_CODEC_PREDICTIVE_TEST_UTIL_H_
