#include "codec/predictive/residual_coder.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "codec/predictive/row_ops.h"

namespace seqkv::predictive {
namespace {

// Round to nearest even without libm calls, so the loops vectorize: adding
// and subtracting 1.5 * 2^23 leaves the integer part (valid for |x| < 2^22).
inline float RoundToInt(float x) {
  constexpr float kMagic = 12582912.0f;
  return (x + kMagic) - kMagic;
}

inline float ClampIndex(float x) {
  constexpr float kLimit = static_cast<float>(kMaxIndex);
  x = x < -kLimit ? -kLimit : x;
  return x > kLimit ? kLimit : x;
}

// Squared error of quantizing `values` with `step`.
SEQKV_ROW_CLONES
double QuantizationError(std::span<const float> values, float step) {
  const float inverse = 1.0f / step;
  constexpr int kLanes = 16;
  float partial[kLanes] = {};
  double total = 0;
  size_t i = 0;
  const size_t n = values.size();
  // Float partial sums over blocks, flushed to double so long groups do not
  // lose precision.
  while (i < n) {
    const size_t block_end = std::min(n, i + 4096);
    for (; i + kLanes <= block_end; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) {
        const float x = values[i + j];
        const float q = RoundToInt(ClampIndex(x * inverse));
        const float e = x - q * step;
        partial[j] += e * e;
      }
    }
    for (; i < block_end; ++i) {
      const float x = values[i];
      const float e = x - RoundToInt(ClampIndex(x * inverse)) * step;
      total += e * e;
    }
    for (float& p : partial) {
      total += p;
      p = 0;
    }
  }
  return total;
}

// Sum of squares and largest magnitude. The squares go to independent
// lanes so the loop vectorizes instead of waiting on one accumulator; the
// magnitudes are compared as integers (the same order for finite floats),
// which vectorizes without fast-math.
SEQKV_ROW_CLONES
void EnergyAndMax(const float* __restrict x, size_t n, double& energy,
                  float& max_abs) {
  constexpr int kLanes = 8;
  double lanes[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j)
      lanes[j] += double{x[i + j]} * double{x[i + j]};
  energy = 0;
  for (; i < n; ++i) energy += double{x[i]} * double{x[i]};
  for (double lane : lanes) energy += lane;
  uint32_t largest = 0;
  for (size_t k = 0; k < n; ++k)
    largest = std::max(largest, std::bit_cast<uint32_t>(x[k]) & 0x7FFFFFFFu);
  max_abs = std::bit_cast<float>(largest);
}

// index = round(residual / step) for every value, row by row, and the sum
// of each channel's indices.
SEQKV_ROW_CLONES
void QuantizeRows(const GroupShape& shape, const float* __restrict residual,
                  float step, int32_t* __restrict index,
                  int64_t* __restrict sums) {
  const float inverse = 1.0f / step;
  const uint32_t width = shape.head_dim;
  for (uint32_t h = 0; h < shape.num_heads; ++h) {
    int64_t* __restrict sum = sums + size_t{h} * width;
    for (uint32_t t = 0; t < shape.num_tokens; ++t) {
      const size_t base = (size_t{h} * shape.num_tokens + t) * width;
      for (uint32_t d = 0; d < width; ++d) {
        const int32_t q = static_cast<int32_t>(
            RoundToInt(ClampIndex(residual[base + d] * inverse)));
        index[base + d] = q;
        sum[d] += q;
      }
    }
  }
}

// Symbols of one row (index - offset + bias, or the escape symbol) and the
// channels' sums of |index - offset|. Returns false when a symbol is the
// escape symbol.
SEQKV_ROW_CLONES
bool SymbolRow(uint32_t width, const int32_t* __restrict index,
               const int32_t* __restrict offsets, uint8_t* __restrict symbols,
               int64_t* __restrict abs_sums) {
  uint32_t escaped = 0;
  for (uint32_t d = 0; d < width; ++d) {
    const int32_t delta = index[d] - offsets[d];
    abs_sums[d] += delta < 0 ? -delta : delta;
    const uint32_t biased = static_cast<uint32_t>(delta + kSymbolBias);
    const bool escape = biased > 2 * kSymbolBias;
    escaped |= escape;
    symbols[d] = static_cast<uint8_t>(escape ? kEscapeSymbol : biased);
  }
  return escaped == 0;
}

// Spread class of a channel from its mean |index - offset|: classes are
// half-octaves, so neighbouring classes differ little and a few suffice.
int SpreadClass(double mean_abs) {
  if (mean_abs < 1.0 / 16) return 0;
  const int c = 1 + static_cast<int>(std::floor(2 * std::log2(mean_abs * 16)));
  return std::clamp(c, 1, kNumClasses - 1);
}

void PutU16(uint32_t value, std::string& out) {
  out.push_back(static_cast<char>(value & 0xFF));
  out.push_back(static_cast<char>(value >> 8));
}

absl::Status Corrupt(std::string_view what) {
  return absl::DataLossError(
      absl::StrCat("predictive: corrupt group: ", std::string(what)));
}

}  // namespace

