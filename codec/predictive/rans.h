// Static-model rANS with 64 interleaved states over one 16-bit word stream.
//
// Frequencies are fixed per group (the encoder counts, normalizes and sends
// them), so decoding a symbol is one table load and a multiply: fast enough
// to decode KV caches at memory speed, which adaptive arithmetic coding is
// not. Symbol i of the stream uses state i mod 64, and words are read in
// symbol order, so the decoder can run 16 states at once in one vector
// register and four registers side by side (their table loads overlap). A
// plain loop over the states decodes the same stream on any CPU.
#ifndef SEQKV_CODEC_PREDICTIVE_RANS_H_
#define SEQKV_CODEC_PREDICTIVE_RANS_H_

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace seqkv::predictive {

static_assert(std::endian::native == std::endian::little,
              "the stream is stored as little-endian 16-bit words");

inline constexpr int kProbBits = 11;
inline constexpr uint32_t kProbScale = uint32_t{1} << kProbBits;
inline constexpr int kAlphabetSize = 256;
// Every state stays in [kRansLow, 2^32); renormalization moves 16 bits.
inline constexpr uint32_t kRansLow = uint32_t{1} << 16;
inline constexpr int kNumStates = 64;

// Scales `counts` (kAlphabetSize of them, not all zero) to frequencies that
// sum to kProbScale, each nonzero count getting at least 1 and no symbol
// more than kProbScale - 1 (so a decode entry fits in 32 bits).
void NormalizeFrequencies(std::span<const uint32_t> counts,
                          std::span<uint16_t> freqs);

// Encoder side of one symbol of one table. The division x / freq of rANS is
// a multiply by a 43-bit reciprocal: exact for every x < 2^32 because
// freq < 2^11 (the rounding error stays below 1 / freq).
struct EncodeSymbol {
  uint64_t reciprocal = 0;  // ceil(2^43 / freq)
  uint32_t x_max = 0;       // renormalize while x >= x_max
  uint32_t bias = 0;        // start
  uint32_t complement = 0;  // kProbScale - freq
};
using EncodeTable = std::array<EncodeSymbol, kAlphabetSize>;
void BuildEncodeTable(std::span<const uint16_t> freqs, EncodeTable& table);

// Decoder side of one table: for each of the kProbScale slots the packed
// entry sym << 24 | freq << 12 | (slot - start). Writes kProbScale entries
// to `entries`; returns false unless the frequencies sum to kProbScale.
bool BuildDecodeTable(std::span<const uint16_t> freqs, uint32_t* entries);

// Encodes symbols last to first (rANS is LIFO) into 16-bit words; Finish
// reverses them into decoding order behind the final states.
class RansEncoder {
 public:
  // Room for `num_symbols` symbols: each writes at most one word.
  explicit RansEncoder(size_t num_symbols)
      : owned_(std::make_unique_for_overwrite<uint16_t[]>(
            StorageWords(num_symbols))),
        words_(owned_.get()),
        tail_(kHead) {
    states_.fill(kRansLow);
  }
  // The same in a caller's buffer of StorageWords(num_symbols) words, which
  // must outlive the encoder (so that a caller can keep one between
  // streams).
  explicit RansEncoder(uint16_t* storage) : words_(storage), tail_(kHead) {
    states_.fill(kRansLow);
  }
  static size_t StorageWords(size_t num_symbols) {
    return kHead + num_symbols + kSlack;
  }
  // `position` is the symbol's index in decoding order; it picks the state.
  void Put(size_t position, const EncodeSymbol& symbol) {
    uint32_t& x = states_[position & (kNumStates - 1)];
    // Branch-free renormalization: the word is always written and kept
    // only when needed (about one symbol in eight needs it, unpredictably).
    const bool renormalize = x >= symbol.x_max;
    words_[tail_] = static_cast<uint16_t>(x);
    tail_ += renormalize;
    x = renormalize ? x >> 16 : x;
    const uint32_t q = static_cast<uint32_t>(
        (static_cast<unsigned __int128>(x) * symbol.reciprocal) >> 43);
    // x' = (q << kProbBits) + (x - q * freq) + start.
    x += symbol.bias + q * symbol.complement;
  }
  // Appends the final states and the words, in decoding order, to `out`.
  void Finish(std::string& out);

  // For the vector kernel, which codes whole rows and may store up to
  // kSlack words past the tail (later words overwrite them).
  static constexpr size_t kSlack = 16;
  uint32_t* states() { return states_.data(); }
  uint16_t* tail() { return &words_[tail_]; }
  void SetTail(const uint16_t* tail) {
    tail_ = static_cast<size_t>(tail - words_);
  }

 private:
  static constexpr size_t kHead = 2 * kNumStates;  // for the final states
  std::unique_ptr<uint16_t[]> owned_;  // null with a caller's buffer
  uint16_t* words_;
  size_t tail_;  // words_[kHead, tail_) are the words so far
  std::array<uint32_t, kNumStates> states_;
};

// Decodes a stream made by RansEncoder. Reading past the end yields zero
// words and sets a flag instead of touching memory outside the stream.
class RansDecoder {
 public:
  // `bytes` holds the words little-endian; an odd trailing byte is ignored
  // (and makes FinishedCleanly false).
  explicit RansDecoder(std::span<const std::byte> bytes);

  // Decodes the next n symbols, symbol d with the table at
  // entries + table_of[d], into out[0..n).
  void GetSymbols(const uint32_t* entries, const uint32_t* table_of, uint32_t n,
                  uint8_t* out);

  // Index of the next symbol in the stream; it picks the state.
  size_t position() const { return position_; }
  // Words not yet read.
  size_t words_left() const { return static_cast<size_t>(end_ - next_) / 2; }

  // For the vector kernel, which decodes `n` symbols (a multiple of
  // kNumStates, starting at a multiple of it) with at least n words left,
  // and then calls Advance.
  uint32_t* states() { return states_.data(); }
  const std::byte* next() const { return next_; }
  void Advance(uint32_t n, const std::byte* next) {
    position_ += n;
    next_ = next;
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
  size_t position_ = 0;
  const std::byte* next_;
  const std::byte* end_;
  bool odd_;
  bool overrun_ = false;
};

}  // namespace seqkv::predictive

#endif  // SEQKV_CODEC_PREDICTIVE_RANS_H_
