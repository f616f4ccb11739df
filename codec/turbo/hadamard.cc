#include "codec/turbo/hadamard.h"

#include <cmath>

namespace seqkv {
namespace {

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Unnormalized fast Walsh-Hadamard transform (Sylvester order).
void Fwht(std::span<float> x) {
  const size_t n = x.size();
  for (size_t h = 1; h < n; h <<= 1) {
    for (size_t i = 0; i < n; i += 2 * h) {
      for (size_t j = i; j < i + h; ++j) {
        const float a = x[j];
        const float b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
}

}  // namespace

std::vector<float> HadamardSigns(size_t n, uint64_t seed) {
  std::vector<float> signs(n);
  uint64_t state = seed ^ (0xD1B54A32D192ED03ull * (n + 1));
  uint64_t bits = 0;
  for (size_t i = 0; i < n; ++i) {
    if (i % 64 == 0) bits = SplitMix64(state);
    signs[i] = (bits >> (i % 64)) & 1 ? -1.0f : 1.0f;
  }
  return signs;
}

void ForwardRandomizedHadamard(std::span<float> x,
                               std::span<const float> signs) {
  for (size_t i = 0; i < x.size(); ++i) x[i] *= signs[i];
  Fwht(x);
  const float scale = 1.0f / std::sqrt(static_cast<float>(x.size()));
  for (float& v : x) v *= scale;
}

void InverseRandomizedHadamard(std::span<float> x,
                               std::span<const float> signs) {
  Fwht(x);
  const float scale = 1.0f / std::sqrt(static_cast<float>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) x[i] *= scale * signs[i];
}

}  // namespace seqkv