float ChooseStep(std::span<const float> residual, double error_budget,
                 double& error_out) {
  const size_t n = residual.size();
  double energy;
  float max_abs;
  EnergyAndMax(residual.data(), n, energy, max_abs);
  if (energy <= error_budget || max_abs == 0) {
    error_out = energy;  // every index is 0: the prediction alone is enough
    return 0;
  }

  // Step search. A uniform quantizer's error is about step^2 / 12 per
  // element when the step is small against the spread; where many values
  // fall in the zero bin it is less, so a few secant passes close the gap.
  const float min_step = max_abs / static_cast<float>(kMaxIndex / 4);
  float step = static_cast<float>(std::sqrt(12.0 * error_budget / n));
  step = std::max(step, min_step);
  float best_step = 0;
  double best_error = 0;
  float bad_step = std::numeric_limits<float>::infinity();
  for (int pass = 0; pass < 8; ++pass) {
    const double error = QuantizationError(residual, step);
    if (error <= error_budget) {
      if (step > best_step) {
        best_step = step;
        best_error = error;
      }
      if (error >= 0.97 * error_budget) break;
    } else {
      bad_step = std::min(bad_step, step);
    }
    // Aim at the middle of the accepted window [0.97, 1] x budget.
    float next =
        step * static_cast<float>(std::clamp(
                   std::sqrt(0.985 * error_budget / std::max(error, 1e-300)),
                   0.6, 1.6));
    if (next >= bad_step) next = 0.5f * (std::max(best_step, step) + bad_step);
    if (next <= best_step)
      next = 0.5f * (best_step + std::min(bad_step, step * 1.6f));
    if (next == step || next < min_step) break;
    step = next;
  }
  // Rarely the search ends without a step that meets the budget: shrink
  // until one does (the finest step always does, short of absurd budgets).
  for (step = bad_step * 0.9f; best_step == 0; step *= 0.9f) {
    step = std::max(step, min_step);
    const double error = QuantizationError(residual, step);
    if (error <= error_budget || step == min_step) {
      best_step = step;
      best_error = error;
    }
  }
  error_out = best_error;
  return best_step;
}

