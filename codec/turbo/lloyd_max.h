// Lloyd-Max (MSE-optimal scalar) codebooks for the standard normal
// distribution. After a random rotation, each coordinate of a unit vector in
// n dimensions is close to N(0, 1/n), so these centroids scaled by 1/sqrt(n)
// quantize it near-optimally without any per-vector statistics.
#ifndef SEQKV_CODEC_TURBO_LLOYD_MAX_H_
#define SEQKV_CODEC_TURBO_LLOYD_MAX_H_

#include <span>

namespace seqkv {

// Ascending centroids of the 2^bits-level Lloyd-Max quantizer of N(0, 1),
// for bits in [1, 8]; computed once by Lloyd's iteration, then cached.
std::span<const double> GaussianLloydMaxCentroids(int bits);

// Its mean squared error on N(0, 1) (e.g. 0.1175 for 2 bits).
double GaussianLloydMaxDistortion(int bits);

}  // namespace seqkv

#endif  // SEQKV_CODEC_TURBO_LLOYD_MAX_H_
