#include "codec/predictive/error_weights.h"

#include <algorithm>
#include <cmath>

namespace seqkv::predictive {
namespace {

constexpr int kUnitScaleCode = 8;

}  // namespace

uint8_t ScaleCodeForWeight(double weight) {
  // scale = sqrt(weight) = 2^((code - 8) / 2), so code = log2(weight) + 8.
  const double code = std::round(std::log2(weight)) + kUnitScaleCode;
  return static_cast<uint8_t>(std::clamp(code, 0.0, kNumScaleCodes - 1.0));
}

float ScaleOfCode(uint8_t code) {
  return std::exp2(0.5f * static_cast<float>(int{code} - kUnitScaleCode));
}

void AppendScaleCodes(std::span<const uint8_t> codes, std::string& out) {
  for (size_t i = 0; i < codes.size(); i += 2) {
    const uint8_t high = i + 1 < codes.size() ? codes[i + 1] : 0;
    out.push_back(static_cast<char>((codes[i] & 0xF) | high << 4));
  }
}

bool ReadScaleCodes(std::string_view& bytes, size_t count,
                    std::vector<uint8_t>& codes) {
  const size_t packed = (count + 1) / 2;
  if (bytes.size() < packed) return false;
  codes.resize(count);
  for (size_t i = 0; i < count; ++i)
    codes[i] = static_cast<uint8_t>(bytes[i / 2]) >> (i % 2 * 4) & 0xF;
  bytes.remove_prefix(packed);
  return true;
}

}  // namespace seqkv::predictive
