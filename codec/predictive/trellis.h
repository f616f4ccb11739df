// Dependent scalar quantization on a four-state trellis (the design of
// H.266/VVC's dependent quantization). Two quantizers share one step: Q0
// reconstructs even multiples of it, Q1 odd multiples and zero. Along a
// channel's tokens, the parity of each index picks the quantizer of the
// next, so the sequences a channel can take form a trellis code over a grid
// twice as fine as either quantizer, and a Viterbi search picks the one with
// the least squared error. At equal bits its error is below a uniform
// quantizer's: part of scalar quantization's space-filling loss comes back,
// and decoding costs only a table choice and a parity per value.
//
// Pure functions; thread-safe.
#ifndef SEQKV_CODEC_PREDICTIVE_TRELLIS_H_
#define SEQKV_CODEC_PREDICTIVE_TRELLIS_H_

#include <cstdint>
#include <vector>

namespace seqkv::predictive {

inline constexpr int kTrellisStates = 4;

// The state after coding `index` in `state`. Every channel starts in 0.
inline int TrellisNext(int state, int32_t index) {
  // Two bits per (state, parity): 0->{0,2}, 1->{2,0}, 2->{1,3}, 3->{3,1}.
  return (32040 >> ((state << 2) + ((index & 1) << 1))) & 3;
}

// The quantizer a state codes with: 0 or 1.
inline int TrellisQuantizer(int state) { return state >> 1; }

// What `index` coded with `quantizer` reconstructs to, in steps.
inline int32_t TrellisLevel(int quantizer, int32_t index) {
  const int32_t sign = (index > 0) - (index < 0);
  return 2 * index - quantizer * sign;
}

// One head's rows of a group, to be quantized.
struct TrellisSearch {
  uint32_t num_tokens = 0;
  uint32_t width = 0;
  // values[t * width + d]: channel d's residual at token t minus the
  // channel's offset, in steps. |value| < 2^21.
  const float* values = nullptr;
};

// Finds, for every channel of a TrellisSearch, the path of least squared
// error. (No rate term: one that trades error for bits pulls values towards
// zero, and the model's KL pays far more for that shrinkage than the mean
// squared error shows.) Keeps its buffers from one search to the next; not
// thread-safe.
class TrellisSearcher {
 public:
  // Runs the search forward and returns the least squared error, in
  // squared steps, summed over the channels: what the path will cost,
  // before it is traced. `search.values` must stay valid until Backtrack.
  double Forward(const TrellisSearch& search);

  // Traces the paths the last Forward found: writes their indices,
  // index[t * width + d], and the quantizer each was coded with,
  // quantizer[t * width + d].
  void Backtrack(int32_t* index, uint8_t* quantizer);

 private:
  TrellisSearch search_;
  std::vector<float> cost_, next_, candidate_cost_;
  std::vector<int32_t> candidates_, state_;
  std::vector<uint8_t> from_;
};

}  // namespace seqkv::predictive

#endif  // SEQKV_CODEC_PREDICTIVE_TRELLIS_H_
