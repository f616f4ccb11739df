#include "codec/lossless_codec_stream.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "absl/container/flat_hash_map.h"
#include "codec/entropy/adaptive_model.h"
#include "codec/entropy/range_coder.h"
#include "codec/float_bits.h"

namespace seqkv::lossless {

using entropy::AdaptiveFrequencyModel;
using entropy::BitModel;
using entropy::RangeDecoder;
using entropy::RangeEncoder;

double FloatFormat::ToDouble(uint32_t bits) const {
  if (width_bits == 32) return std::bit_cast<float>(bits);
  if (mant_bits == 7) return Bf16ToFloat(static_cast<uint16_t>(bits));
  return Fp16ToFloat(static_cast<uint16_t>(bits));
}

uint32_t FloatFormat::OrdCeil(double v) const {
  const uint32_t kNegativeZero = sign_mask();
  if (v == 0) return ToOrd(kNegativeZero);
  const bool negative = v < 0;
  const double magnitude = std::fabs(v);
  int e;
  std::frexp(magnitude, &e);  // magnitude in [2^(e-1), 2^e)
  const int biased = std::max(e - 1 + bias, 1);
  uint32_t bits;
  if (biased >= static_cast<int>(exp_all_ones())) {
    // Beyond the largest finite value: +Inf above, the most negative finite
    // value below.
    bits = negative ? (sign_mask() | ((exp_all_ones() << mant_bits) - 1))
                    : (exp_all_ones() << mant_bits);
  } else {
    // Scale so that one unit is the spacing of the format in this binade;
    // exact because the spacing is a power of two.
    const double units = std::ldexp(magnitude, mant_bits + bias - biased);
    // Toward +infinity: up in magnitude for positive v, down for negative.
    const uint64_t count =
        static_cast<uint64_t>(negative ? std::floor(units) : std::ceil(units));
    // (biased - 1) << mant_bits plus a count that includes the implicit bit
    // gives the bit pattern, carries into the next binade (or +Inf) included.
    bits = static_cast<uint32_t>((uint64_t(biased - 1) << mant_bits) + count);
    if (negative) bits |= sign_mask();
  }
  return ToOrd(bits);
}

FloatFormat FloatFormat::For(DType dtype) {
  switch (dtype) {
    case DType::kFP16:
      return {16, 10, 5, 15};
    case DType::kFP32:
      return {32, 23, 8, 127};
    case DType::kBF16:
      break;
  }
  return {16, 7, 8, 127};
}

namespace {

// Tuning knobs of the model. They describe how fast statistics adapt and
// how finely values are binned, not any particular model or file.
constexpr int kStepBelowScale = 0;  // delta = 2^floor(log2 s): cells ~ s wide
constexpr int kTopBits = 1;         // modeled top bits of a cell index
constexpr int kMaxResidual = 20;    // |n - n_pred| coded directly up to this
constexpr uint32_t kLargeSymbol = 2 * kMaxResidual + 1;
constexpr uint32_t kRawSymbol = kLargeSymbol + 1;
constexpr uint32_t kResidualSymbols = kRawSymbol + 1;
constexpr int kMaxLargeBits = 20;            // larger residuals are sent raw
constexpr uint32_t kZeroBinadeSymbols = 33;  // last one: exponent sent raw
constexpr double kMaxCellIndex = 1099511627776.0;  // 2^40: keeps n exact
constexpr uint32_t kMeanWindow = 64;  // running mean over ~this many tokens
constexpr uint32_t kScaleWindow = 32;
constexpr int kActivityLevels = 6;
constexpr int kContexts = kActivityLevels * kActivityLevels * 2;

int Activity(uint32_t magnitude) {
  if (magnitude <= 2) return static_cast<int>(magnitude);
  if (magnitude <= 4) return 3;
  if (magnitude <= 8) return 4;
  return 5;
}

uint32_t BitLength(uint64_t v) {
  return static_cast<uint32_t>(64 - std::countl_zero(v));
}

// Both directions of the coder behind one interface, so that the model is
// written once: in encode mode the reference arguments are inputs, in
// decode mode outputs.
class EncodeIo {
 public:
  static constexpr bool kEncode = true;
  explicit EncodeIo(std::string& out) : coder_(out) {}
  void Symbol(AdaptiveFrequencyModel& model, uint32_t& symbol) {
    coder_.EncodeSymbol(model, symbol);
  }
  void Bit(BitModel& model, uint32_t& bit) {
    coder_.EncodeBit(model, static_cast<int>(bit));
  }
  void Bits(uint32_t& value, int num_bits) {
    coder_.EncodeBits(value, num_bits);
  }
  // value in [0, count), count >= 1, all equally likely.
  void Uniform(uint64_t& value, uint64_t count) {
    if (count <= 1) return;
    const int shift = std::max(0, static_cast<int>(BitLength(count - 1)) - 16);
    coder_.EncodeFreq(static_cast<uint32_t>(value >> shift), 1,
                      static_cast<uint32_t>(((count - 1) >> shift) + 1));
    coder_.EncodeBits(static_cast<uint32_t>(value) & ((1u << shift) - 1),
                      shift);
  }
  void Corrupt() {}
  bool ok() const { return true; }
  void Finish() { coder_.Finish(); }

