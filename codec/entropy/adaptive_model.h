// Adaptive probability models for the range coder
// (codec/entropy/range_coder.h).
//
// A model tells the coder how likely each symbol is and learns from every
// symbol coded with it. Encoder and decoder run the same updates in the same
// order, so they stay in lockstep without transmitting any statistics.
//
// Binary models expose `uint32_t P0() const` (probability of a 0 bit in units
// of 2^-16, always in [1, 65535]) and `void Update(int bit)`. Multi-symbol
// models expose the cumulative-frequency interface used by
// RangeEncoder::EncodeSymbol / RangeDecoder::DecodeSymbol.
#ifndef SEQKV_CODEC_ENTROPY_ADAPTIVE_MODEL_H_
#define SEQKV_CODEC_ENTROPY_ADAPTIVE_MODEL_H_

#include <cstdint>
#include <vector>

namespace seqkv::entropy {

inline constexpr int kProbBits = 16;
inline constexpr uint32_t kProbOne = uint32_t{1} << kProbBits;

// A bit with an adaptive probability: an exponential moving average whose
// memory is about 2^kRate bits. Small kRate adapts fast, large kRate estimates
// stationary probabilities more precisely. The shift update keeps P0 within
// [2^kRate - 1, 65536 - 2^kRate + 1], so it never reaches 0 or 1.
template <int kRate = 5>
class BasicBitModel {
  static_assert(kRate >= 1 && kRate <= 12, "rate out of range");

 public:
  uint32_t P0() const { return p0_; }
  void Update(int bit) {
    if (bit)
      p0_ -= p0_ >> kRate;
    else
      p0_ += (kProbOne - p0_) >> kRate;
  }

 private:
  uint32_t p0_ = kProbOne / 2;
};

using BitModel = BasicBitModel<5>;

// Mixes a fast and a slow estimate (their average): it follows shifts in the
// statistics like the fast one and codes stationary bits almost as well as the
// slow one. Costs one more update per bit.
template <int kFastRate = 4, int kSlowRate = 7>
class DualRateBitModel {
 public:
  uint32_t P0() const { return (fast_.P0() + slow_.P0()) >> 1; }
  void Update(int bit) {
    fast_.Update(bit);
    slow_.Update(bit);
  }

 private:
  BasicBitModel<kFastRate> fast_;
  BasicBitModel<kSlowRate> slow_;
};

// A symbol of `kBits` bits coded most significant bit first, each bit with
// its own binary model chosen by the bits above it (a binary tree of
// 2^kBits - 1 models). Good for small alphabets with skewed statistics.
template <int kBits, typename Bit = BitModel>
class BitTreeModel {
  static_assert(kBits >= 1 && kBits <= 12, "bit tree too large");

 public:
  static constexpr int kNumBits = kBits;
  static constexpr uint32_t kNumSymbols = uint32_t{1} << kBits;
  // Node 1 is the root; node n has children 2n and 2n + 1.
  Bit& node(uint32_t index) { return nodes_[index]; }

 private:
  Bit nodes_[kNumSymbols];  // nodes_[0] unused
};

// Adaptive frequencies over `num_symbols` symbols (up to 4096), kept in a
// Fenwick tree so that lookup, search and update all cost O(log n). Every
// coded symbol adds `increment` to its count; when the total exceeds
// `max_total` all counts are halved (keeping each >= 1), which both bounds the
// total for the coder and lets the model forget old statistics.
class AdaptiveFrequencyModel {
 public:
  static constexpr uint32_t kMaxSymbols = 4096;
  static constexpr uint32_t kMaxTotal = uint32_t{1} << 16;

  // num_symbols is clamped to [1, kMaxSymbols]; max_total to
  // [2 * num_symbols, kMaxTotal] and increment to [1, max_total / 4].
  explicit AdaptiveFrequencyModel(uint32_t num_symbols, uint32_t increment = 24,
                                  uint32_t max_total = kMaxTotal);

  uint32_t num_symbols() const { return num_symbols_; }
  uint32_t total() const { return total_; }

  // Cumulative count of symbols below `symbol`, and its own count.
  void Lookup(uint32_t symbol, uint32_t& cum, uint32_t& freq) const;
  // The symbol whose interval [cum, cum + freq) holds `target` (< total()).
  uint32_t Find(uint32_t target, uint32_t& cum, uint32_t& freq) const;
  void Update(uint32_t symbol);

 private:
  void Rescale();

  uint32_t num_symbols_;
  uint32_t increment_;
  uint32_t max_total_;
  uint32_t total_ = 0;
  uint32_t top_bit_ = 1;  // largest power of two <= num_symbols_
  std::vector<uint32_t> counts_;
  std::vector<uint32_t> tree_;  // Fenwick tree, 1-based
};

}  // namespace seqkv::entropy

#endif  // SEQKV_CODEC_ENTROPY_ADAPTIVE_MODEL_H_
