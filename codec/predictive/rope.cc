#include "codec/predictive/rope.h"

#include <cmath>

namespace seqkv::predictive {

RopeTable::RopeTable(const RopeConfig& rope, uint32_t head_dim,
                     uint64_t first_position, uint32_t num_tokens)
    : style_(rope.style) {
  const uint32_t rotary = rope.rotary_dim == 0 ? head_dim : rope.rotary_dim;
  half_ = rotary / 2;
  std::vector<float> inv_freq(half_);
  for (uint32_t i = 0; i < half_; ++i) {
    const float exponent =
        static_cast<float>(2 * i) / static_cast<float>(rotary);
    inv_freq[i] = 1.0f / std::pow(static_cast<float>(rope.theta), exponent);
  }
  cos_.resize(size_t{num_tokens} * half_);
  sin_.resize(size_t{num_tokens} * half_);
  // cos/sin of the first position directly, then one rotation per token in
  // double precision (error ~1e-13 after a million steps): a few multiplies
  // per entry instead of two libm calls.
  for (uint32_t i = 0; i < half_; ++i) {
    const double angle =
        static_cast<double>(first_position) * static_cast<double>(inv_freq[i]);
    double c = std::cos(angle);
    double s = std::sin(angle);
    const double step_c = std::cos(static_cast<double>(inv_freq[i]));
    const double step_s = std::sin(static_cast<double>(inv_freq[i]));
    for (uint32_t t = 0; t < num_tokens; ++t) {
      cos_[size_t{t} * half_ + i] = static_cast<float>(c);
      sin_[size_t{t} * half_ + i] = static_cast<float>(s);
      const double next_c = c * step_c - s * step_s;
      s = s * step_c + c * step_s;
      c = next_c;
    }
  }
}

void RopeTable::Rotate(uint32_t token, float* row, float direction) const {
  const float* c = cos_.data() + size_t{token} * half_;
  const float* s = sin_.data() + size_t{token} * half_;
  const uint32_t half = half_;
  if (style_ == RopeStyle::kInterleaved) {
    for (uint32_t i = 0; i < half; ++i) {
      const float a = row[2 * i];
      const float b = row[2 * i + 1];
      const float si = direction * s[i];
      row[2 * i] = a * c[i] - b * si;
      row[2 * i + 1] = b * c[i] + a * si;
    }
    return;
  }
  // rotate_half: pairs (i, i + half).
  float* lo = row;
  float* hi = row + half;
  for (uint32_t i = 0; i < half; ++i) {
    const float a = lo[i];
    const float b = hi[i];
    const float si = direction * s[i];
    lo[i] = a * c[i] - b * si;
    hi[i] = b * c[i] + a * si;
  }
}

}  // namespace seqkv::predictive