 private:
  RangeEncoder coder_;
};

class DecodeIo {
 public:
  static constexpr bool kEncode = false;
  explicit DecodeIo(std::string_view in) : coder_(in) {}
  void Symbol(AdaptiveFrequencyModel& model, uint32_t& symbol) {
    symbol = coder_.DecodeSymbol(model);
  }
  void Bit(BitModel& model, uint32_t& bit) { bit = coder_.DecodeBit(model); }
  void Bits(uint32_t& value, int num_bits) {
    value = coder_.DecodeBits(num_bits);
  }
  void Uniform(uint64_t& value, uint64_t count) {
    if (count <= 1) {
      value = 0;
      return;
    }
    const int shift = std::max(0, static_cast<int>(BitLength(count - 1)) - 16);
    const uint32_t total = static_cast<uint32_t>(((count - 1) >> shift) + 1);
    const uint32_t high = coder_.DecodeFreqTarget(total);
    coder_.DecodeFreqConsume(high, 1);
    value = (uint64_t{high} << shift) | coder_.DecodeBits(shift);
    if (value >= count) {
      corrupt_ = true;
      value = 0;
    }
  }
  void Corrupt() { corrupt_ = true; }
  bool ok() const { return !corrupt_ && coder_.ok(); }
  absl::Status Finish() const {
    if (corrupt_) return absl::DataLossError("lossless: corrupt stream");
    return coder_.Finish();
  }

 private:
  RangeDecoder coder_;
  bool corrupt_ = false;
};

// What the model knows about one channel of one head.
struct Channel {
  double mean = 0;   // prediction of the next value (rotating frame for K)
  double scale = 0;  // running mean absolute prediction error
  uint32_t count = 0;
};

template <typename Io>
class StreamCoder {
 public:
  StreamCoder(const StreamSpec& spec, Io& io)
      : spec_(spec),
        format_(spec.format),
        io_(io),
        large_bits_(kMaxLargeBits + 1),
        zero_binade_{AdaptiveFrequencyModel(kZeroBinadeSymbols),
                     AdaptiveFrequencyModel(kZeroBinadeSymbols)} {
    for (auto& models : residual_) {
      models.reserve(kContexts);
      for (int i = 0; i < kContexts; ++i)
        models.emplace_back(kResidualSymbols, 24, 1 << 16);
    }
  }

