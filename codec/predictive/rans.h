// Static-model rANS with four interleaved states over one 16-bit word stream.
//
// Frequencies are fixed per chunk (the encoder counts, normalizes and sends
// them), so decoding a symbol is one table load and a multiply: fast enough
// to decode KV caches at memory speed, which adaptive arithmetic coding is
// not. Four states break the dependency chain so the CPU overlaps them.
#ifndef SEQKV_CODEC_PREDICTIVE_RANS_H_
#define SEQKV_CODEC_PREDICTIVE_RANS_H_

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace seqkv::predictive {

static_assert(std::endian::native == std::endian::little,
              "the stream is stored as little-endian 16-bit words");

inline constexpr int kProbBits = 11;
inline constexpr uint32_t kProbScale = uint32_t{1} << kProbBits;
inline constexpr int kAlphabetSize = 256;
// Every state stays in [kRansLow, 2^32); renormalization moves 16 bits.
inline constexpr uint32_t kRansLow = uint32_t{1} << 16;
inline constexpr int kNumStates = 4;

// Scales `counts` (kAlphabetSize of them, not all zero) to frequencies that
// sum to kProbScale, each nonzero count getting at least 1 and no symbol
// more than kProbScale - 1 (so a decode entry fits in 32 bits).
void NormalizeFrequencies(std::span<const uint32_t> counts,
                          std::span<uint16_t> freqs);

// Encoder side of one context: frequency and cumulative start per symbol.
struct EncodeModel {
  std::array<uint16_t, kAlphabetSize> freq{};
  std::array<uint16_t, kAlphabetSize> start{};
  void Build(std::span<const uint16_t> freqs);
};

// Decoder side of one context: for each of the kProbScale slots, the packed
// entry sym << 24 | freq << 12 | (slot - start).
struct DecodeModel {
  std::array<uint32_t, kProbScale> entry{};
  // Returns false unless the frequencies sum to exactly kProbScale.
  bool Build(std::span<const uint16_t> freqs);
};

// Encodes symbols last to first (rANS is LIFO) into 16-bit words; Finish
// returns the stream in decoding order.
class RansEncoder {
 public:
  RansEncoder() { states_.fill(kRansLow); }
  // `index` is the symbol's position in decoding order; it picks the state.
  void Put(size_t index, const EncodeModel& model, uint8_t symbol) {
    uint32_t& x = states_[index & (kNumStates - 1)];
    const uint32_t freq = model.freq[symbol];
    // x_max = ((kRansLow >> kProbBits) << 16) * freq, computed in 64 bits
    // because freq may be close to kProbScale.
    const uint64_t x_max =
        (uint64_t{kRansLow >> kProbBits} << 16) * uint64_t{freq};
    if (x >= x_max) {
      words_.push_back(static_cast<uint16_t>(x));
      x >>= 16;
    }
    x = ((x / freq) << kProbBits) + (x % freq) + model.start[symbol];
  }
  // Appends the final states and reverses: the result is read front to back.
  std::vector<uint16_t> Finish();

 private:
  std::array<uint32_t, kNumStates> states_;
  std::vector<uint16_t> words_;
};

// Decodes a stream made by RansEncoder. Reading past the end yields zero
// words and sets a flag instead of touching memory outside the stream.
class RansDecoder {
 public:
  // `bytes` holds the words little-endian; an odd trailing byte is ignored
  // (and makes FinishedCleanly false).
  explicit RansDecoder(std::span<const std::byte> bytes)
      : next_(bytes.data()),
        end_(bytes.data() + (bytes.size() & ~size_t{1})),
        odd_(bytes.size() & 1) {
    for (uint32_t& x : states_) {
      x = uint32_t{ReadWord()} << 16;
      x |= ReadWord();
    }
  }
  uint8_t Get(size_t index, const DecodeModel& model) {
    uint32_t& x = states_[index & (kNumStates - 1)];
    const uint32_t e = model.entry[x & (kProbScale - 1)];
    x = ((e >> 12) & 0xFFF) * (x >> kProbBits) + (e & 0xFFF);
    if (x < kRansLow) x = (x << 16) | ReadWord();
    return static_cast<uint8_t>(e >> 24);
  }
  // Decodes the symbols of positions [index, index + n), symbol d with
  // *models[d], into out[0..n).
  void GetRow(size_t index, const DecodeModel* const* models, uint32_t n,
              uint8_t* out) {
    // Fast path: each symbol reads at most one word, so with n words left no
    // read can pass the end and the checks (and branches) go away.
    if ((index & (kNumStates - 1)) != 0 || n % kNumStates != 0 ||
        static_cast<size_t>(end_ - next_) < size_t{n} * 2) {
      for (uint32_t d = 0; d < n; ++d) out[d] = Get(index + d, *models[d]);
      return;
    }
    uint32_t x0 = states_[0], x1 = states_[1], x2 = states_[2], x3 = states_[3];
    const std::byte* p = next_;
    for (uint32_t d = 0; d < n; d += kNumStates) {
      out[d] = Step(x0, *models[d], p);
      out[d + 1] = Step(x1, *models[d + 1], p);
      out[d + 2] = Step(x2, *models[d + 2], p);
      out[d + 3] = Step(x3, *models[d + 3], p);
    }
    states_ = {x0, x1, x2, x3};
    next_ = p;
  }

  // True when every word was consumed and each state is back at the value
  // the encoder started from: a cheap integrity check of the whole stream.
  bool FinishedCleanly() const {
    if (overrun_ || odd_ || next_ != end_) return false;
    for (uint32_t x : states_)
      if (x != kRansLow) return false;
    return true;
  }

 private:
  static uint8_t Step(uint32_t& x, const DecodeModel& model,
                      const std::byte*& p) {
    const uint32_t e = model.entry[x & (kProbScale - 1)];
    x = ((e >> 12) & 0xFFF) * (x >> kProbBits) + (e & 0xFFF);
    uint16_t word;
    std::memcpy(&word, p, sizeof(word));
    const bool refill = x < kRansLow;
    x = refill ? (x << 16) | word : x;
    p += refill ? sizeof(word) : 0;
    return static_cast<uint8_t>(e >> 24);
  }

  uint16_t ReadWord() {
    if (next_ == end_) {
      overrun_ = true;
      return 0;
    }
    uint16_t word;
    std::memcpy(&word, next_, sizeof(word));
    next_ += sizeof(word);
    return word;
  }
  std::array<uint32_t, kNumStates> states_;
  const std::byte* next_;
  const std::byte* end_;
  bool odd_;
  bool overrun_ = false;
};

}  // namespace seqkv::predictive

#endif  // SEQKV_CODEC_PREDICTIVE_RANS_H_
