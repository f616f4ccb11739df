// Reading and writing rows of KV elements of any layout dtype as float, for
// the quantizing codecs. Output is rounded to nearest even in the dtype.
#ifndef SEQKV_CODEC_TURBO_ELEMENT_IO_H_
#define SEQKV_CODEC_TURBO_ELEMENT_IO_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "codec/float_bits.h"
#include "codec/kv_layout.h"

namespace seqkv {

// Converts out.size() elements starting at element `offset` of `data`.
inline void LoadElements(DType dtype, std::span<const std::byte> data,
                         size_t offset, std::span<float> out) {
  const std::byte* p = data.data() + offset * DTypeSize(dtype);
  for (size_t i = 0; i < out.size(); ++i) {
    switch (dtype) {
      case DType::kBF16: {
        uint16_t bits;
        std::memcpy(&bits, p + 2 * i, 2);
        out[i] = Bf16ToFloat(bits);
        break;
      }
      case DType::kFP16: {
        uint16_t bits;
        std::memcpy(&bits, p + 2 * i, 2);
        out[i] = Fp16ToFloat(bits);
        break;
      }
      case DType::kFP32:
        std::memcpy(&out[i], p + 4 * i, 4);
        break;
    }
  }
}

inline void StoreElements(DType dtype, std::span<const float> values,
                          size_t offset, std::span<std::byte> data) {
  std::byte* p = data.data() + offset * DTypeSize(dtype);
  for (size_t i = 0; i < values.size(); ++i) {
    switch (dtype) {
      case DType::kBF16: {
        const uint16_t bits = FloatToBf16(values[i]);
        std::memcpy(p + 2 * i, &bits, 2);
        break;
      }
      case DType::kFP16: {
        const uint16_t bits = FloatToFp16(values[i]);
        std::memcpy(p + 2 * i, &bits, 2);
        break;
      }
      case DType::kFP32:
        std::memcpy(p + 4 * i, &values[i], 4);
        break;
    }
  }
}

// Little-endian fixed-width integers in byte strings.
inline void AppendLe16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v & 0xFF));
  out.push_back(static_cast<char>(v >> 8));
}
inline uint16_t ReadLe16(const char* p) {
  return static_cast<uint16_t>(static_cast<uint8_t>(p[0]) |
                               (static_cast<uint8_t>(p[1]) << 8));
}
inline void PutLe32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}
inline uint32_t ReadLe32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= uint32_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}

// fp16 largest finite value: norms, scales and zero points are stored as fp16.
constexpr float kMaxFp16 = 65504.0f;

// True for an fp16 bit pattern that is finite (not inf/NaN).
inline bool Fp16IsFinite(uint16_t bits) { return (bits & 0x7C00) != 0x7C00; }

}  // namespace seqkv

#endif  // SEQKV_CODEC_TURBO_ELEMENT_IO_H_