  // `values` holds the stream's raw bit patterns: read when encoding,
  // written when decoding.
  void Run(std::vector<uint32_t>& values) {
    const uint32_t dim = spec_.dim;
    std::vector<Channel> channels(dim);
    std::vector<uint32_t> previous_activity(dim);
    std::vector<double> predicted(dim);
    std::vector<uint32_t> predicted_bits(dim);
    const bool token_rows = !spec_.token_ids.empty();
    if (token_rows && spec_.rope != nullptr) BuildPhases();
    int source = 0;  // what predicted the row: 0 an earlier row, 1 the table
    absl::flat_hash_map<int32_t, uint32_t> last_row;
    double head_scale = 1.0;
    for (uint32_t head = 0; head < spec_.heads && io_.ok(); ++head) {
      std::fill(channels.begin(), channels.end(), Channel{});
      std::fill(previous_activity.begin(), previous_activity.end(), 0);
      last_row.clear();
      uint32_t* head_values = values.data() + size_t{head} * spec_.tokens * dim;
      for (uint32_t t = 0; t < spec_.tokens && io_.ok(); ++t) {
        uint32_t* row = head_values + size_t{t} * dim;
        bool have_prediction = false;
        if (token_rows) {
          // The token source first: it knows the row before RoPE, so for
          // keys its prediction is the better one.
          auto [it, inserted] = last_row.try_emplace(spec_.token_ids[t], t);
          if (spec_.token_source != nullptr &&
              spec_.token_source->Row(spec_.token_ids[t], head, predicted)) {
            PredictFromTable(t, predicted);
            have_prediction = true;
            source = 1;
          } else if (!inserted) {
            PredictFromEarlierRow(head_values + size_t{it->second} * dim,
                                  it->second, t, predicted);
            have_prediction = true;
            source = 0;
          }
          it->second = t;
        }
        bool exact = false;
        if (have_prediction) {
          for (uint32_t d = 0; d < dim; ++d)
            predicted_bits[d] = RoundToFormat(predicted[d]);
          uint32_t same = 1;
          if constexpr (Io::kEncode)
            same = std::equal(row, row + dim, predicted_bits.begin()) ? 1 : 0;
          io_.Bit(exact_row_, same);
          if (same) {
            std::copy(predicted_bits.begin(), predicted_bits.end(), row);
            exact = true;
          }
        }
        uint32_t left_activity = 0;
        double row_magnitude = 0;
        for (uint32_t d = 0; d < dim; ++d) {
          Channel& channel = channels[d];
          if (t == 0) {
            // No history yet: predict 0 at the scale of the row so far.
            channel.scale = d == 0 ? head_scale : row_magnitude / d;
          }
          uint32_t activity = 0;
          if (exact) {
          } else if (have_prediction) {
            const double p = predicted[d];
            const double magnitude = std::fabs(p) + channel.scale * (1.0 / 256);
            double& relative_error = relative_error_[source];
            activity = CodeValue(row[d], p, magnitude * relative_error,
                                 Activity(left_activity), 0, 1 + source);
            if (format_.IsFinite(row[d])) {
              const double error = std::fabs(format_.ToDouble(row[d]) - p);
              relative_error +=
                  (std::min(error / magnitude, 1.0) - relative_error) *
                  (1.0 / 64);
              relative_error = std::max(relative_error, 1e-12);
            }
          } else {
            activity = CodeValue(row[d], channel.mean, channel.scale,
                                 Activity(left_activity),
                                 Activity(previous_activity[d]), 0);
          }
          left_activity = activity;
          previous_activity[d] = activity;
          Update(channel, row[d], t == 0 ? &row_magnitude : nullptr);
        }
        if (t == 0 && dim > 0) head_scale = row_magnitude / dim;
        if (spec_.rope != nullptr) Rotate(channels);
      }
    }
  }

 private:
  // Codes one value; returns |n - n_pred| (capped) as the local activity.
  uint32_t CodeValue(uint32_t& bits, double prediction, double scale, int left,
                     int up, int model_set) {
    int scale_exponent;
    const double fraction =
        std::frexp(scale > 0 ? scale : 0.0, &scale_exponent);
    const int min_exponent = 1 - format_.bias;
    const int max_exponent =
        static_cast<int>(format_.exp_all_ones()) - 2 - format_.bias;
    const int step_exponent =
        scale > 0 ? std::clamp(scale_exponent - 1 - kStepBelowScale,
                               min_exponent, max_exponent)
                  : min_exponent;
    const int context = (left * kActivityLevels + up) * 2 + (fraction >= 0.75);
    const double predicted_cell =
        std::floor(std::ldexp(prediction, -step_exponent) + 0.5);
    const bool prediction_usable = std::fabs(predicted_cell) < kMaxCellIndex;

    uint32_t symbol = kRawSymbol;
    double cell = 0;
    int64_t residual = 0;
    if constexpr (Io::kEncode) {
      if (format_.IsFinite(bits) && prediction_usable) {
        cell = std::floor(std::ldexp(format_.ToDouble(bits), -step_exponent));
        if (std::fabs(cell) < kMaxCellIndex) {
          residual = static_cast<int64_t>(cell - predicted_cell);
          const uint64_t magnitude = residual < 0 ? -residual : residual;
          if (magnitude <= kMaxResidual)
            symbol = static_cast<uint32_t>(residual < 0 ? 2 * magnitude - 1
                                                        : 2 * magnitude);
          else if (BitLength(magnitude) <= kMaxLargeBits)
            symbol = kLargeSymbol;
        }
      }
    }
    io_.Symbol(residual_[model_set][context], symbol);
    if (symbol == kRawSymbol) {
      io_.Bits(bits, format_.width_bits);
      return kMaxResidual + 1;
    }
    if (!prediction_usable) {
      io_.Corrupt();
      return 0;
    }
    if (symbol == kLargeSymbol) {
      uint32_t magnitude = static_cast<uint32_t>(std::abs(residual));
      uint32_t length = BitLength(magnitude);
      uint32_t negative = residual < 0;
      io_.Symbol(large_bits_, length);
      if (length == 0) {  // hostile input only
        io_.Corrupt();
        length = 1;
      }
      io_.Bits(negative, 1);
      uint32_t low = magnitude & ((1u << (length - 1)) - 1);
      io_.Bits(low, static_cast<int>(length) - 1);
      if constexpr (!Io::kEncode) {
        magnitude = (1u << (length - 1)) | low;
        if (magnitude <= kMaxResidual) io_.Corrupt();
        residual = negative ? -int64_t{magnitude} : int64_t{magnitude};
      }
    } else if constexpr (!Io::kEncode) {
      residual = (symbol & 1) ? -int64_t((symbol + 1) / 2) : symbol / 2;
    }
    if constexpr (!Io::kEncode) {
      cell = predicted_cell + static_cast<double>(residual);
      if (std::fabs(cell) >= kMaxCellIndex) {
        io_.Corrupt();
        bits = 0;
        return 0;
      }
    }
    const double offset =
        std::ldexp(prediction, -step_exponent) - predicted_cell;
    const int cell_context =
        (static_cast<int>(std::clamp<int64_t>(residual, -2, 2)) + 2) * 2 +
        (offset >= 0);
    CodeWithinCell(bits, cell, step_exponent, cell_context);
    const uint64_t magnitude = residual < 0 ? -residual : residual;
    return static_cast<uint32_t>(
        std::min<uint64_t>(magnitude, kMaxResidual + 1));
  }

