// Error weights: how much an error in each channel of a group costs the
// model, turned into the per-channel scales the quantizer works on.
// Scaling a value by s makes its quantization error cost s^2 as much, so a
// uniform quantizer on scaled values spends its bits where errors matter
// (step proportional to 1 / sqrt(weight), the allocation that minimizes
// bits for a given weighted error).
//
// Scales are stored as 4-bit codes, powers of sqrt(2): half a bit of
// log-scale resolution costs next to nothing, as bits grow with the square
// of a scale's relative error.
#ifndef SEQKV_CODEC_PREDICTIVE_ERROR_WEIGHTS_H_
#define SEQKV_CODEC_PREDICTIVE_ERROR_WEIGHTS_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace seqkv::predictive {

inline constexpr int kNumScaleCodes = 16;

// The code whose scale is nearest sqrt(weight) (weight > 0) in the log
// domain, clamped to the codes' range (weights 1/256 .. 128).
uint8_t ScaleCodeForWeight(double weight);
// 2^((code - 8) / 2): from 1/16 to about 11.
float ScaleOfCode(uint8_t code);

// Codes packed two per byte, low nibble first.
void AppendScaleCodes(std::span<const uint8_t> codes, std::string& out);
// Reads `count` codes from the front of `bytes` and removes them; false if
// `bytes` is too short.
bool ReadScaleCodes(std::string_view& bytes, size_t count,
                    std::vector<uint8_t>& codes);

}  // namespace seqkv::predictive

#endif  // SEQKV_CODEC_PREDICTIVE_ERROR_WEIGHTS_H_
