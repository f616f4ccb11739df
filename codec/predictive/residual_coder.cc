#include "codec/predictive/residual_coder.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "codec/predictive/row_ops.h"
#include "codec/predictive/trellis.h"

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

using SymbolCounts = std::array<uint32_t, kAlphabetSize>;

// Appends the class mask and a frequency table per class with symbols (the
// tables also go to `freqs`). Returns each class's index into `freqs`.
// `bits` grows by what the counted symbols will take in the stream.
std::array<uint8_t, kNumClasses> PutTables(
    std::span<const SymbolCounts> counts, std::string& out,
    std::vector<std::array<uint16_t, kAlphabetSize>>& freqs_out, double& bits) {
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
    table_of_class[k] = static_cast<uint8_t>(freqs_out.size());
    std::array<uint16_t, kAlphabetSize>& freqs = freqs_out.emplace_back();
    NormalizeFrequencies(counts[k], freqs);
    for (int v = 0; v < kAlphabetSize; ++v)
      if (counts[k][v] > 0)
        bits += counts[k][v] * (kProbBits - std::log2(double{freqs[v]}));
    int lo = 0;
    int hi = kAlphabetSize - 1;
    while (freqs[lo] == 0) ++lo;
    while (freqs[hi] == 0) --hi;
    out.push_back(static_cast<char>(lo));
    out.push_back(static_cast<char>(hi));
    for (int s = lo; s <= hi; ++s) PutVarint(freqs[s], out);
  }
  return table_of_class;
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
// in `symbols_out`. Returns the bits the symbols will take.
double EncodeIndices(const GroupShape& shape, std::span<const float> residual,
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
  double bits = 0;
  const std::array<uint8_t, kNumClasses> table_of_class =
      PutTables(counts, out, symbols_out.freqs, bits);
  PutVarint(escapes.size(), out);
  out += escapes;

  symbols_out.table_of.resize(channels);
  for (size_t c = 0; c < channels; ++c)
    symbols_out.table_of[c] = table_of_class[class_of[c]];
  symbols_out.symbols = std::move(symbols);
  return bits;
}

// Trellis offsets are in eighths of a step: finer than the step itself,
// which matters to a quantizer whose levels have a parity.
constexpr int kOffsetFraction = 8;
// A trellis step that meets a budget is about this fraction of the uniform
// quantizer's (the levels of both quantizers together are twice as dense).
constexpr float kTrellisStepRatio = 0.6f;

struct TrellisCoding {
  float step = 0;
  double error = 0;
  std::vector<int32_t> offsets;  // per channel, in eighths of the step
  std::vector<int32_t> index;    // [head][token][head_dim]
  std::vector<uint8_t> quantizer;
};

// What the decoder reconstructs for index k with quantizer q in a channel
// of offset o, computed exactly as ResidualDecoder does.
inline float TrellisValue(int q, int32_t k, float fraction, float step) {
  return (static_cast<float>(TrellisLevel(q, k)) + fraction) * step;
}

// The squared error of one head's rows coded as `index`, computed exactly
// as the decoder reconstructs them. Partial sums in lanes, so that the loop
// vectorizes without reassociating.
SEQKV_ROW_CLONES
double TrellisError(size_t tokens, size_t width,
                    const float* __restrict residual,
                    const int32_t* __restrict index,
                    const uint8_t* __restrict quantizer,
                    const float* __restrict fractions, float step) {
  constexpr size_t kLanes = 16;
  double total = 0;
  for (size_t t = 0; t < tokens; ++t) {
    const size_t row = t * width;
    float partial[kLanes] = {};
    size_t d = 0;
    for (; d + kLanes <= width; d += kLanes)
      for (size_t j = 0; j < kLanes; ++j) {
        const float e = residual[row + d + j] -
                        TrellisValue(quantizer[row + d + j], index[row + d + j],
                                     fractions[d + j], step);
        partial[j] += e * e;
      }
    for (; d < width; ++d) {
      const float e =
          residual[row + d] -
          TrellisValue(quantizer[row + d], index[row + d], fractions[d], step);
      total += double{e} * double{e};
    }
    for (float p : partial) total += p;
  }
  return total;
}

