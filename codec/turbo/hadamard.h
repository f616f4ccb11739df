// The seeded randomized Hadamard transform: x -> H D x / sqrt(n) with D a
// fixed random sign diagonal. It is orthonormal, costs O(n log n), and spreads
// any vector's energy evenly over the coordinates, which is what lets one
// fixed codebook fit every vector.
#ifndef SEQKV_CODEC_TURBO_HADAMARD_H_
#define SEQKV_CODEC_TURBO_HADAMARD_H_

#include <cstdint>
#include <span>
#include <vector>

namespace seqkv {

// n random signs (+1 / -1) drawn from `seed`; n must be a power of two.
std::vector<float> HadamardSigns(size_t n, uint64_t seed);

// In place; x.size() == signs.size() is a power of two.
void ForwardRandomizedHadamard(std::span<float> x,
                               std::span<const float> signs);
void InverseRandomizedHadamard(std::span<float> x,
                               std::span<const float> signs);

}  // namespace seqkv

#endif  // SEQKV_CODEC_TURBO_HADAMARD_H_