namespace {

// Mode 0: the header of `residual` quantized with `step`, its symbols left
// in `symbols_out`.
void EncodeIndices(const GroupShape& shape, std::span<const float> residual,
                   float step, std::string& out, GroupSymbols& symbols_out) {
  const size_t n = residual.size();
  // Indices, then per-channel offsets (rounded means) and spread classes.
  const size_t channels = shape.num_channels();
  const uint32_t tokens = shape.num_tokens;
  const uint32_t width = shape.head_dim;
  std::vector<int32_t> index(n);
  std::vector<int64_t> sums(channels, 0);
  QuantizeRows(shape, residual.data(), step, index.data(), sums.data());
  std::vector<int32_t> offsets(channels);
  for (size_t c = 0; c < channels; ++c)
    offsets[c] = static_cast<int32_t>(
        std::llround(static_cast<double>(sums[c]) / tokens));

  std::vector<uint8_t> symbols(n);
  std::vector<int64_t> abs_sums(channels, 0);
  std::string escapes;
  for (uint32_t h = 0; h < shape.num_heads; ++h) {
    const size_t channel_base = size_t{h} * width;
    for (uint32_t t = 0; t < tokens; ++t) {
      const size_t base = (size_t{h} * tokens + t) * width;
      if (!SymbolRow(width, &index[base], &offsets[channel_base],
                     &symbols[base], &abs_sums[channel_base])) {
        // Rare: residuals beyond the alphabet go to the escape bytes, in
        // the order the decoder meets them.
        for (uint32_t d = 0; d < width; ++d)
          if (symbols[base + d] == kEscapeSymbol)
            PutVarint(ZigZag(index[base + d] - offsets[channel_base + d]),
                      escapes);
      }
    }
  }
  std::vector<uint8_t> class_of(channels);
  for (size_t c = 0; c < channels; ++c)
    class_of[c] = static_cast<uint8_t>(
        SpreadClass(static_cast<double>(abs_sums[c]) / tokens));

  // Symbol counts per class, in four interleaved copies so that runs of the
  // same symbol (most are the class's mode) do not wait on each other's
  // increments.
  constexpr int kCopies = 4;
  std::vector<std::array<uint32_t, kAlphabetSize>> copies(kCopies *
                                                          kNumClasses);
  for (auto& c : copies) c.fill(0);
  for (uint32_t h = 0; h < shape.num_heads; ++h) {
    const uint8_t* cls = &class_of[size_t{h} * width];
    for (uint32_t t = 0; t < tokens; ++t) {
      const uint8_t* row = &symbols[(size_t{h} * tokens + t) * width];
      for (uint32_t d = 0; d < width; ++d)
        ++copies[cls[d] * kCopies + d % kCopies][row[d]];
    }
  }
  std::vector<std::array<uint32_t, kAlphabetSize>> counts(kNumClasses);
  for (int k = 0; k < kNumClasses; ++k)
    for (int v = 0; v < kAlphabetSize; ++v) {
      uint32_t count = 0;
      for (int c = 0; c < kCopies; ++c) count += copies[k * kCopies + c][v];
      counts[k][v] = count;
    }

  out.push_back(0);
  PutFloat(step, out);
  for (int32_t offset : offsets) PutVarint(ZigZag(offset), out);
  for (size_t c = 0; c < channels; c += 2) {
    const uint8_t high = c + 1 < channels ? class_of[c + 1] : 0;
    out.push_back(static_cast<char>(class_of[c] | high << 4));
  }
  uint32_t present = 0;
  for (int k = 0; k < kNumClasses; ++k) {
    bool used = false;
    for (uint32_t count : counts[k]) used |= count > 0;
    if (used) present |= 1u << k;
  }
  PutU16(present, out);
  std::array<uint8_t, kNumClasses> table_of_class{};
  for (int k = 0; k < kNumClasses; ++k) {
    if (!(present >> k & 1)) continue;
    table_of_class[k] = static_cast<uint8_t>(symbols_out.freqs.size());
    std::array<uint16_t, kAlphabetSize>& freqs =
        symbols_out.freqs.emplace_back();
    NormalizeFrequencies(counts[k], freqs);
    int lo = 0;
    int hi = kAlphabetSize - 1;
    while (freqs[lo] == 0) ++lo;
    while (freqs[hi] == 0) --hi;
    out.push_back(static_cast<char>(lo));
    out.push_back(static_cast<char>(hi));
    for (int s = lo; s <= hi; ++s) PutVarint(freqs[s], out);
  }
  PutVarint(escapes.size(), out);
  out += escapes;

  symbols_out.table_of.resize(channels);
  for (size_t c = 0; c < channels; ++c)
    symbols_out.table_of[c] = table_of_class[class_of[c]];
  symbols_out.symbols = std::move(symbols);
}

void ClearSymbols(const GroupShape& shape, GroupSymbols& symbols) {
  symbols.shape = shape;
  symbols.symbols.clear();
  symbols.table_of.clear();
  symbols.freqs.clear();
}

}  // namespace

double EncodeResidual(const GroupShape& shape, std::span<const float> residual,
                      double error_budget, std::string& out,
                      GroupSymbols& symbols_out) {
  ClearSymbols(shape, symbols_out);
  double error;
  const float step = ChooseStep(residual, error_budget, error);
  if (step == 0) {
    out.push_back(1);
    return error;
  }
  EncodeIndices(shape, residual, step, out, symbols_out);
  return error;
}

void EncodeResidualWithStep(const GroupShape& shape,
                            std::span<const float> residual, float step,
                            std::string& out, GroupSymbols& symbols_out) {
  ClearSymbols(shape, symbols_out);
  if (step == 0 || residual.empty()) {
    out.push_back(1);
    return;
  }
  double energy;
  float max_abs;
  EnergyAndMax(residual.data(), residual.size(), energy, max_abs);
  if (max_abs == 0) {
    out.push_back(1);
    return;
  }
  EncodeIndices(shape, residual, step, out, symbols_out);
}