// values = residual / step - the channel's offset, row by row.
SEQKV_ROW_CLONES
void ScaleRows(size_t tokens, size_t width, const float* __restrict residual,
               float inverse, const float* __restrict fractions,
               float* __restrict values) {
  for (size_t t = 0; t < tokens; ++t)
    for (size_t d = 0; d < width; ++d)
      values[t * width + d] = residual[t * width + d] * inverse - fractions[d];
}

// The table of each symbol of a row: its channel's table for the quantizer
// it was coded with.
SEQKV_ROW_CLONES
void TrellisTableRow(size_t width, const uint8_t* __restrict quantizer,
                     const uint8_t* __restrict q0_table,
                     const uint8_t* __restrict q1_table,
                     uint8_t* __restrict tables) {
  for (size_t d = 0; d < width; ++d) {
    // Both loads unconditional, so that the select vectorizes.
    const uint8_t q0 = q0_table[d];
    const uint8_t q1 = q1_table[d];
    tables[d] = quantizer[d] ? q1 : q0;
  }
}

// A group on its way through the trellis search: one searcher per head,
// the values they search, and the coding. Kept by each thread from one
// group to the next, as fresh memory costs more than the search itself.
struct TrellisWork {
  std::vector<TrellisSearcher> searchers;
  std::vector<float> values;     // residual / step - offset, as the group
  std::vector<float> fractions;  // per channel: offset / 8
};

// Searches the group forward with `step` (at least max|residual| / 2^20, so
// that every value is below 2^21 steps) and returns its squared error as
// the search estimates it; sets the coding's step and offsets.
double EstimateTrellis(const GroupShape& shape, std::span<const float> residual,
                       std::span<const double> means, float step,
                       TrellisWork& work, TrellisCoding& coding) {
  const size_t channels = shape.num_channels();
  const size_t width = shape.head_dim;
  const size_t tokens = shape.num_tokens;
  coding.step = step;
  coding.offsets.resize(channels);
  work.fractions.resize(channels);
  constexpr double kLimit = double{kOffsetFraction} * (kMaxIndex / 4);
  for (size_t c = 0; c < channels; ++c) {
    coding.offsets[c] = static_cast<int32_t>(std::llround(
        std::clamp(means[c] * kOffsetFraction / step, -kLimit, kLimit)));
    work.fractions[c] = static_cast<float>(coding.offsets[c]) / kOffsetFraction;
  }
  const float inverse = 1.0f / step;
  work.values.resize(residual.size());
  if (work.searchers.size() < shape.num_heads)
    work.searchers.resize(shape.num_heads);
  double squared_steps = 0;
  for (size_t h = 0; h < shape.num_heads; ++h) {
    const size_t base = h * tokens * width;
    ScaleRows(tokens, width, &residual[base], inverse,
              &work.fractions[h * width], &work.values[base]);
    TrellisSearch search;
    search.num_tokens = static_cast<uint32_t>(tokens);
    search.width = static_cast<uint32_t>(width);
    search.values = &work.values[base];
    squared_steps += work.searchers[h].Forward(search);
  }
  return squared_steps * step * step;
}

// Traces the paths of the last EstimateTrellis into the coding and sets its
// error, computed exactly as the decoder reconstructs the values.
void FinishTrellis(const GroupShape& shape, std::span<const float> residual,
                   TrellisWork& work, TrellisCoding& coding) {
  const size_t width = shape.head_dim;
  const size_t tokens = shape.num_tokens;
  coding.index.resize(residual.size());
  coding.quantizer.resize(residual.size());
  coding.error = 0;
  for (size_t h = 0; h < shape.num_heads; ++h) {
    const size_t base = h * tokens * width;
    work.searchers[h].Backtrack(&coding.index[base], &coding.quantizer[base]);
    coding.error += TrellisError(tokens, width, &residual[base],
                                 &coding.index[base], &coding.quantizer[base],
                                 &work.fractions[h * width], coding.step);
  }
}