  // Codes which value of the format inside [cell, cell + 1) * 2^step_exponent
  // `bits` is.
  void CodeWithinCell(uint32_t& bits, double cell, int step_exponent,
                      int context) {
    if (cell == 0 || cell == -1) {
      CodeNearZero(bits, cell == -1, step_exponent);
      return;
    }
    const uint32_t low = format_.OrdCeil(std::ldexp(cell, step_exponent));
    const uint32_t high = format_.OrdCeil(std::ldexp(cell + 1, step_exponent));
    if (high <= low) {  // an empty cell: only hostile input gets here
      io_.Corrupt();
      bits = 0;
      return;
    }
    uint64_t index = 0;
    if constexpr (Io::kEncode) index = format_.ToOrd(bits) - low;
    const uint64_t count = uint64_t{high} - low;
    if (count >= (uint64_t{1} << kTopBits) && std::has_single_bit(count)) {
      // Values are denser towards the prediction: model the top bits of
      // the index, send the rest uniformly.
      const int rest = static_cast<int>(BitLength(count)) - 1 - kTopBits;
      uint32_t node = 1;
      for (int i = kTopBits - 1; i >= 0; --i) {
        uint32_t bit = (index >> (rest + i)) & 1;
        io_.Bit(index_top_[(context << kTopBits) + node], bit);
        node = 2 * node + bit;
      }
      uint64_t low_part = index & ((uint64_t{1} << rest) - 1);
      io_.Uniform(low_part, uint64_t{1} << rest);
      if constexpr (!Io::kEncode)
        index = (uint64_t{node - (1u << kTopBits)} << rest) | low_part;
    } else {
      io_.Uniform(index, count);
    }
    if constexpr (!Io::kEncode)
      bits = format_.FromOrd(low + static_cast<uint32_t>(index));
  }

  // The cells next to zero, [0, delta) and [-delta, 0), hold every smaller
  // binade: send the binade below delta's, then the mantissa.
  void CodeNearZero(uint32_t& bits, bool negative, int step_exponent) {
    const uint32_t step_biased =
        static_cast<uint32_t>(step_exponent + format_.bias);
    const uint32_t mant_mask = (1u << format_.mant_bits) - 1;
    uint32_t exponent = format_.Exponent(bits);
    uint32_t mantissa = bits & mant_mask;
    uint32_t below = step_biased - exponent;
    uint32_t symbol = std::min(below, kZeroBinadeSymbols - 1);
    io_.Symbol(zero_binade_[negative], symbol);
    if (symbol == kZeroBinadeSymbols - 1) {
      io_.Bits(exponent, format_.exp_bits);
    } else if constexpr (!Io::kEncode) {
      exponent = step_biased - symbol;
    }
    io_.Bits(mantissa, format_.mant_bits);
    uint32_t sign = Io::kEncode ? (bits & format_.sign_mask()) != 0 : negative;
    if (!negative && exponent == 0 && mantissa == 0)
      io_.Bit(negative_zero_, sign);
    if constexpr (!Io::kEncode) {
      if (exponent > step_biased) {
        io_.Corrupt();
        exponent = 0;
      }
      bits = (sign ? format_.sign_mask() : 0) |
             (exponent << format_.mant_bits) | mantissa;
      const double cell =
          std::floor(std::ldexp(format_.ToDouble(bits), -step_exponent));
      if (cell != (negative ? -1.0 : 0.0)) io_.Corrupt();
    }
  }