void EncodeSymbolStream(std::span<const GroupSymbols> groups,
                        std::string& out) {
  size_t position = 0;
  for (const GroupSymbols& group : groups) position += group.symbols.size();
  if (position == 0) return;
  RansEncoder encoder(position);
  std::vector<EncodeTable> tables;
  std::vector<const EncodeSymbol*> table_of;
  std::vector<uint32_t> vector_tables;
  std::vector<uint32_t> vector_table_of;
  const bool vector_kernel = BestVectorKernel() == VectorKernel::kAvx512;
  for (size_t g = groups.size(); g-- > 0;) {
    const GroupSymbols& group = groups[g];
    if (group.symbols.empty()) continue;
    const GroupShape& shape = group.shape;
    const uint32_t width = shape.head_dim;
    const uint8_t* symbol = group.symbols.data() + group.symbols.size();
    // Every group holds a multiple of head_dim symbols, so with head_dim a
    // multiple of the states every row starts at state 0.
    if (vector_kernel && width % kNumStates == 0) {
      vector_tables.clear();
      for (const auto& freqs : group.freqs)
        AddVectorEncodeTable(freqs, vector_tables);
      vector_table_of.resize(group.table_of.size());
      for (size_t c = 0; c < vector_table_of.size(); ++c)
        vector_table_of[c] = uint32_t{group.table_of[c]} * kAlphabetSize;
      for (uint32_t h = shape.num_heads; h-- > 0;) {
        for (uint32_t t = shape.num_tokens; t-- > 0;) {
          symbol -= width;
          EncodeRowAvx512(encoder, symbol, &vector_table_of[size_t{h} * width],
                          vector_tables.data(), width);
        }
      }
      position -= group.symbols.size();
      continue;
    }
    tables.resize(group.freqs.size());
    for (size_t k = 0; k < tables.size(); ++k)
      BuildEncodeTable(group.freqs[k], tables[k]);
    table_of.resize(group.table_of.size());
    for (size_t c = 0; c < table_of.size(); ++c)
      table_of[c] = tables[group.table_of[c]].data();
    for (uint32_t h = shape.num_heads; h-- > 0;) {
      const EncodeSymbol* const* row_tables = &table_of[size_t{h} * width];
      for (uint32_t t = shape.num_tokens; t-- > 0;) {
        for (uint32_t d = width; d-- > 0;) {
          --symbol;
          --position;
          encoder.Put(position, row_tables[d][*symbol]);
        }
      }
    }
  }
  encoder.Finish(out);
}

