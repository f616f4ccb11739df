// A byte-oriented range coder with adaptive models (see adaptive_model.h).
//
// The coder keeps a 32-bit range and a 64-bit low with carry propagation
// (the scheme of the LZMA range coder): every normalization emits exactly one
// byte, and Finish() emits five, so a decoder consumes exactly the bytes the
// encoder wrote. That makes truncation and trailing garbage detectable:
// RangeDecoder::Finish() reports DATA_LOSS unless the whole input was used
// and no byte past its end was needed.
//
// Three ways to code information, freely interleaved in one stream:
//   * binary decisions with an adaptive model (EncodeBit / DecodeBit) or a
//     fixed probability (EncodeBitWithP0 / DecodeBitWithP0),
//   * symbols of a multi-symbol frequency model (EncodeSymbol / DecodeSymbol
//     with AdaptiveFrequencyModel, or EncodeFreq / DecodeFreq for a caller's
//     own cumulative frequencies, total <= 2^16),
//   * raw bits (EncodeBits / DecodeBits, up to 32 at a time).
// The decoder must make the same calls, with the same models, in the same
// order as the encoder did.
//
// The decoder is safe on hostile input: it never reads outside its input
// (bytes past the end read as zero and are counted), every decoded value is
// within the range the call allows, and the work done is bounded by the
// number of calls. Garbage input decodes to garbage symbols; callers check
// Finish() (and, for integrity, a checksum of what they decoded).
#ifndef SEQKV_CODEC_ENTROPY_RANGE_CODER_H_
#define SEQKV_CODEC_ENTROPY_RANGE_CODER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "codec/entropy/adaptive_model.h"

namespace seqkv::entropy {

inline constexpr uint32_t kRangeTop = uint32_t{1} << 24;
// Bytes that Finish() appends: the smallest possible encoded stream.
inline constexpr size_t kRangeCoderFlushBytes = 5;

class RangeEncoder {
 public:
  // Appends the encoded stream to `out`, which must outlive the encoder.
  explicit RangeEncoder(std::string& out) : out_(out) {}
  RangeEncoder(const RangeEncoder&) = delete;
  RangeEncoder& operator=(const RangeEncoder&) = delete;

  // A bit whose probability of being 0 is p0 / 2^16, p0 in [1, 65535].
  void EncodeBitWithP0(uint32_t p0, int bit) {
    const uint32_t bound = (range_ >> kProbBits) * p0;
    if (bit == 0) {
      range_ = bound;
    } else {
      low_ += bound;
      range_ -= bound;
    }
    Normalize();
  }

  template <typename Model>
  void EncodeBit(Model& model, int bit) {
    EncodeBitWithP0(model.P0(), bit);
    model.Update(bit);
  }

  // The low `num_bits` (0..32) bits of `value`, each with probability 1/2.
  void EncodeBits(uint32_t value, int num_bits) {
    while (num_bits > 16) {
      num_bits -= 16;
      EncodeBitsUpTo16((value >> num_bits) & 0xFFFF, 16);
    }
    if (num_bits > 0)
      EncodeBitsUpTo16(value & ((uint32_t{1} << num_bits) - 1), num_bits);
  }

  // A symbol occupying [cum, cum + freq) of [0, total); 0 < freq,
  // cum + freq <= total <= 2^16.
  void EncodeFreq(uint32_t cum, uint32_t freq, uint32_t total) {
    const uint32_t r = range_ / total;
    low_ += uint64_t{r} * cum;
    range_ = r * freq;
    Normalize();
  }

  // `symbol` must be < model.num_symbols().
  void EncodeSymbol(AdaptiveFrequencyModel& model, uint32_t symbol) {
    uint32_t cum, freq;
    model.Lookup(symbol, cum, freq);
    EncodeFreq(cum, freq, model.total());
    model.Update(symbol);
  }

  // A symbol of a bit tree, most significant bit first.
  template <int kBits, typename Bit>
  void EncodeTree(BitTreeModel<kBits, Bit>& model, uint32_t symbol) {
    uint32_t node = 1;
    for (int i = kBits - 1; i >= 0; --i) {
      const int bit = (symbol >> i) & 1;
      EncodeBit(model.node(node), bit);
      node = 2 * node + bit;
    }
  }

  // Flushes the state; call exactly once, after the last symbol.
  void Finish() {
    for (size_t i = 0; i < kRangeCoderFlushBytes; ++i) ShiftLow();
  }

 private:
  void EncodeBitsUpTo16(uint32_t value, int num_bits) {
    const uint32_t r = range_ >> num_bits;
    low_ += uint64_t{r} * value;
    range_ = r;
    Normalize();
  }

  void Normalize() {
    while (range_ < kRangeTop) {
      range_ <<= 8;
      ShiftLow();
    }
  }

