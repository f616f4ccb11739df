#include "codec/predictive/trellis.h"

#include <algorithm>
#include <vector>

#include "codec/predictive/row_ops.h"

namespace seqkv::predictive {
namespace {

constexpr float kUnreachable = 1e30f;

// max(value, floor) by value: a select between two values, which
// vectorizes (std::max selects between references).
inline float AtLeast(float value, float floor) {
  return value < floor ? floor : value;
}

// Round to nearest even without libm calls, so the loops vectorize.
inline float RoundToInt(float x) {
  constexpr float kMagic = 12582912.0f;
  return (x + kMagic) - kMagic;
}

// For one token: the nearest index of each (quantizer, parity) for every
// channel, best[(2 * quantizer + parity) * width + d], and its squared
// error. Magnitudes on the side of the value (the other side is never
// nearer), then the sign. Every value is computed before any is selected,
// so that the selects compile to blends, and each quantizer has a loop of
// its own: with all eight outputs in one, GCC vectorizes neither.
SEQKV_ROW_CLONES
void BestCandidates(size_t width, const float* __restrict u,
                    int32_t* __restrict best, float* __restrict cost) {
  // Q0, levels 2k: even k at 0, 4, 8, ..., odd k at 2, 6, 10, ...
  int32_t* __restrict even0 = best;
  int32_t* __restrict odd0 = best + width;
  float* __restrict even0_cost = cost;
  float* __restrict odd0_cost = cost + width;
  for (size_t d = 0; d < width; ++d) {
    const float x = u[d];
    const float minus_x = -x;
    const float ax = x < 0 ? minus_x : x;
    const float sign = x < 0 ? -1.0f : 1.0f;
    const float even = 2.0f * RoundToInt(0.25f * ax);
    const float odd =
        2.0f * AtLeast(RoundToInt(0.25f * (ax - 2.0f)), 0.0f) + 1.0f;
    const float even_error = ax - 2.0f * even;
    const float odd_error = ax - 2.0f * odd;
    even0[d] = static_cast<int32_t>(sign * even);
    odd0[d] = static_cast<int32_t>(sign * odd);
    even0_cost[d] = even_error * even_error;
    odd0_cost[d] = odd_error * odd_error;
  }
  // Q1, levels 2k - 1 and 0: odd k at 1, 5, 9, ..., even k at 0, 3, 7, ...
  int32_t* __restrict even1 = best + 2 * width;
  int32_t* __restrict odd1 = best + 3 * width;
  float* __restrict even1_cost = cost + 2 * width;
  float* __restrict odd1_cost = cost + 3 * width;
  for (size_t d = 0; d < width; ++d) {
    const float x = u[d];
    const float minus_x = -x;
    const float ax = x < 0 ? minus_x : x;
    const float sign = x < 0 ? -1.0f : 1.0f;
    const float odd =
        2.0f * AtLeast(RoundToInt(0.25f * (ax - 1.0f)), 0.0f) + 1.0f;
    const float even_far =
        2.0f * AtLeast(RoundToInt(0.25f * (ax + 1.0f)), 1.0f);
    const float level_far = 2.0f * even_far - 1.0f;
    const float even = ax < 1.5f ? 0.0f : even_far;
    const float level = ax < 1.5f ? 0.0f : level_far;
    const float even_error = ax - level;
    const float odd_error = ax - (2.0f * odd - 1.0f);
    even1[d] = static_cast<int32_t>(sign * even);
    odd1[d] = static_cast<int32_t>(sign * odd);
    even1_cost[d] = even_error * even_error;
    odd1_cost[d] = odd_error * odd_error;
  }
}

// One Viterbi step: the new cost of each state and, per channel, a bit per
// state that says which of its two predecessors it came from.
SEQKV_ROW_CLONES
void Transitions(size_t width, const float* __restrict cost,
                 const float* __restrict j, float* __restrict next,
                 uint8_t* __restrict from) {
  const float* __restrict c0 = cost;
  const float* __restrict c1 = cost + width;
  const float* __restrict c2 = cost + 2 * width;
  const float* __restrict c3 = cost + 3 * width;
  const float* __restrict even0 = j;
  const float* __restrict odd0 = j + width;
  const float* __restrict even1 = j + 2 * width;
  const float* __restrict odd1 = j + 3 * width;
  float* __restrict n0 = next;
  float* __restrict n1 = next + width;
  float* __restrict n2 = next + 2 * width;
  float* __restrict n3 = next + 3 * width;
  for (size_t d = 0; d < width; ++d) {
    // State 0 comes from 0 (even) or 1 (odd), 2 from 0 (odd) or 1 (even),
    // 1 from 2 (even) or 3 (odd), 3 from 2 (odd) or 3 (even).
    const float a0 = c0[d] + even0[d], b0 = c1[d] + odd0[d];
    const float a2 = c0[d] + odd0[d], b2 = c1[d] + even0[d];
    const float a1 = c2[d] + even1[d], b1 = c3[d] + odd1[d];
    const float a3 = c2[d] + odd1[d], b3 = c3[d] + even1[d];
    n0[d] = b0 < a0 ? b0 : a0;
    n1[d] = b1 < a1 ? b1 : a1;
    n2[d] = b2 < a2 ? b2 : a2;
    n3[d] = b3 < a3 ? b3 : a3;
    from[d] = static_cast<uint8_t>((b0 < a0) | (b1 < a1) << 1 | (b2 < a2) << 2 |
                                   (b3 < a3) << 3);
  }
}

// One token of the way back: each channel's index and quantizer on its
// best path, from the state the path is in after the token.
SEQKV_ROW_CLONES
void BacktrackRow(size_t width, const uint8_t* __restrict came,
                  const int32_t* __restrict candidates,
                  int32_t* __restrict state, int32_t* __restrict index,
                  uint8_t* __restrict quantizer) {
  const int32_t* __restrict even0 = candidates;
  const int32_t* __restrict odd0 = candidates + width;
  const int32_t* __restrict even1 = candidates + 2 * width;
  const int32_t* __restrict odd1 = candidates + 3 * width;
  for (size_t d = 0; d < width; ++d) {
    // States 0 and 2 come from 0 or 1 (Q0), 1 and 3 from 2 or 3 (Q1); the
    // edge's parity is even into 0 and 1 from the first predecessor and odd
    // from the second, the other way round into 2 and 3 (see Transitions).
    const int32_t s = state[d];
    const int32_t second = came[d] >> s & 1;
    const int32_t q = s & 1;
    const int32_t odd = (s >> 1) ^ second;
    // Every load unconditional, so that the selects vectorize.
    const int32_t e0 = even0[d], o0 = odd0[d], e1 = even1[d], o1 = odd1[d];
    const int32_t from_q0 = odd ? o0 : e0;
    const int32_t from_q1 = odd ? o1 : e1;
    index[d] = q ? from_q1 : from_q0;
    quantizer[d] = static_cast<uint8_t>(q);
    state[d] = 2 * q + second;
  }
}

}  // namespace

double TrellisSearcher::Forward(const TrellisSearch& search) {
  search_ = search;
  const size_t width = search.width;
  const size_t tokens = search.num_tokens;
  if (width == 0 || tokens == 0) return 0;
  cost_.assign(4 * width, kUnreachable);
  std::fill(cost_.begin(), cost_.begin() + width, 0.0f);
  next_.resize(4 * width);
  candidate_cost_.resize(4 * width);
  candidates_.resize(4 * width);
  from_.resize(tokens * width);
  for (size_t t = 0; t < tokens; ++t) {
    BestCandidates(width, search.values + t * width, candidates_.data(),
                   candidate_cost_.data());
    Transitions(width, cost_.data(), candidate_cost_.data(), next_.data(),
                &from_[t * width]);
    cost_.swap(next_);
  }
  // Each channel ends in its cheapest state.
  state_.assign(width, 0);
  double total = 0;
  for (size_t d = 0; d < width; ++d) {
    for (int s = 1; s < kTrellisStates; ++s)
      if (cost_[s * width + d] < cost_[state_[d] * width + d]) state_[d] = s;
    total += cost_[state_[d] * width + d];
  }
  return total;
}

void TrellisSearcher::Backtrack(int32_t* index, uint8_t* quantizer) {
  const size_t width = search_.width;
  // Back along the best path of every channel, a token at a time. The
  // candidates are computed again rather than kept: cheaper than writing
  // and reading back four indices per value.
  for (size_t t = search_.num_tokens; t-- > 0;) {
    BestCandidates(width, search_.values + t * width, candidates_.data(),
                   candidate_cost_.data());
    BacktrackRow(width, &from_[t * width], candidates_.data(), state_.data(),
                 index + t * width, quantizer + t * width);
  }
}

}  // namespace seqkv::predictive