absl::Status ResidualDecoder::Open(const GroupShape& shape,
                                   std::string_view bytes,
                                   std::span<const float> channel_factors) {
  shape_ = shape;
  next_row_ = 0;
  escapes_ = ByteReader(std::string_view());
  ByteReader reader(bytes);
  uint8_t mode;
  if (!reader.GetByte(mode)) return Corrupt("missing mode");
  if (mode == 1) {
    all_zero_ = true;
    if (reader.remaining() != 0) return Corrupt("bytes after an empty group");
    return absl::OkStatus();
  }
  if (mode != 0) return Corrupt(absl::StrCat("unknown mode ", mode));
  all_zero_ = false;
  if (!reader.GetFloat(step_) || !std::isfinite(step_) || !(step_ > 0))
    return Corrupt("step");
  const size_t channels = shape.num_channels();
  offsets_.resize(channels);
  for (size_t c = 0; c < channels; ++c) {
    uint64_t raw;
    if (!reader.GetVarint(raw)) return Corrupt("channel offsets");
    const int64_t offset = UnZigZag(raw);
    if (offset < -kMaxIndex || offset > kMaxIndex)
      return Corrupt("channel offset out of range");
    offsets_[c] = static_cast<int32_t>(offset);
  }
  std::vector<uint8_t> class_of(channels);
  for (size_t c = 0; c < channels; c += 2) {
    uint8_t packed;
    if (!reader.GetByte(packed)) return Corrupt("channel classes");
    class_of[c] = packed & 0xF;
    if (c + 1 < channels) class_of[c + 1] = packed >> 4;
  }
  uint8_t present_lo, present_hi;
  if (!reader.GetByte(present_lo) || !reader.GetByte(present_hi))
    return Corrupt("class mask");
  const uint32_t present = present_lo | uint32_t{present_hi} << 8;
  std::array<int, kNumClasses> table_of_class;
  table_of_class.fill(-1);
  const int num_tables = std::popcount(present);
  entries_.resize(size_t{kProbScale} * num_tables);
  std::array<uint16_t, kAlphabetSize> freqs;
  int table = 0;
  for (int k = 0; k < kNumClasses; ++k) {
    if (!(present >> k & 1)) continue;
    uint8_t lo, hi;
    if (!reader.GetByte(lo) || !reader.GetByte(hi) || lo > hi)
      return Corrupt("frequency table range");
    freqs.fill(0);
    for (int s = lo; s <= hi; ++s) {
      uint64_t f;
      if (!reader.GetVarint(f) || f >= kProbScale)
        return Corrupt("frequency table");
      freqs[s] = static_cast<uint16_t>(f);
    }
    if (!BuildDecodeTable(freqs, &entries_[size_t{kProbScale} * table]))
      return Corrupt("frequencies do not sum up");
    table_of_class[k] = table++;
  }
  table_of_.resize(channels);
  for (size_t c = 0; c < channels; ++c) {
    if (table_of_class[class_of[c]] < 0)
      return Corrupt("channel class without table");
    table_of_[c] =
        kProbScale * static_cast<uint32_t>(table_of_class[class_of[c]]);
  }
  uint64_t escape_size;
  std::string_view escape_bytes;
  if (!reader.GetVarint(escape_size) ||
      !reader.GetBytes(escape_size, escape_bytes))
    return Corrupt("escapes");
  if (reader.remaining() != 0) return Corrupt("bytes after the escapes");
  escapes_ = ByteReader(escape_bytes);
  symbols_.resize(shape.head_dim);
  float_offsets_.resize(channels);
  for (size_t c = 0; c < channels; ++c)
    float_offsets_[c] = static_cast<float>(offsets_[c] - kSymbolBias);
  steps_.assign(channels, step_);
  if (!channel_factors.empty())
    for (size_t c = 0; c < channels; ++c)
      steps_[c] = step_ * channel_factors[c];
  kernel_ = shape.head_dim % kNumStates == 0 ? BestVectorKernel()
                                             : VectorKernel::kPortable;
  return absl::OkStatus();
}

bool ResidualDecoder::DecodeEscapes(float* row, size_t channel_base) {
  for (uint32_t d = 0; d < shape_.head_dim; ++d) {
    if (symbols_[d] != kEscapeSymbol) continue;
    uint64_t raw;
    if (!escapes_.GetVarint(raw)) return false;
    const int64_t delta = UnZigZag(raw);
    if (delta < -kMaxIndex || delta > kMaxIndex) return false;
    row[d] = static_cast<float>(delta + offsets_[channel_base + d]) *
             steps_[channel_base + d];
  }
  return true;
}

bool ResidualDecoder::NextRow(RansDecoder& rans, float* row) {
  const uint32_t width = shape_.head_dim;
  if (all_zero_) {
    std::fill(row, row + width, 0.0f);
    return true;
  }
  const size_t channel_base = (next_row_ / shape_.num_tokens) * width;
  ++next_row_;
  const uint32_t* table_of = &table_of_[channel_base];
  const float* offsets = &float_offsets_[channel_base];
  const float* steps = &steps_[channel_base];
  uint8_t* symbols = symbols_.data();
  bool escaped;
  if (kernel_ != VectorKernel::kPortable && rans.position() % kNumStates == 0 &&
      rans.words_left() >= width) {
    escaped = DecodeRow(kernel_, rans, entries_.data(), table_of, offsets,
                        steps, width, kEscapeSymbol, symbols, row);
  } else {
    rans.GetSymbols(entries_.data(), table_of, width, symbols);
    // (symbol + offset - bias) * step, the sum exact in float as indices
    // stay below 2^23; the vector kernels compute the same.
    uint8_t largest = 0;
    for (uint32_t d = 0; d < width; ++d) {
      row[d] = (static_cast<float>(symbols[d]) + offsets[d]) * steps[d];
      largest = std::max(largest, symbols[d]);
    }
    escaped = largest == kEscapeSymbol;
  }
  return !escaped || DecodeEscapes(row, channel_base);
}

absl::Status ResidualDecoder::Finish() const {
  if (escapes_.remaining() != 0) return Corrupt("unused escapes");
  return absl::OkStatus();
}

}  // namespace seqkv::predictive