  // Moves the top byte of low_ out. A byte is held back (cache_) while a
  // carry could still ripple into it; runs of 0xFF are counted in
  // pending_ for the same reason.
  void ShiftLow() {
    if (static_cast<uint32_t>(low_) < 0xFF000000u || (low_ >> 32) != 0) {
      const uint8_t carry = static_cast<uint8_t>(low_ >> 32);
      uint8_t byte = cache_;
      do {
        out_.push_back(static_cast<char>(static_cast<uint8_t>(byte + carry)));
        byte = 0xFF;
      } while (--pending_ != 0);
      cache_ = static_cast<uint8_t>(low_ >> 24);
    }
    ++pending_;
    low_ = (low_ & 0x00FFFFFFu) << 8;
  }

  std::string& out_;
  uint64_t low_ = 0;
  uint32_t range_ = 0xFFFFFFFFu;
  uint8_t cache_ = 0;
  uint64_t pending_ = 1;
};

class RangeDecoder {
 public:
  // `in` must outlive the decoder and hold exactly one encoded stream.
  explicit RangeDecoder(std::string_view in);

  uint32_t DecodeBitWithP0(uint32_t p0) {
    const uint32_t bound = (range_ >> kProbBits) * p0;
    uint32_t bit;
    if (code_ < bound) {
      range_ = bound;
      bit = 0;
    } else {
      code_ -= bound;
      range_ -= bound;
      bit = 1;
    }
    Normalize();
    return bit;
  }

  template <typename Model>
  uint32_t DecodeBit(Model& model) {
    const uint32_t bit = DecodeBitWithP0(model.P0());
    model.Update(static_cast<int>(bit));
    return bit;
  }

  uint32_t DecodeBits(int num_bits) {
    uint32_t value = 0;
    while (num_bits > 16) {
      num_bits -= 16;
      value = (value << 16) | DecodeBitsUpTo16(16);
    }
    if (num_bits > 0) value = (value << num_bits) | DecodeBitsUpTo16(num_bits);
    return value;
  }

  // Two steps for a caller's own frequency table: DecodeFreqTarget gives a
  // value in [0, total); the caller maps it to the symbol's [cum, cum + freq)
  // and passes that to DecodeFreqConsume.
  uint32_t DecodeFreqTarget(uint32_t total) {
    freq_step_ = range_ / total;
    uint32_t target = code_ / freq_step_;
    if (target >= total) {
      corrupt_ = true;
      target = total - 1;
    }
    return target;
  }
  void DecodeFreqConsume(uint32_t cum, uint32_t freq) {
    code_ -= freq_step_ * cum;
    range_ = freq_step_ * freq;
    Normalize();
  }

  uint32_t DecodeSymbol(AdaptiveFrequencyModel& model) {
    uint32_t cum, freq;
    const uint32_t symbol =
        model.Find(DecodeFreqTarget(model.total()), cum, freq);
    DecodeFreqConsume(cum, freq);
    model.Update(symbol);
    return symbol;
  }

  template <int kBits, typename Bit>
  uint32_t DecodeTree(BitTreeModel<kBits, Bit>& model) {
    uint32_t node = 1;
    for (int i = 0; i < kBits; ++i)
      node = 2 * node + DecodeBit(model.node(node));
    return node - (uint32_t{1} << kBits);
  }

  // False once the decoder has seen input no encoder could have produced or
  // has run past the end of its input. Long decode loops may poll this to
  // stop early; Finish() is the final word.
  bool ok() const { return !corrupt_ && overrun_ == 0; }

  // OK when the stream was valid and consumed exactly; DATA_LOSS otherwise.
  absl::Status Finish() const;

 private:
  uint32_t DecodeBitsUpTo16(int num_bits) {
    const uint32_t r = range_ >> num_bits;
    uint32_t value = code_ / r;
    if (value >> num_bits) {
      corrupt_ = true;
      value = (uint32_t{1} << num_bits) - 1;
    }
    code_ -= value * r;
    range_ = r;
    Normalize();
    return value;
  }

  uint8_t NextByte() {
    if (position_ < in_.size()) return static_cast<uint8_t>(in_[position_++]);
    ++overrun_;
    return 0;
  }

  void Normalize() {
    while (range_ < kRangeTop) {
      range_ <<= 8;
      code_ = (code_ << 8) | NextByte();
    }
  }

  std::string_view in_;
  size_t position_ = 0;
  size_t overrun_ = 0;
  uint32_t range_ = 0xFFFFFFFFu;
  uint32_t code_ = 0;
  uint32_t freq_step_ = 1;
  bool corrupt_ = false;
};

}  // namespace seqkv::entropy

#endif  // SEQKV_CODEC_ENTROPY_RANGE_CODER_H_
