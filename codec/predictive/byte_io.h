// Little helpers to write and bounds-check-read the predictive payload.
#ifndef SEQKV_CODEC_PREDICTIVE_BYTE_IO_H_
#define SEQKV_CODEC_PREDICTIVE_BYTE_IO_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace seqkv::predictive {

inline void PutVarint(uint64_t value, std::string& out) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>(value | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}
inline uint64_t ZigZag(int64_t value) {
  return (static_cast<uint64_t>(value) << 1) ^
         static_cast<uint64_t>(value >> 63);
}
inline int64_t UnZigZag(uint64_t value) {
  return static_cast<int64_t>(value >> 1) ^ -static_cast<int64_t>(value & 1);
}
inline void PutFloat(float value, std::string& out) {
  char bytes[sizeof(value)];
  std::memcpy(bytes, &value, sizeof(value));
  out.append(bytes, sizeof(bytes));
}

// Reads from an untrusted buffer. Every getter returns false (and leaves the
// reader failed) instead of reading past the end.
class ByteReader {
 public:
  explicit ByteReader(std::string_view bytes)
      : next_(bytes.data()), end_(bytes.data() + bytes.size()) {}

  size_t remaining() const { return static_cast<size_t>(end_ - next_); }

  bool GetByte(uint8_t& value) {
    if (next_ == end_) return false;
    value = static_cast<uint8_t>(*next_++);
    return true;
  }
  bool GetVarint(uint64_t& value) {
    value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t byte;
      if (!GetByte(byte)) return false;
      value |= uint64_t{byte & 0x7Fu} << shift;
      if ((byte & 0x80) == 0) return shift < 63 || byte <= 1;
    }
    return false;
  }
  bool GetFloat(float& value) {
    if (remaining() < sizeof(value)) return false;
    std::memcpy(&value, next_, sizeof(value));
    next_ += sizeof(value);
    return true;
  }
  bool GetBytes(size_t size, std::string_view& bytes) {
    if (remaining() < size) return false;
    bytes = std::string_view(next_, size);
    next_ += size;
    return true;
  }

 private:
  const char* next_;
  const char* end_;
};

}  // namespace seqkv::predictive

#endif  // SEQKV_CODEC_PREDICTIVE_BYTE_IO_H_
