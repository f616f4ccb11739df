// Fixed-width little-endian bit packing for quantization indices. The writer
// appends to a string; the reader works on a span whose size the caller has
// already checked, so it never reads outside it.
#ifndef SEQKV_CODEC_TURBO_BIT_PACKING_H_
#define SEQKV_CODEC_TURBO_BIT_PACKING_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace seqkv {

// Bytes needed for `count` values of `bits` bits each.
inline size_t PackedBytes(size_t count, int bits) {
  return (count * static_cast<size_t>(bits) + 7) / 8;
}

class BitWriter {
 public:
  explicit BitWriter(std::string& out) : out_(out) {}
  ~BitWriter() { Flush(); }
  BitWriter(const BitWriter&) = delete;
  BitWriter& operator=(const BitWriter&) = delete;

  // Appends the low `bits` bits of `value` (bits <= 32).
  void Write(uint32_t value, int bits) {
    buffer_ |= uint64_t{value & ((uint64_t{1} << bits) - 1)} << filled_;
    filled_ += bits;
    while (filled_ >= 8) {
      out_.push_back(static_cast<char>(buffer_ & 0xFF));
      buffer_ >>= 8;
      filled_ -= 8;
    }
  }
  // Pads the last partial byte with zeros.
  void Flush() {
    if (filled_ > 0) out_.push_back(static_cast<char>(buffer_ & 0xFF));
    buffer_ = 0;
    filled_ = 0;
  }

 private:
  std::string& out_;
  uint64_t buffer_ = 0;
  int filled_ = 0;
};

class BitReader {
 public:
  // `data` must hold every bit that will be read; callers size-check first.
  explicit BitReader(std::string_view data) : data_(data) {}

  uint32_t Read(int bits) {
    while (filled_ < bits) {
      uint64_t byte =
          pos_ < data_.size() ? static_cast<uint8_t>(data_[pos_]) : 0;
      ++pos_;
      buffer_ |= byte << filled_;
      filled_ += 8;
    }
    uint32_t value =
        static_cast<uint32_t>(buffer_ & ((uint64_t{1} << bits) - 1));
    buffer_ >>= bits;
    filled_ -= bits;
    return value;
  }

 private:
  std::string_view data_;
  size_t pos_ = 0;
  uint64_t buffer_ = 0;
  int filled_ = 0;
};

}  // namespace seqkv

#endif  // SEQKV_CODEC_TURBO_BIT_PACKING_H_
