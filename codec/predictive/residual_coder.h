// Codes one group (a layer's K or V) of residuals: a uniform scalar
// quantizer whose step meets an error budget, per-channel integer offsets,
// and static-rANS entropy coding of the indices with one model per class of
// channels of similar spread.
//
// Group payload:
//   u8 mode            0 = coded, 1 = every index is 0 (nothing follows)
//   f32 step
//   num_channels x zigzag varint   offset of each channel, in steps
//   ceil(num_channels / 2) bytes   spread class of each channel (4 bits)
//   u16 classes present, then per present class: u8 lo, u8 hi,
//                                 (hi - lo + 1) x varint frequency
//   varint n, n bytes  escapes: zigzag varints of |index - offset| > 127
//   the rest           rANS stream (16-bit words, 4 interleaved states)
#ifndef SEQKV_CODEC_PREDICTIVE_RESIDUAL_CODER_H_
#define SEQKV_CODEC_PREDICTIVE_RESIDUAL_CODER_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "codec/predictive/byte_io.h"
#include "codec/predictive/rans.h"

namespace seqkv::predictive {

// A group is num_heads x num_tokens rows of head_dim values, head-major; the
// channel of element (h, t, d) is h * head_dim + d.
struct GroupShape {
  uint32_t num_heads = 0;
  uint32_t num_tokens = 0;
  uint32_t head_dim = 0;
  size_t num_channels() const { return size_t{num_heads} * head_dim; }
  size_t num_elements() const { return num_channels() * num_tokens; }
};

inline constexpr int kNumClasses = 16;
inline constexpr int kSymbolBias = 127;  // symbol = index - offset + 127
inline constexpr int kEscapeSymbol = 255;
// Indices are kept well inside int32 and exactly representable in float.
inline constexpr int64_t kMaxIndex = int64_t{1} << 22;

// Appends the coded group and returns the squared error of the dequantized
// residual, which is at most `error_budget` unless the budget is below what
// a step of max|residual| / 2^20 achieves.
double EncodeResidual(const GroupShape& shape, std::span<const float> residual,
                      double error_budget, std::string& out);

// Decodes a group row by row, in the order EncodeResidual stored them.
class ResidualDecoder {
 public:
  // Parses header and tables; DATA_LOSS on anything malformed.
  absl::Status Open(const GroupShape& shape, std::string_view bytes);

  // Writes the next row's dequantized residual (head_dim values). Returns
  // false if the data is corrupt.
  bool NextRow(float* row);

  // After the last row: DATA_LOSS unless the stream ended exactly.
  absl::Status Finish() const;

 private:
  bool DecodeEscapes(float* row, const uint8_t* symbols, size_t channel_base);

  GroupShape shape_;
  bool all_zero_ = false;
  float step_ = 0;
  std::vector<int32_t> offsets_;              // per channel
  std::vector<const DecodeModel*> model_of_;  // per channel
  std::vector<std::unique_ptr<DecodeModel>> models_;
  std::vector<uint8_t> symbols_;      // one row
  std::vector<float> float_offsets_;  // per channel: offset - kSymbolBias
  ByteReader escapes_{std::string_view()};
  std::unique_ptr<RansDecoder> rans_;
  size_t next_index_ = 0;
  size_t next_row_ = 0;
};

}  // namespace seqkv::predictive

#endif  // SEQKV_CODEC_PREDICTIVE_RESIDUAL_CODER_H_