  uint32_t RoundToFormat(double v) const {
    const float f = static_cast<float>(v);
    if (format_.width_bits == 32) return std::bit_cast<uint32_t>(f);
    if (format_.mant_bits == 7) return FloatToBf16(f);
    return FloatToFp16(f);
  }

  void BuildPhases() {
    const RopePairs& rope = *spec_.rope;
    const size_t pairs = rope.first.size();
    phases_.assign(size_t{spec_.tokens} * pairs * 2, 0);
    for (size_t i = 0; i < pairs; ++i) phases_[2 * i] = 1;
    for (uint32_t t = 1; t < spec_.tokens; ++t) {
      const double* prev = &phases_[(size_t{t} - 1) * pairs * 2];
      double* cur = &phases_[size_t{t} * pairs * 2];
      for (size_t i = 0; i < pairs; ++i) {
        cur[2 * i] = prev[2 * i] * rope.cos[i] - prev[2 * i + 1] * rope.sin[i];
        cur[2 * i + 1] =
            prev[2 * i + 1] * rope.cos[i] + prev[2 * i] * rope.sin[i];
      }
    }
  }

  // The row of an earlier token with the same id, turned to position `t`
  // when RoPE applies.
  void PredictFromEarlierRow(const uint32_t* source, uint32_t from, uint32_t to,
                             std::vector<double>& out) const {
    for (uint32_t d = 0; d < spec_.dim; ++d)
      out[d] = format_.IsFinite(source[d]) ? format_.ToDouble(source[d]) : 0;
    if (spec_.rope == nullptr) return;
    const RopePairs& rope = *spec_.rope;
    const size_t pairs = rope.first.size();
    const double* p_to = &phases_[size_t{to} * pairs * 2];
    const double* p_from = &phases_[size_t{from} * pairs * 2];
    for (size_t i = 0; i < pairs; ++i) {
      // p_to * conj(p_from)
      const double c =
          p_to[2 * i] * p_from[2 * i] + p_to[2 * i + 1] * p_from[2 * i + 1];
      const double s =
          p_to[2 * i + 1] * p_from[2 * i] - p_to[2 * i] * p_from[2 * i + 1];
      const double x = out[rope.first[i]], y = out[rope.second[i]];
      out[rope.first[i]] = x * c - y * s;
      out[rope.second[i]] = y * c + x * s;
    }
  }

  // A token source's pre-RoPE row, turned to its absolute position.
  void PredictFromTable(uint32_t t, std::vector<double>& row) {
    if (spec_.rope == nullptr) return;
    const RopePairs& rope = *spec_.rope;
    const size_t pairs = rope.first.size();
    if (base_phases_.empty()) {
      // Rotation by first_position steps, by repeated squaring: exact
      // arithmetic is not needed, only the same on both sides.
      base_phases_.resize(pairs * 2);
      for (size_t i = 0; i < pairs; ++i) {
        double result_c = 1, result_s = 0;
        double power_c = rope.cos[i], power_s = rope.sin[i];
        for (uint64_t n = spec_.first_position; n != 0; n >>= 1) {
          if (n & 1) {
            const double c = result_c * power_c - result_s * power_s;
            result_s = result_s * power_c + result_c * power_s;
            result_c = c;
          }
          const double c = power_c * power_c - power_s * power_s;
          power_s = 2 * power_c * power_s;
          power_c = c;
        }
        base_phases_[2 * i] = result_c;
        base_phases_[2 * i + 1] = result_s;
      }
    }
    const double* phase = &phases_[size_t{t} * pairs * 2];
    // Models compute RoPE in the cache's dtype: cos and sin rounded to it,
    // each product and the sum rounded again. Doing the same makes most
    // predicted keys exact.
    auto round = [this](double v) {
      return format_.ToDouble(RoundToFormat(v));
    };
    for (size_t i = 0; i < pairs; ++i) {
      const double c = round(base_phases_[2 * i] * phase[2 * i] -
                             base_phases_[2 * i + 1] * phase[2 * i + 1]);
      const double s = round(base_phases_[2 * i + 1] * phase[2 * i] +
                             base_phases_[2 * i] * phase[2 * i + 1]);
      const double x = row[rope.first[i]], y = row[rope.second[i]];
      row[rope.first[i]] = round(round(x * c) - round(y * s));
      row[rope.second[i]] = round(round(y * c) + round(x * s));
    }
  }