// Searches for the largest trellis step whose error meets the budget,
// starting from the uniform quantizer's. Each pass only runs the searches
// forward; the paths are traced once, at the step chosen. False when no
// pass meets the budget (the caller then codes the group uniformly).
bool ChooseTrellis(const GroupShape& shape, std::span<const float> residual,
                   double error_budget, float uniform_step,
                   TrellisCoding& coding) {
  const size_t channels = shape.num_channels();
  const uint32_t width = shape.head_dim;
  std::vector<double> means(channels, 0);
  for (uint32_t h = 0; h < shape.num_heads; ++h)
    for (uint32_t t = 0; t < shape.num_tokens; ++t) {
      const float* row = &residual[(size_t{h} * shape.num_tokens + t) * width];
      double* mean = &means[size_t{h} * width];
      for (uint32_t d = 0; d < width; ++d) mean[d] += row[d];
    }
  for (double& m : means) m /= shape.num_tokens;
  float max_abs;
  double energy;
  EnergyAndMax(residual.data(), residual.size(), energy, max_abs);
  const float min_step = max_abs / static_cast<float>(kMaxIndex / 4);
  float step = std::max(uniform_step * kTrellisStepRatio, min_step);

  thread_local TrellisWork work;
  // The estimate and the exact error differ by float rounding only; aim
  // the estimate a little inside the budget, and check the exact error.
  const double target = 0.995 * error_budget;
  float good_step = 0;  // the largest step estimated within the target
  float bad_step = std::numeric_limits<float>::infinity();
  for (int pass = 0; pass < 8; ++pass) {
    const double estimate =
        EstimateTrellis(shape, residual, means, step, work, coding);
    if (estimate <= target) {
      if (estimate >= 0.94 * error_budget) {
        FinishTrellis(shape, residual, work, coding);
        if (coding.error <= error_budget) return true;
        bad_step = std::min(bad_step, step);
      } else {
        good_step = std::max(good_step, step);
      }
    } else {
      bad_step = std::min(bad_step, step);
    }
    // The error grows about as the step to the power 1.9 here; where most
    // indices are 0 it grows slower (the offsets carry the channels'
    // means), so the search may stride further up than down.
    float next =
        step * static_cast<float>(std::clamp(
                   std::pow(0.975 * error_budget / std::max(estimate, 1e-300),
                            1 / 1.9),
                   0.7, 2.0));
    if (next >= bad_step) next = 0.5f * (std::max(good_step, step) + bad_step);
    if (next <= good_step)
      next = 0.5f * (good_step + std::min(bad_step, step * 2.0f));
    if (next == step || next < min_step) break;
    step = next;
  }
  if (good_step == 0) return false;
  EstimateTrellis(shape, residual, means, good_step, work, coding);
  FinishTrellis(shape, residual, work, coding);
  return coding.error <= error_budget;
}

