// Codes one group (a layer's K or V) of residuals: a scalar quantizer whose
// step meets an error budget, per-channel offsets, and static-rANS entropy
// coding of the indices with one model per class of channels of similar
// spread. The quantizer is uniform (mode 0) or dependent, on the trellis of
// trellis.h (mode 2), which costs fewer bits at the same error.
//
// Group header (the symbols themselves go to the chunk's one rANS stream):
//   u8 mode            0 = uniform, 1 = every index is 0 (nothing follows),
//                      2 = trellis
//   f32 step
//   num_channels x zigzag varint   offset of each channel, in steps (mode 2:
//                                  in eighths of a step)
//   ceil(num_channels / 2) bytes   spread class of each channel (4 bits)
//   u16 classes present, then per present class: u8 lo, u8 hi,
//                                 (hi - lo + 1) x varint frequency
//                      (mode 2: this twice, Q0's tables then Q1's; an index
//                      uses the table of its channel's class and quantizer)
//   varint n, n bytes  escapes: zigzag varints of |index - offset| > 127
//                      (mode 2: of |index| > 127)
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
#include "codec/predictive/rans_vector.h"

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

// A coded group's symbols, waiting for the chunk's rANS stream (coded last
// to first, so every group's symbols are kept until the chunk is done).
struct GroupSymbols {
  GroupShape shape;
  std::vector<uint8_t> symbols;   // [head][token][head_dim], decoding order
  std::vector<uint8_t> table_of;  // per channel: index into freqs
  std::vector<std::array<uint16_t, kAlphabetSize>> freqs;  // per table
  // Trellis groups: per symbol, index into freqs (table_of is then unused).
  std::vector<uint8_t> tables;
};

// Appends the group header and returns the squared error of the
// dequantized residual, which is at most `error_budget` unless the budget
// is below what a step of max|residual| / 2^20 achieves. With `trellis` the
// group is coded in mode 2 when a trellis step meets the budget, unless it
// is small (under 128 tokens, or under a quarter bit per value) and the
// uniform coding takes fewer bytes. When the group is coded (mode 0 or 2),
// its symbols are left in `symbols`; otherwise `symbols` holds no symbols.
double EncodeResidual(const GroupShape& shape, std::span<const float> residual,
                      double error_budget, bool trellis, std::string& out,
                      GroupSymbols& symbols);

// The step EncodeResidual would quantize `residual` with, and its squared
// error in `error`; 0 when every index may be 0 (the residual's energy is
// within the budget), `error` then being that energy.
float ChooseStep(std::span<const float> residual, double error_budget,
                 double& error);

// Appends the group header of `residual` quantized with `step` (from
// ChooseStep over a larger set of values, so that groups coded apart share
// one step): mode 1 when the step is 0 or every value is 0.
void EncodeResidualWithStep(const GroupShape& shape,
                            std::span<const float> residual, float step,
                            std::string& out, GroupSymbols& symbols);

// rANS-codes the symbols of a chunk's groups, in order, and appends the
// stream; nothing when no group has symbols.
void EncodeSymbolStream(std::span<const GroupSymbols> groups, std::string& out);

// Decodes a group row by row, in the order EncodeResidual stored them, from
// the chunk's rANS stream.
class ResidualDecoder {
 public:
  // Parses header and tables; DATA_LOSS on anything malformed. Channel c's
  // values come out multiplied by channel_factors[c] when given (one per
  // channel), at no extra cost: the factor folds into its step.
  absl::Status Open(const GroupShape& shape, std::string_view bytes,
                    std::span<const float> channel_factors = {});

  // True when the group has symbols in the stream (mode 0).
  bool coded() const { return !all_zero_; }

  // Writes the next row's dequantized residual (head_dim values). Returns
  // false if the data is corrupt.
  bool NextRow(RansDecoder& rans, float* row);

  // After the last row: DATA_LOSS unless every escape was used.
  absl::Status Finish() const;

 private:
  bool DecodeEscapes(float* row, size_t channel_base);
  // Mode 2: what NextRow does after the symbols are decoded as indices.
  void ReconstructTrellisRow(float* row, size_t channel_base);

  GroupShape shape_;
  bool all_zero_ = false;
  bool trellis_ = false;
  VectorKernel kernel_ = VectorKernel::kPortable;
  float step_ = 0;
  std::vector<int32_t> offsets_;      // per channel
  std::vector<uint32_t> table_of_;    // per channel: start in entries_
  std::vector<uint32_t> entries_;     // kProbScale per table
  std::vector<uint8_t> symbols_;      // one row
  std::vector<float> float_offsets_;  // per channel: offset - kSymbolBias
  std::vector<float> steps_;          // per channel: step * factor
  // Mode 2 only.
  std::vector<uint32_t> quantizer_tables_[2];  // per channel: start in entries_
  std::vector<uint32_t> row_table_of_;         // one row
  std::vector<int32_t> states_;                // per channel of the head
  std::vector<float> fractions_;               // per channel: offset / 8
  std::vector<float> minus_bias_;              // one row of -kSymbolBias
  std::vector<float> ones_;                    // one row of 1
  ByteReader escapes_{std::string_view()};
  size_t next_row_ = 0;
};

}  // namespace seqkv::predictive

#endif  // SEQKV_CODEC_PREDICTIVE_RESIDUAL_CODER_H_