  void Update(Channel& channel, uint32_t bits, double* row_magnitude) {
    if (!format_.IsFinite(bits)) return;
    const double x = format_.ToDouble(bits);
    if (row_magnitude != nullptr) *row_magnitude += std::fabs(x);
    if (!(std::fabs(x) < 1e30)) return;  // keep the state finite
    const double error = std::fabs(x - channel.mean);
    ++channel.count;
    const double mean_rate = 1.0 / std::min(channel.count, kMeanWindow);
    const double scale_rate = 1.0 / std::min(channel.count, kScaleWindow);
    channel.mean += (x - channel.mean) * mean_rate;
    channel.scale += (error - channel.scale) * scale_rate;
  }

  // Turns each RoPE pair's mean by one position.
  void Rotate(std::vector<Channel>& channels) {
    const RopePairs& rope = *spec_.rope;
    for (size_t i = 0; i < rope.first.size(); ++i) {
      Channel& a = channels[rope.first[i]];
      Channel& b = channels[rope.second[i]];
      const double x = a.mean, y = b.mean;
      a.mean = x * rope.cos[i] - y * rope.sin[i];
      b.mean = y * rope.cos[i] + x * rope.sin[i];
      if (!(std::fabs(a.mean) < 1e30) || !(std::fabs(b.mean) < 1e30))
        a.mean = b.mean = 0;
    }
  }

  const StreamSpec& spec_;
  const FloatFormat format_;
  Io& io_;
  // Residual models: for channel statistics, for rows predicted from an
  // earlier row, for rows predicted from the token source.
  std::vector<AdaptiveFrequencyModel> residual_[3];
  AdaptiveFrequencyModel large_bits_;
  AdaptiveFrequencyModel zero_binade_[2];
  BitModel negative_zero_;
  BitModel exact_row_;
  BitModel index_top_[10 << kTopBits];
  double relative_error_[2] = {1.0 / 128, 1.0 / 128};
  // Rotation of each RoPE pair at each token of the chunk relative to its
  // first token: (cos, sin) interleaved, [token][pair].
  std::vector<double> phases_;
  std::vector<double> base_phases_;  // rotation to first_position
};

std::vector<uint32_t> LoadValues(const FloatFormat& format,
                                 std::span<const std::byte> data) {
  std::vector<uint32_t> values(data.size() / (format.width_bits / 8));
  if (format.width_bits == 32) {
    std::memcpy(values.data(), data.data(), values.size() * 4);
  } else {
    for (size_t i = 0; i < values.size(); ++i) {
      uint16_t v;
      std::memcpy(&v, data.data() + 2 * i, 2);
      values[i] = v;
    }
  }
  return values;
}

void StoreValues(const FloatFormat& format, const std::vector<uint32_t>& values,
                 std::span<std::byte> out) {
  if (format.width_bits == 32) {
    std::memcpy(out.data(), values.data(), values.size() * 4);
  } else {
    for (size_t i = 0; i < values.size(); ++i) {
      const uint16_t v = static_cast<uint16_t>(values[i]);
      std::memcpy(out.data() + 2 * i, &v, 2);
    }
  }
}

}  // namespace

void EncodeStream(const StreamSpec& spec, std::span<const std::byte> data,
                  std::string& out) {
  std::vector<uint32_t> values = LoadValues(spec.format, data);
  EncodeIo io(out);
  StreamCoder<EncodeIo>(spec, io).Run(values);
  io.Finish();
}

absl::Status DecodeStream(const StreamSpec& spec, std::string_view in,
                          std::span<std::byte> out) {
  std::vector<uint32_t> values(spec.num_elements());
  DecodeIo io(in);
  StreamCoder<DecodeIo>(spec, io).Run(values);
  if (absl::Status status = io.Finish(); !status.ok()) return status;
  StoreValues(spec.format, values, out);
  return absl::OkStatus();
}

}  // namespace seqkv::lossless