// Mode 2: the header of a trellis coding, its symbols left in `symbols_out`.
// Returns the bits the symbols will take.
double EncodeTrellisIndices(const GroupShape& shape,
                            const TrellisCoding& coding, std::string& out,
                            GroupSymbols& symbols_out) {
  const size_t channels = shape.num_channels();
  const size_t width = shape.head_dim;
  const size_t tokens = shape.num_tokens;
  const size_t n = coding.index.size();
  std::vector<uint8_t> symbols(n);
  std::vector<int64_t> abs_sums(channels, 0);
  std::string escapes;
  // Trellis indices are coded as they are: offsets carry the channel means.
  const std::vector<int32_t> no_offsets(width, 0);
  for (size_t row = 0; row < n / width; ++row) {
    const size_t base = row * width;
    if (!SymbolRow(shape.head_dim, &coding.index[base], no_offsets.data(),
                   &symbols[base], &abs_sums[row / tokens * width]))
      for (size_t d = 0; d < width; ++d)
        if (symbols[base + d] == kEscapeSymbol)
          PutVarint(ZigZag(coding.index[base + d]), escapes);
  }
  std::vector<uint8_t> class_of(channels);
  for (size_t c = 0; c < channels; ++c)
    class_of[c] = static_cast<uint8_t>(
        SpreadClass(static_cast<double>(abs_sums[c]) / tokens));
  // Counts per (class, quantizer), counts[2 * class + quantizer], in four
  // interleaved copies as in EncodeIndices.
  constexpr int kCopies = 4;
  std::vector<SymbolCounts> copies(kCopies * 2 * kNumClasses);
  for (auto& c : copies) c.fill(0);
  for (size_t row = 0; row < n / width; ++row) {
    const uint8_t* cls = &class_of[row / tokens * width];
    const uint8_t* q = &coding.quantizer[row * width];
    const uint8_t* symbol = &symbols[row * width];
    for (size_t d = 0; d < width; ++d)
      ++copies[(2 * cls[d] + q[d]) * kCopies + d % kCopies][symbol[d]];
  }

  out.push_back(2);
  PutFloat(coding.step, out);
  for (int32_t offset : coding.offsets) PutVarint(ZigZag(offset), out);
  for (size_t c = 0; c < channels; c += 2) {
    const uint8_t high = c + 1 < channels ? class_of[c + 1] : 0;
    out.push_back(static_cast<char>(class_of[c] | high << 4));
  }
  std::array<std::array<uint8_t, kNumClasses>, 2> table_of_class;
  double bits = 0;
  for (int q = 0; q < 2; ++q) {
    std::vector<SymbolCounts> counts(kNumClasses);
    for (int k = 0; k < kNumClasses; ++k)
      for (int v = 0; v < kAlphabetSize; ++v) {
        uint32_t count = 0;
        for (int c = 0; c < kCopies; ++c)
          count += copies[(2 * k + q) * kCopies + c][v];
        counts[k][v] = count;
      }
    table_of_class[q] = PutTables(counts, out, symbols_out.freqs, bits);
  }
  PutVarint(escapes.size(), out);
  out += escapes;

  std::vector<uint8_t> channel_table[2];
  for (int q = 0; q < 2; ++q)
    for (size_t c = 0; c < channels; ++c)
      channel_table[q].push_back(table_of_class[q][class_of[c]]);
  symbols_out.tables.resize(n);
  for (size_t row = 0; row < n / width; ++row) {
    const size_t channel_base = row / tokens * width;
    TrellisTableRow(
        width, &coding.quantizer[row * width], &channel_table[0][channel_base],
        &channel_table[1][channel_base], &symbols_out.tables[row * width]);
  }
  symbols_out.symbols = std::move(symbols);
  return bits;
}

void ClearSymbols(const GroupShape& shape, GroupSymbols& symbols) {
  symbols.shape = shape;
  symbols.symbols.clear();
  symbols.table_of.clear();
  symbols.freqs.clear();
  symbols.tables.clear();
}

}  // namespace

double EncodeResidual(const GroupShape& shape, std::span<const float> residual,
                      double error_budget, bool trellis, std::string& out,
                      GroupSymbols& symbols_out) {
  ClearSymbols(shape, symbols_out);
  double error;
  const float step = ChooseStep(residual, error_budget, error);
  if (step == 0) {
    out.push_back(1);
    return error;
  }
  if (!trellis) {
    EncodeIndices(shape, residual, step, out, symbols_out);
    return error;
  }
  thread_local TrellisCoding coding;  // kept, as ChooseTrellis's buffers
  if (!ChooseTrellis(shape, residual, error_budget, step, coding)) {
    EncodeIndices(shape, residual, step, out, symbols_out);
    return error;
  }
  std::string trellis_header;
  GroupSymbols trellis_symbols;
  ClearSymbols(shape, trellis_symbols);
  const double trellis_bits =
      EncodeTrellisIndices(shape, coding, trellis_header, trellis_symbols);
  const double trellis_total = 8.0 * trellis_header.size() + trellis_bits;
  // Both quantizers meet the budget. Where the trellis's second set of
  // tables and finer offsets weigh (few tokens, or few bits per value),
  // keep whichever takes fewer bytes.
  std::string uniform_header;
  if (shape.num_tokens < 128 ||
      trellis_total < 0.25 * static_cast<double>(residual.size())) {
    GroupSymbols uniform_symbols;
    ClearSymbols(shape, uniform_symbols);
    const double uniform_bits =
        EncodeIndices(shape, residual, step, uniform_header, uniform_symbols);
    if (8.0 * uniform_header.size() + uniform_bits <= trellis_total) {
      out += uniform_header;
      symbols_out = std::move(uniform_symbols);
      return error;
    }
  }
  out += trellis_header;
  symbols_out = std::move(trellis_symbols);
  return coding.error;
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
    const bool per_symbol = !group.tables.empty();
    if (vector_kernel && width % kNumStates == 0) {
      vector_tables.clear();
      for (const auto& freqs : group.freqs)
        AddVectorEncodeTable(freqs, vector_tables);
      if (per_symbol) {
        vector_table_of.resize(width);
        const uint8_t* table = group.tables.data() + group.tables.size();
        for (size_t rows = group.symbols.size() / width; rows-- > 0;) {
          symbol -= width;
          table -= width;
          for (uint32_t d = 0; d < width; ++d)
            vector_table_of[d] = uint32_t{table[d]} * kAlphabetSize;
          EncodeRowAvx512(encoder, symbol, vector_table_of.data(),
                          vector_tables.data(), width);
        }
        position -= group.symbols.size();
        continue;
      }
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
    if (per_symbol) {
      for (size_t i = group.symbols.size(); i-- > 0;) {
        --symbol;
        --position;
        encoder.Put(position, tables[group.tables[i]][*symbol]);
      }
      continue;
    }
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

namespace {

// Reads a class mask and its tables (written by PutTables), appending the
// decode tables to `entries`; table_of_class[k] is where class k's starts,
// or -1.
absl::Status ReadTables(ByteReader& reader, std::vector<uint32_t>& entries,
                        std::array<int64_t, kNumClasses>& table_of_class) {
  uint8_t present_lo, present_hi;
  if (!reader.GetByte(present_lo) || !reader.GetByte(present_hi))
    return Corrupt("class mask");
  const uint32_t present = present_lo | uint32_t{present_hi} << 8;
  table_of_class.fill(-1);
  std::array<uint16_t, kAlphabetSize> freqs;
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
    const size_t start = entries.size();
    entries.resize(start + kProbScale);
    if (!BuildDecodeTable(freqs, &entries[start]))
      return Corrupt("frequencies do not sum up");
    table_of_class[k] = static_cast<int64_t>(start);
  }
  return absl::OkStatus();
}

}  // namespace

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
  if (mode != 0 && mode != 2)
    return Corrupt(absl::StrCat("unknown mode ", mode));
  all_zero_ = false;
  trellis_ = mode == 2;
  if (!reader.GetFloat(step_) || !std::isfinite(step_) || !(step_ > 0))
    return Corrupt("step");
  const size_t channels = shape.num_channels();
  // Uniform offsets are in steps, trellis offsets in eighths of one.
  const int64_t offset_limit = trellis_ ? 8 * (kMaxIndex / 4) : kMaxIndex;
  offsets_.resize(channels);
  for (size_t c = 0; c < channels; ++c) {
    uint64_t raw;
    if (!reader.GetVarint(raw)) return Corrupt("channel offsets");
    const int64_t offset = UnZigZag(raw);
    if (offset < -offset_limit || offset > offset_limit)
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
  entries_.clear();
  std::array<int64_t, kNumClasses> table_of_class[2];
  for (int q = 0; q < (trellis_ ? 2 : 1); ++q)
    if (absl::Status s = ReadTables(reader, entries_, table_of_class[q]);
        !s.ok())
      return s;
  if (!trellis_) {
    table_of_.resize(channels);
    for (size_t c = 0; c < channels; ++c) {
      if (table_of_class[0][class_of[c]] < 0)
        return Corrupt("channel class without table");
      table_of_[c] = static_cast<uint32_t>(table_of_class[0][class_of[c]]);
    }
  } else {
    // A channel's class may lack a table for one quantizer (the encoder
    // never coded an index with it there); a stream that asks for one
    // anyway decodes with a flat table and then fails the stream's checks.
    const uint32_t flat = static_cast<uint32_t>(entries_.size());
    entries_.resize(flat + kProbScale);
    std::array<uint16_t, kAlphabetSize> uniform;
    uniform.fill(kProbScale / kAlphabetSize);
    BuildDecodeTable(uniform, &entries_[flat]);
    bool any = false;
    for (int q = 0; q < 2; ++q) {
      quantizer_tables_[q].resize(channels);
      for (size_t c = 0; c < channels; ++c) {
        const int64_t start = table_of_class[q][class_of[c]];
        any |= start >= 0;
        quantizer_tables_[q][c] =
            start >= 0 ? static_cast<uint32_t>(start) : flat;
      }
    }
    if (!any) return Corrupt("no tables");
    fractions_.resize(channels);
    for (size_t c = 0; c < channels; ++c)
      fractions_[c] = static_cast<float>(offsets_[c]) / 8;
    row_table_of_.resize(shape.head_dim);
    states_.resize(shape.head_dim);
    minus_bias_.assign(shape.head_dim, -static_cast<float>(kSymbolBias));
    ones_.assign(shape.head_dim, 1.0f);
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
    // Trellis rows still hold indices here (ReconstructTrellisRow follows).
    if (trellis_) {
      if (delta < -kMaxIndex / 4 || delta > kMaxIndex / 4) return false;
      row[d] = static_cast<float>(delta);
      continue;
    }
    if (delta < -kMaxIndex || delta > kMaxIndex) return false;
    row[d] = static_cast<float>(delta + offsets_[channel_base + d]) *
             steps_[channel_base + d];
  }
  return true;
}

namespace {

// Turns a row of indices into values and moves each channel's state on;
// the next row's tables follow from the new states.
SEQKV_ROW_CLONES
void ReconstructTrellis(uint32_t width, const float* __restrict fractions,
                        const float* __restrict steps,
                        const uint32_t* __restrict q0_tables,
                        const uint32_t* __restrict q1_tables,
                        int32_t* __restrict states, float* __restrict row,
                        uint32_t* __restrict next_tables) {
  for (uint32_t d = 0; d < width; ++d) {
    const int32_t k = static_cast<int32_t>(row[d]);
    const int32_t state = states[d];
    row[d] = (static_cast<float>(TrellisLevel(TrellisQuantizer(state), k)) +
              fractions[d]) *
             steps[d];
    const int32_t next = TrellisNext(state, k);
    states[d] = next;
    const uint32_t q0 = q0_tables[d];
    const uint32_t q1 = q1_tables[d];
    next_tables[d] = TrellisQuantizer(next) ? q1 : q0;
  }
}

}  // namespace

void ResidualDecoder::ReconstructTrellisRow(float* row, size_t channel_base) {
  ReconstructTrellis(shape_.head_dim, &fractions_[channel_base],
                     &steps_[channel_base], &quantizer_tables_[0][channel_base],
                     &quantizer_tables_[1][channel_base], states_.data(), row,
                     row_table_of_.data());
}

bool ResidualDecoder::NextRow(RansDecoder& rans, float* row) {
  const uint32_t width = shape_.head_dim;
  if (all_zero_) {
    std::fill(row, row + width, 0.0f);
    return true;
  }
  const size_t channel_base = (next_row_ / shape_.num_tokens) * width;
  const uint32_t* table_of;
  const float* offsets;
  const float* steps;
  if (trellis_) {
    // Rows come out as indices, each decoded with the table of its
    // channel's quantizer; every head's channels start in state 0.
    // (ReconstructTrellisRow leaves the tables of the head's next row.)
    if (next_row_ % shape_.num_tokens == 0) {
      std::fill(states_.begin(), states_.end(), 0);
      std::copy_n(&quantizer_tables_[0][channel_base], width,
                  row_table_of_.begin());
    }
    table_of = row_table_of_.data();
    offsets = minus_bias_.data();
    steps = ones_.data();
  } else {
    table_of = &table_of_[channel_base];
    offsets = &float_offsets_[channel_base];
    steps = &steps_[channel_base];
  }
  ++next_row_;
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
  if (escaped && !DecodeEscapes(row, channel_base)) return false;
  if (trellis_) ReconstructTrellisRow(row, channel_base);
  return true;
}

absl::Status ResidualDecoder::Finish() const {
  if (escapes_.remaining() != 0) return Corrupt("unused escapes");
  return absl::OkStatus();
}

}  // namespace seqkv::predictive
