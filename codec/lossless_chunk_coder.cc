#include "codec/lossless_chunk_coder.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "codec/float_bits.h"
#include "codec/lossless_kernels.h"
#include "codec/predictive/rans.h"
#include "codec/predictive/rans_vector.h"

namespace seqkv::lossless {
namespace {

using predictive::kAlphabetSize;
using predictive::kProbScale;

// Tables per stream: round(p / delta) clamped to [-3, 3], times the step's
// fit (delta below or above 2/3 of the mean absolute error).
constexpr int kClassReach = 3;
constexpr int kChannelTables = (2 * kClassReach + 1) * 2;
// One more table: rows predicted from a token (first layer) but not
// exactly, coded as zigzag(ord(x) - ord(prediction)) up to kMaxResidual.
constexpr int kRowTable = kChannelTables;
// Format 3 has these tables per kind; format 4 adds kChannelTables more for
// rows predicted by reference runs, picked as the channel tables are.
constexpr int kFormat3Tables = kChannelTables + 1;
constexpr int kRefTableBase = kFormat3Tables;
constexpr int kTables = kFormat3Tables + kChannelTables;
// Bounds that keep every cell index and prediction exact in int64/double.
constexpr int64_t kMaxCell = int64_t{1} << 22;
constexpr int64_t kMaxPredicted = int64_t{1} << 20;
constexpr int64_t kMaxMeanUnits = int64_t{1} << 40;
constexpr double kSaneMagnitude = 1e30;

// A buffer that a thread keeps between chunks. Chunks are large, and memory
// freed after each one came back with page faults on the next: encoding ran
// at a third of its speed where the allocator returned it to the system.
template <typename T>
class Buffer {
 public:
  // Room for n values (contents unspecified).
  T* Get(size_t n) {
    if (n > capacity_) {
      data_ = std::make_unique_for_overwrite<T[]>(n);
      capacity_ = n;
    }
    return data_.get();
  }
  // Frees a buffer grown past `max_bytes` (a rare huge chunk).
  void Trim(size_t max_bytes) {
    if (capacity_ * sizeof(T) > max_bytes) {
      data_.reset();
      capacity_ = 0;
    }
  }

 private:
  std::unique_ptr<T[]> data_;
  size_t capacity_ = 0;
};

constexpr size_t kKeptBytes = size_t{16} << 20;  // per buffer and thread

struct EncodeScratch {
  Buffer<uint8_t> symbols, tables;
  Buffer<uint16_t> rans;
  Buffer<char> raw;
  Buffer<uint32_t> values;
  Buffer<float> xs, ws;
  void Trim() {
    symbols.Trim(kKeptBytes);
    tables.Trim(kKeptBytes);
    rans.Trim(kKeptBytes);
    raw.Trim(kKeptBytes);
    values.Trim(kKeptBytes);
    xs.Trim(kKeptBytes);
    ws.Trim(kKeptBytes);
  }
};

struct DecodeScratch {
  Buffer<uint32_t> values, entries;
  void Trim() {
    values.Trim(kKeptBytes);
    entries.Trim(kKeptBytes);
  }
};

inline double ToDouble(const FloatFormat& f, uint32_t bits) {
  if (f.width_bits == 32) return std::bit_cast<float>(bits);
  if (f.mant_bits == 7) return std::bit_cast<float>(bits << 16);
  return Fp16ToFloat(static_cast<uint16_t>(bits));
}

struct Format {
  explicit Format(const FloatFormat& f)
      : float_format(f),
        m(f.mant_bits),
        bias(f.bias),
        all_ones(f.exp_all_ones()),
        sign(f.sign_mask()),
        mant_mask((1u << f.mant_bits) - 1),
        bytes(f.width_bits / 8),
        e_min(1 - f.bias),
        e_max(static_cast<int>(f.exp_all_ones()) - 2 - f.bias) {}
  FloatFormat float_format;
  int m, bias;
  uint32_t all_ones, sign, mant_mask;
  int bytes;
  int e_min, e_max;
};

int32_t Zigzag(int64_t r) {
  return static_cast<int32_t>(r < 0 ? -2 * r - 1 : 2 * r);
}

int TableOf(int32_t predicted_cell, int shape) {
  return (std::clamp<int32_t>(predicted_cell, -kClassReach, kClassReach) +
          kClassReach) *
             2 +
         shape;
}

// round(v) clamped to +-kMaxPredicted (as PredictCells rounds).
int32_t PredictedCell(double v) {
  const double r = std::floor(v + 0.5);
  if (!(r > -kMaxPredicted)) return -static_cast<int32_t>(kMaxPredicted);
  if (!(r < kMaxPredicted)) return static_cast<int32_t>(kMaxPredicted);
  return static_cast<int32_t>(r);
}

void PutVarint(uint64_t value, std::string& out) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool Varint(uint64_t& value) {
    value = 0;
    for (int shift = 0; shift < 64 && !in_.empty(); shift += 7) {
      const uint8_t byte = static_cast<uint8_t>(in_.front());
      in_.remove_prefix(1);
      value |= uint64_t{byte & 0x7Fu} << shift;
      if (!(byte & 0x80)) return true;
    }
    return false;
  }
  bool Byte(uint8_t& value) {
    if (in_.empty()) return false;
    value = static_cast<uint8_t>(in_.front());
    in_.remove_prefix(1);
    return true;
  }
  bool Bytes(size_t n, std::string_view& out) {
    if (in_.size() < n) return false;
    out = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  std::string_view rest() const { return in_; }

 private:
  std::string_view in_;
};

// Raw bits, least significant first.
class BitWriter {
 public:
  // Writes at most `max_bits` bits to `buffer` (max_bits / 8 + 16 bytes).
  BitWriter(char* buffer, size_t max_bits) : buffer_(buffer), next_(buffer) {
    (void)max_bits;
  }
  static size_t BufferBytes(size_t max_bits) { return max_bits / 8 + 16; }
  // bits <= 32; value < 2^bits.
  void Put(uint32_t value, int bits) {
    acc_ |= uint64_t{value} << fill_;
    fill_ += bits;
    if (fill_ >= 32) {
      const uint32_t low = static_cast<uint32_t>(acc_);
      std::memcpy(next_, &low, 4);  // little-endian host
      next_ += 4;
      acc_ >>= 32;
      fill_ -= 32;
    }
  }
  // Flushes the last bits; the stream is then bytes().
  void Finish() {
    for (; fill_ > 0; fill_ -= 8) {
      *next_++ = static_cast<char>(acc_ & 0xFF);
      acc_ >>= 8;
    }
    fill_ = 0;
  }
  std::string_view bytes() const {
    return {buffer_, static_cast<size_t>(next_ - buffer_)};
  }

 private:
  char* buffer_;
  char* next_;
  uint64_t acc_ = 0;
  int fill_ = 0;
};

// Reads BitWriter's bits by position, so that vector kernels can take
// bits from the same stream (lossless::RawBits).
class BitReader {
 public:
  explicit BitReader(std::string_view in)
      : bits_{reinterpret_cast<const uint8_t*>(in.data()), in.size(), 0} {}
  // bits <= 32. Bits past the end read as zero and are noted.
  uint32_t Get(int bits) {
    const size_t byte = bits_.position >> 3;
    const int shift = static_cast<int>(bits_.position & 7);
    uint64_t word = 0;
    if (byte + 8 <= bits_.size) {
      std::memcpy(&word, bits_.data + byte, 8);
    } else {
      for (size_t i = byte; i < bits_.size && i < byte + 8; ++i)
        word |= uint64_t{bits_.data[i]} << (8 * (i - byte));
    }
    bits_.position += bits;
    return static_cast<uint32_t>((word >> shift) & ((uint64_t{1} << bits) - 1));
  }
  RawBits& bits() { return bits_; }
  // True when every bit was read and no bit past the end was needed (the
  // last byte's unused high bits must be zero).
  bool FinishedCleanly() const {
    if ((bits_.position + 7) / 8 != bits_.size) return false;
    if (bits_.position % 8 == 0) return true;
    return (bits_.data[bits_.size - 1] >> (bits_.position % 8)) == 0;
  }

 private:
  RawBits bits_;
};

// Positions' RoPE rotations, shared by the streams of a chunk.
struct Phases {
  size_t pairs = 0;
  uint32_t dim = 0;
  // The absolute rotation of each channel's pair, [token][cos, sin][dim]
  // (0 for channels RoPE leaves alone), for PredictCells.
  std::vector<double> channel;
  // Rotation at each token's absolute position: (cos, sin), [token][pair].
  std::vector<double> absolute;
  // Rotation relative to the chunk's first token.
  std::vector<double> relative;
};

Phases BuildPhases(const RopePairs& rope, uint32_t tokens,
                   uint64_t first_position) {
  Phases phases;
  const size_t pairs = rope.first.size();
  phases.pairs = pairs;
  phases.relative.assign(size_t{tokens} * pairs * 2, 0);
  phases.absolute.assign(size_t{tokens} * pairs * 2, 0);
  if (tokens == 0) return phases;
  for (size_t i = 0; i < pairs; ++i) phases.relative[2 * i] = 1;
  for (uint32_t t = 1; t < tokens; ++t) {
    const double* prev = &phases.relative[(size_t{t} - 1) * pairs * 2];
    double* cur = &phases.relative[size_t{t} * pairs * 2];
    for (size_t i = 0; i < pairs; ++i) {
      cur[2 * i] = prev[2 * i] * rope.cos[i] - prev[2 * i + 1] * rope.sin[i];
      cur[2 * i + 1] =
          prev[2 * i + 1] * rope.cos[i] + prev[2 * i] * rope.sin[i];
    }
  }
  for (size_t i = 0; i < pairs; ++i) {
    // Rotation by first_position steps, by repeated squaring.
    double result_c = 1, result_s = 0;
    double power_c = rope.cos[i], power_s = rope.sin[i];
    for (uint64_t n = first_position; n != 0; n >>= 1) {
      if (n & 1) {
        const double c = result_c * power_c - result_s * power_s;
        result_s = result_s * power_c + result_c * power_s;
        result_c = c;
      }
      const double c = power_c * power_c - power_s * power_s;
      power_s = 2 * power_c * power_s;
      power_c = c;
    }
    for (uint32_t t = 0; t < tokens; ++t) {
      const double* rel = &phases.relative[(size_t{t} * pairs + i) * 2];
      double* abs = &phases.absolute[(size_t{t} * pairs + i) * 2];
      abs[0] = result_c * rel[0] - result_s * rel[1];
      abs[1] = result_s * rel[0] + result_c * rel[1];
    }
  }
  return phases;
}

// How each channel of a head relates to RoPE: -1 unpaired, else the pair
// index; `second` marks the pair's second channel.
struct ChannelRoles {
  std::vector<int32_t> pair;
  std::vector<uint8_t> second;
  std::vector<uint8_t> paired;  // pair >= 0
};

ChannelRoles RolesFor(const StreamSpec& spec) {
  ChannelRoles roles;
  roles.pair.assign(spec.dim, -1);
  roles.second.assign(spec.dim, 0);
  roles.paired.assign(spec.dim, 0);
  if (spec.rope == nullptr) return roles;
  roles.paired.clear();
  for (size_t i = 0; i < spec.rope->first.size(); ++i) {
    if (spec.rope->first[i] >= spec.dim || spec.rope->second[i] >= spec.dim)
      continue;
    roles.pair[spec.rope->first[i]] = static_cast<int32_t>(i);
    roles.pair[spec.rope->second[i]] = static_cast<int32_t>(i);
    roles.second[spec.rope->second[i]] = 1;
  }
  for (int32_t pair : roles.pair) roles.paired.push_back(pair >= 0);
  return roles;
}

// The per-channel model of one head of a stream, as sent.
struct HeadModel {
  std::vector<int32_t> e;       // step exponent per channel
  std::vector<uint8_t> shape;   // table half per channel
  std::vector<int32_t> cell;    // round(p / delta) of unpaired channels
  std::vector<int64_t> mean_x;  // pre-RoPE mean of pair i, first channel,
  std::vector<int64_t> mean_y;  // ... second, in units of 2^(min e - 2)
  // Derived by Prepare: p / delta of a paired channel at a token is
  // (a cos + b sin) * factor with the token's rotation of the pair.
  std::vector<double> a, b, factor;
};

void Prepare(const StreamSpec& spec, const ChannelRoles& roles,
             HeadModel& model) {
  model.a.assign(spec.dim, 0);
  model.b.assign(spec.dim, 0);
  model.factor.assign(spec.dim, 0);
  for (uint32_t d = 0; d < spec.dim; ++d) {
    const int32_t i = roles.pair[d];
    if (i < 0) continue;
    const int unit =
        std::min(model.e[spec.rope->first[i]], model.e[spec.rope->second[i]]) -
        2;
    const double mx = static_cast<double>(model.mean_x[i]);
    const double my = static_cast<double>(model.mean_y[i]);
    // First channel: mx cos - my sin; second: my cos + mx sin.
    model.a[d] = roles.second[d] ? my : mx;
    model.b[d] = roles.second[d] ? mx : -my;
    model.factor[d] = std::ldexp(1.0, unit - model.e[d]);  // exact
  }
}

// The predicted cell of every channel at token t (rows of RoPE'd keys turn).
void PredictRow(const StreamSpec& spec, const ChannelRoles& roles,
                const HeadModel& model, const Phases* phases, uint32_t t,
                int32_t* cells) {
  if (phases == nullptr || spec.rope == nullptr) {
    std::copy(model.cell.begin(), model.cell.end(), cells);
    return;
  }
  const double* phase = &phases->channel[size_t{t} * 2 * spec.dim];
  PredictCells(predictive::BestVectorKernel(), model.a.data(), model.b.data(),
               model.factor.data(), phase, phase + spec.dim, model.cell.data(),
               roles.paired.data(), spec.dim, cells);
}

// Rows of the first layer known in advance (see lossless_codec_stream.h).
class RowPredictor {
 public:
  RowPredictor(const StreamSpec& spec, const Format& format,
               const Phases* phases)
      : spec_(spec), format_(format), phases_(phases), values_(spec.dim) {}

  bool enabled() const { return !spec_.token_ids.empty(); }
  void StartHead() { last_row_.clear(); }

  // Predicts row t of `head` into `bits` and returns true, or returns false
  // when nothing predicts it. `head_values` holds the head's rows before t.
  // With `bits` null, only says whether the row is predicted.
  bool Predict(uint32_t head, uint32_t t, const uint32_t* head_values,
               uint32_t* bits) {
    const int32_t token = spec_.token_ids[t];
    auto [it, inserted] = last_row_.try_emplace(token, t);
    const uint32_t from = it->second;
    it->second = t;
    if (spec_.token_source != nullptr &&
        spec_.token_source->Row(token, head, values_)) {
      if (bits == nullptr) return true;
      FromTable(t);
    } else if (!inserted) {
      if (bits == nullptr) return true;
      FromEarlierRow(head_values + size_t{from} * spec_.dim, from, t);
    } else {
      return false;
    }
    for (uint32_t d = 0; d < spec_.dim; ++d) bits[d] = Round(values_[d]);
    return true;
  }

 private:
  uint32_t Round(double v) const {
    const float f = static_cast<float>(v);
    if (format_.bytes == 4) return std::bit_cast<uint32_t>(f);
    if (format_.m == 7) return FloatToBf16(f);
    return FloatToFp16(f);
  }
  double Value(uint32_t bits) const {
    return format_.float_format.IsFinite(bits)
               ? ToDouble(format_.float_format, bits)
               : 0;
  }

  void FromEarlierRow(const uint32_t* source, uint32_t from, uint32_t to) {
    for (uint32_t d = 0; d < spec_.dim; ++d) values_[d] = Value(source[d]);
    if (spec_.rope == nullptr) return;
    const RopePairs& rope = *spec_.rope;
    const size_t pairs = phases_->pairs;
    const double* p_to = &phases_->relative[size_t{to} * pairs * 2];
    const double* p_from = &phases_->relative[size_t{from} * pairs * 2];
    for (size_t i = 0; i < pairs; ++i) {
      if (rope.first[i] >= spec_.dim || rope.second[i] >= spec_.dim) continue;
      const double c =
          p_to[2 * i] * p_from[2 * i] + p_to[2 * i + 1] * p_from[2 * i + 1];
      const double s =
          p_to[2 * i + 1] * p_from[2 * i] - p_to[2 * i] * p_from[2 * i + 1];
      const double x = values_[rope.first[i]], y = values_[rope.second[i]];
      values_[rope.first[i]] = x * c - y * s;
      values_[rope.second[i]] = y * c + x * s;
    }
  }

  // Models compute RoPE in the cache's dtype: cos and sin rounded to it,
  // each product and the sum rounded again. Doing the same makes most
  // predicted keys exact.
  void FromTable(uint32_t t) {
    if (spec_.rope == nullptr) return;
    const RopePairs& rope = *spec_.rope;
    const size_t pairs = phases_->pairs;
    const double* phase = &phases_->absolute[size_t{t} * pairs * 2];
    auto round = [this](double v) { return Value(Round(v)); };
    for (size_t i = 0; i < pairs; ++i) {
      if (rope.first[i] >= spec_.dim || rope.second[i] >= spec_.dim) continue;
      const double c = round(phase[2 * i]), s = round(phase[2 * i + 1]);
      const double x = values_[rope.first[i]], y = values_[rope.second[i]];
      values_[rope.first[i]] = round(round(x * c) - round(y * s));
      values_[rope.second[i]] = round(round(y * c) + round(x * s));
    }
  }

  const StreamSpec& spec_;
  const Format& format_;
  const Phases* phases_;
  std::vector<double> values_;
  absl::flat_hash_map<int32_t, uint32_t> last_row_;
};

const uint32_t* LoadValues(const Format& format,
                           std::span<const std::byte> data, uint32_t* values) {
  const size_t count = data.size() / format.bytes;
  if (format.bytes == 4) {
    std::memcpy(values, data.data(), count * 4);
  } else {
    for (size_t i = 0; i < count; ++i) {
      uint16_t v;
      std::memcpy(&v, data.data() + 2 * i, 2);
      values[i] = v;
    }
  }
  return values;
}

// A float prediction rounded to the format (round to nearest even).
uint32_t RoundTo(const Format& format, float v) {
  if (format.bytes == 4) return std::bit_cast<uint32_t>(v);
  if (format.m == 7) return FloatToBf16(v);
  return FloatToFp16(v);
}

// The model of a head's rows that reference runs predict and that are not
// exact: a step exponent and table half per channel (the prediction itself
// is per row). Sent as dim bytes of e - e_min, then the halves as bits.
struct RefModel {
  std::vector<int32_t> e;
  std::vector<uint8_t> shape;
};

// Cells of a row predicted by reference values `p` (as PredictedCell).
void ReferenceCells(const RefModel& model, const float* p, uint32_t dim,
                    int32_t* cells) {
  for (uint32_t d = 0; d < dim; ++d)
    cells[d] = PredictedCell(std::ldexp(double{p[d]}, -model.e[d]));
}

// ---------------------------------------------------------------- encoder

// Symbols of a chunk, and the tables of each tensor kind (K, V, ...).
struct ChunkSymbols {
  ChunkSymbols(size_t capacity, EncodeScratch& scratch)
      : symbols(scratch.symbols.Get(capacity)),
        tables(scratch.tables.Get(capacity)) {}
  void Add(uint8_t symbol, uint8_t table) {
    symbols[size] = symbol;
    tables[size] = table;
    ++size;
  }
  uint8_t* symbols;
  uint8_t* tables;  // kind * kTables + table, per symbol
  size_t size = 0;
  // Fills `counts`, in four interleaved banks: runs of one symbol would
  // otherwise wait on their own increments.
  void Count(uint32_t kinds) {
    const size_t tables_total = size_t{kinds} * kTables;
    std::vector<uint32_t> banks(4 * tables_total * kAlphabetSize, 0);
    const size_t bank = tables_total * kAlphabetSize;
    size_t i = 0;
    for (; i + 4 <= size; i += 4)
      for (size_t j = 0; j < 4; ++j)
        ++banks[j * bank + size_t{tables[i + j]} * kAlphabetSize +
                symbols[i + j]];
    for (; i < size; ++i)
      ++banks[size_t{tables[i]} * kAlphabetSize + symbols[i]];
    counts.assign(kinds, {});
    for (uint32_t kind = 0; kind < kinds; ++kind)
      for (int k = 0; k < kTables; ++k)
        for (int s = 0; s < kAlphabetSize; ++s) {
          const size_t at = (size_t{kind} * kTables + k) * kAlphabetSize + s;
          counts[kind][k][s] = banks[at] + banks[bank + at] +
                               banks[2 * bank + at] + banks[3 * bank + at];
        }
  }
  std::vector<std::array<std::array<uint32_t, kAlphabetSize>, kTables>> counts;
};

// The step exponent for mean absolute error `scale` around a prediction of
// magnitude `magnitude`: delta in (scale/2, scale], but never below the
// prediction's spacing (a cell holds at least one value there).
void ChooseStep(const Format& format, double scale, double magnitude,
                int32_t& e, uint8_t& shape) {
  int exponent = format.e_min;
  shape = 0;
  if (scale > 0) {
    int binary;
    const double fraction = std::frexp(scale, &binary);
    exponent = binary - 1;
    shape = fraction >= 0.75;
  }
  if (magnitude > 0) {
    int binary;
    std::frexp(magnitude, &binary);
    exponent = std::max(exponent, binary - 1 - format.m);
  }
  e = std::clamp(exponent, format.e_min, format.e_max);
}

class Encoder {
 public:
  Encoder(const Format& format, const Phases* phases, std::string& side,
          BitWriter& raw, std::string& literals, EncodeScratch& scratch)
      : format_(format),
        phases_(phases),
        side_(side),
        raw_(raw),
        literals_(literals),
        kernel_(predictive::BestVectorKernel()),
        value_format_{format.m, format.all_ones, format.sign},
        scratch_(scratch) {}

  void Stream(const StreamSpec& spec, uint32_t kind, const uint8_t* referenced,
              const float* reference, std::span<const std::byte> data,
              ChunkSymbols& out) {
    const uint32_t* values =
        LoadValues(format_, data, scratch_.values.Get(data.size()));
    const uint32_t dim = spec.dim;
    const ChannelRoles roles = RolesFor(spec);
    const uint8_t table_base = static_cast<uint8_t>(kind * kTables);
    // Rows of the first layer predicted from their token: 0 not predicted,
    // 1 exact, 2 predicted but coded against the prediction.
    std::vector<uint8_t> row_state(size_t{spec.heads} * spec.tokens, 0);
    std::vector<uint32_t> predictions;
    RowPredictor predictor(spec, format_, phases_);
    if (predictor.enabled()) {
      predictions.resize(spec.num_elements());
      std::vector<char> flag_bytes(BitWriter::BufferBytes(row_state.size()));
      BitWriter flags(flag_bytes.data(), row_state.size());
      for (uint32_t h = 0; h < spec.heads; ++h) {
        predictor.StartHead();
        const size_t head = size_t{h} * spec.tokens;
        const uint32_t* head_values = values + head * dim;
        for (uint32_t t = 0; t < spec.tokens; ++t) {
          uint32_t* predicted = predictions.data() + (head + t) * dim;
          if (!predictor.Predict(h, t, head_values, predicted)) continue;
          const bool exact = std::equal(predicted, predicted + dim,
                                        head_values + size_t{t} * dim);
          flags.Put(exact, 1);
          row_state[head + t] = exact ? 1 : 2;
        }
      }
      flags.Finish();
      side_ += flags.bytes();
    }
    // Rows that reference runs predict (and the token rows above do not):
    // 3 exact (rounded to the format), 4 coded against the prediction. One
    // bit per such row says which.
    bool any_coded_reference = false;
    if (referenced != nullptr) {
      std::vector<char> flag_bytes(BitWriter::BufferBytes(row_state.size()));
      BitWriter flags(flag_bytes.data(), row_state.size());
      for (uint32_t h = 0; h < spec.heads; ++h) {
        const size_t head = size_t{h} * spec.tokens;
        for (uint32_t t = 0; t < spec.tokens; ++t) {
          if (row_state[head + t] != 0 || !referenced[t]) continue;
          const float* p = reference + (head + t) * dim;
          const uint32_t* row = values + (head + t) * dim;
          bool exact = true;
          for (uint32_t d = 0; d < dim; ++d)
            exact &= RoundTo(format_, p[d]) == row[d];
          flags.Put(exact, 1);
          row_state[head + t] = exact ? 3 : 4;
          any_coded_reference |= !exact;
        }
      }
      flags.Finish();
      side_ += flags.bytes();
    }
    RefModel ref_model;
    std::vector<int32_t> ref_step_biased(dim);
    std::vector<int32_t> cells(dim), step_biased(dim);
    std::vector<uint8_t> raw_lengths(dim);
    std::vector<uint32_t> raw_values(dim);
    HeadModel model;
    uint8_t* symbol_out = out.symbols + out.size;
    uint8_t* table_out = out.tables + out.size;
    for (uint32_t h = 0; h < spec.heads; ++h) {
      const size_t head = size_t{h} * spec.tokens;
      const uint32_t* head_values = values + head * dim;
      FitHead(spec, roles, head_values, row_state.data() + head, model);
      Prepare(spec, roles, model);
      WriteHead(spec, roles, model);
      if (any_coded_reference) {
        FitReferenceHead(spec, head_values, reference + head * dim,
                         row_state.data() + head, ref_model);
        for (uint32_t d = 0; d < dim; ++d) {
          side_.push_back(static_cast<char>(ref_model.e[d] - format_.e_min));
          ref_step_biased[d] = ref_model.e[d] + format_.bias;
        }
        for (uint32_t d = 0; d < dim; d += 8) {
          uint8_t bits = 0;
          for (uint32_t i = d; i < std::min(dim, d + 8); ++i)
            bits |= ref_model.shape[i] << (i - d);
          side_.push_back(static_cast<char>(bits));
        }
      }
      for (uint32_t d = 0; d < dim; ++d)
        step_biased[d] = model.e[d] + format_.bias;
      for (uint32_t t = 0; t < spec.tokens; ++t) {
        const uint32_t* row = head_values + size_t{t} * dim;
        if (row_state[head + t] == 1 || row_state[head + t] == 3) continue;
        if (row_state[head + t] == 4) {
          ReferenceCells(ref_model, reference + (head + t) * dim, dim,
                         cells.data());
          CodeRow(dim, row, ref_step_biased.data(), ref_model.e.data(),
                  cells.data(), symbol_out, raw_lengths.data(),
                  raw_values.data());
          for (uint32_t d = 0; d < dim; ++d)
            table_out[d] =
                static_cast<uint8_t>(table_base + kRefTableBase +
                                     TableOf(cells[d], ref_model.shape[d]));
          symbol_out += dim;
          table_out += dim;
          continue;
        }
        if (row_state[head + t] == 2) {
          const uint32_t* predicted = predictions.data() + (head + t) * dim;
          for (uint32_t d = 0; d < dim; ++d) {
            const uint8_t symbol = RowValue(row[d], predicted[d]);
            *symbol_out++ = symbol;
            *table_out++ = table_base + kRowTable;
          }
          continue;
        }
        PredictRow(spec, roles, model, phases_, t, cells.data());
        CodeRow(dim, row, step_biased.data(), model.e.data(), cells.data(),
                symbol_out, raw_lengths.data(), raw_values.data());
        for (uint32_t d = 0; d < dim; ++d)
          table_out[d] = static_cast<uint8_t>(
              table_base + TableOf(cells[d], model.shape[d]));
        symbol_out += dim;
        table_out += dim;
      }
    }
    out.size = static_cast<size_t>(symbol_out - out.symbols);
  }

  // Codes a row's values against predicted cells: symbols to `symbols`,
  // raw bits and literals to their streams.
  void CodeRow(uint32_t dim, const uint32_t* row, const int32_t* step_biased,
               const int32_t* e, const int32_t* cells, uint8_t* symbols,
               uint8_t* raw_lengths, uint32_t* raw_values) {
    for (uint32_t d = 0; d < dim;) {
      const uint32_t done =
          CodeValues(kernel_, value_format_, row + d, step_biased + d,
                     cells + d, dim - d, symbols + d, raw_lengths, raw_values);
      for (uint32_t i = 0; i < done; ++i)
        raw_.Put(raw_values[i], raw_lengths[i]);
      d += done;
      // A group the kernel leaves (or all, without one): one by one.
      for (const uint32_t end = std::min(dim, d + 16); d < end; ++d)
        symbols[d] = Value(row[d], e[d], cells[d]);
    }
  }

  // Appends the frequency tables of every kind to `out` and returns them.
  // `tables` per kind are sent (kFormat3Tables or kTables), their mask in
  // 2 or 4 bytes.
  static std::vector<std::array<std::array<uint16_t, kAlphabetSize>, kTables>>
  WriteTables(const ChunkSymbols& symbols, int tables, std::string& out) {
    std::vector<std::array<std::array<uint16_t, kAlphabetSize>, kTables>> freqs(
        symbols.counts.size());
    for (size_t kind = 0; kind < symbols.counts.size(); ++kind) {
      uint32_t present = 0;
      for (int k = 0; k < tables; ++k) {
        bool any = false;
        for (uint32_t c : symbols.counts[kind][k]) any |= c != 0;
        if (!any) continue;
        present |= 1u << k;
        predictive::NormalizeFrequencies(symbols.counts[kind][k],
                                         freqs[kind][k]);
      }
      for (int byte = 0; byte < (tables > 16 ? 4 : 2); ++byte)
        out.push_back(static_cast<char>(present >> (8 * byte) & 0xFF));
      for (int k = 0; k < tables; ++k) {
        if (!(present >> k & 1)) continue;
        int lo = 0, hi = kAlphabetSize - 1;
        while (freqs[kind][k][lo] == 0) ++lo;
        while (freqs[kind][k][hi] == 0) --hi;
        out.push_back(static_cast<char>(lo));
        out.push_back(static_cast<char>(hi));
        for (int s = lo; s <= hi; ++s) PutVarint(freqs[kind][k][s], out);
      }
    }
    return freqs;
  }

 private:
  double Real(uint32_t bits, bool& usable) const {
    usable = format_.float_format.IsFinite(bits);
    if (!usable) return 0;
    const double x = ToDouble(format_.float_format, bits);
    usable = std::fabs(x) < kSaneMagnitude;
    return usable ? x : 0;
  }

  // Fits the step of each channel to the rows coded against reference
  // predictions (row_state 4): near their mean absolute error, but not
  // below the spacing of the predictions' typical magnitude.
  void FitReferenceHead(const StreamSpec& spec, const uint32_t* values,
                        const float* reference, const uint8_t* row_state,
                        RefModel& model) const {
    const uint32_t dim = spec.dim;
    std::vector<double> error(dim, 0), magnitude(dim, 0), count(dim, 0);
    for (uint32_t t = 0; t < spec.tokens; ++t) {
      if (row_state[t] != 4) continue;
      const uint32_t* row = values + size_t{t} * dim;
      const float* p = reference + size_t{t} * dim;
      for (uint32_t d = 0; d < dim; ++d) {
        bool usable;
        const double x = Real(row[d], usable);
        if (!usable) continue;
        error[d] += std::fabs(x - p[d]);
        magnitude[d] += std::fabs(p[d]);
        count[d] += 1;
      }
    }
    model.e.assign(dim, format_.e_min);
    model.shape.assign(dim, 0);
    for (uint32_t d = 0; d < dim; ++d)
      if (count[d] > 0)
        ChooseStep(format_, error[d] / count[d], magnitude[d] / count[d],
                   model.e[d], model.shape[d]);
  }

  // Fits the channel model to the rows coded with it (row_state 0).
  void FitHead(const StreamSpec& spec, const ChannelRoles& roles,
               const uint32_t* values, const uint8_t* row_state,
               HeadModel& model) {
    const uint32_t dim = spec.dim;
    const size_t pairs = spec.rope == nullptr ? 0 : spec.rope->first.size();
    const size_t n = size_t{spec.tokens} * dim;
    // The values as floats; weight 0 for the unusable (NaN, Inf, huge, and
    // rows not coded with this model). The fit is the encoder's own: its
    // result is sent, so it needs no exactness, only speed.
    float* const xs = scratch_.xs.Get(n);
    float* const ws = scratch_.ws.Get(n);
    const FloatFormat& f = format_.float_format;
    for (uint32_t t = 0; t < spec.tokens; ++t) {
      const uint32_t* row = values + size_t{t} * dim;
      float* x = xs + size_t{t} * dim;
      if (f.width_bits == 32) {
        for (uint32_t d = 0; d < dim; ++d) x[d] = std::bit_cast<float>(row[d]);
      } else if (f.mant_bits == 7) {
        for (uint32_t d = 0; d < dim; ++d)
          x[d] = std::bit_cast<float>(row[d] << 16);
      } else {
        for (uint32_t d = 0; d < dim; ++d)
          x[d] = Fp16ToFloat(static_cast<uint16_t>(row[d]));
      }
      const float coded = row_state[t] == 0 ? 1.0f : 0.0f;
      float* w = ws + size_t{t} * dim;
      for (uint32_t d = 0; d < dim; ++d) {
        const bool ok = std::fabs(x[d]) < 1e30f;  // false for NaN and Inf
        w[d] = ok ? coded : 0.0f;
        x[d] = ok ? x[d] * coded : 0.0f;
      }
    }
    std::vector<float> sum(dim, 0), count(dim, 0);
    std::vector<double> pair_x(pairs, 0), pair_y(pairs, 0), pair_n(pairs, 0);
    for (uint32_t t = 0; t < spec.tokens; ++t) {
      const float* x = xs + size_t{t} * dim;
      const float* w = ws + size_t{t} * dim;
      for (uint32_t d = 0; d < dim; ++d) {
        sum[d] += x[d];
        count[d] += w[d];
      }
      if (pairs == 0) continue;
      const double* phase = &phases_->absolute[size_t{t} * pairs * 2];
      for (size_t i = 0; i < pairs; ++i) {
        const uint32_t a = spec.rope->first[i], b = spec.rope->second[i];
        if (a >= dim || b >= dim) continue;
        const double both = w[a] * w[b];
        pair_x[i] += both * (x[a] * phase[2 * i] + x[b] * phase[2 * i + 1]);
        pair_y[i] += both * (x[b] * phase[2 * i] - x[a] * phase[2 * i + 1]);
        pair_n[i] += both;
      }
    }
    std::vector<double> mean(dim, 0);
    for (uint32_t d = 0; d < dim; ++d)
      if (count[d] > 0) mean[d] = double{sum[d]} / count[d];
    for (size_t i = 0; i < pairs; ++i)
      if (pair_n[i] > 0) {
        pair_x[i] /= pair_n[i];
        pair_y[i] /= pair_n[i];
      }
    // Mean absolute error of the prediction (unquantized) per channel.
    std::vector<float> error(dim, 0), prediction(dim);
    for (uint32_t d = 0; d < dim; ++d)
      prediction[d] = static_cast<float>(mean[d]);
    for (uint32_t t = 0; t < spec.tokens; ++t) {
      const float* x = xs + size_t{t} * dim;
      const float* w = ws + size_t{t} * dim;
      if (pairs != 0) {
        const double* phase = &phases_->absolute[size_t{t} * pairs * 2];
        for (size_t i = 0; i < pairs; ++i) {
          const uint32_t a = spec.rope->first[i], b = spec.rope->second[i];
          if (a >= dim || b >= dim) continue;
          prediction[a] = static_cast<float>(pair_x[i] * phase[2 * i] -
                                             pair_y[i] * phase[2 * i + 1]);
          prediction[b] = static_cast<float>(pair_y[i] * phase[2 * i] +
                                             pair_x[i] * phase[2 * i + 1]);
        }
      }
      for (uint32_t d = 0; d < dim; ++d)
        error[d] += w[d] * std::fabs(x[d] - prediction[d]);
    }
    std::vector<double> error_n(count.begin(), count.end());
    model.e.assign(dim, format_.e_min);
    model.shape.assign(dim, 0);
    model.cell.assign(dim, 0);
    model.mean_x.assign(pairs, 0);
    model.mean_y.assign(pairs, 0);
    for (uint32_t d = 0; d < dim; ++d) {
      const double scale = error_n[d] > 0 ? error[d] / error_n[d] : 0;
      double magnitude = std::fabs(mean[d]);
      if (const int32_t i = roles.pair[d]; i >= 0)
        magnitude = std::hypot(pair_x[i], pair_y[i]);
      ChooseStep(format_, scale, magnitude, model.e[d], model.shape[d]);
      if (roles.pair[d] < 0)
        model.cell[d] = PredictedCell(std::ldexp(mean[d], -model.e[d]));
    }
    auto units = [](double v, int unit) {
      const double u = std::round(std::ldexp(v, -unit));
      return static_cast<int64_t>(
          std::clamp<double>(u, -static_cast<double>(kMaxMeanUnits),
                             static_cast<double>(kMaxMeanUnits)));
    };
    for (size_t i = 0; i < pairs; ++i) {
      const uint32_t a = spec.rope->first[i], b = spec.rope->second[i];
      if (a >= dim || b >= dim) continue;
      const int unit = std::min(model.e[a], model.e[b]) - 2;
      model.mean_x[i] = units(pair_x[i], unit);
      model.mean_y[i] = units(pair_y[i], unit);
    }
  }

  void WriteHead(const StreamSpec& spec, const ChannelRoles& roles,
                 const HeadModel& model) {
    for (uint32_t d = 0; d < spec.dim; ++d)
      side_.push_back(static_cast<char>(model.e[d] - format_.e_min));
    for (uint32_t d = 0; d < spec.dim; ++d) {
      const int32_t i = roles.pair[d];
      if (i < 0) {
        PutVarint(uint64_t(Zigzag(model.cell[d])) << 1 | model.shape[d], side_);
      } else if (!roles.second[d]) {
        const uint32_t b = spec.rope->second[i];
        PutVarint(uint64_t(Zigzag64(model.mean_x[i])) << 1 | model.shape[d],
                  side_);
        PutVarint(uint64_t(Zigzag64(model.mean_y[i])) << 1 | model.shape[b],
                  side_);
      }
    }
  }

  static uint64_t Zigzag64(int64_t v) {
    return v < 0 ? 2 * static_cast<uint64_t>(-v) - 1
                 : 2 * static_cast<uint64_t>(v);
  }

  // Codes a value of a predicted row against its prediction.
  uint8_t RowValue(uint32_t bits, uint32_t predicted) {
    const FloatFormat& f = format_.float_format;
    const int64_t diff = int64_t{f.ToOrd(bits)} - f.ToOrd(predicted);
    if (diff >= -kMaxResidual && diff <= kMaxResidual)
      return static_cast<uint8_t>(Zigzag(diff));
    return Literal(bits);
  }

  uint8_t Literal(uint32_t bits) {
    const char* b = reinterpret_cast<const char*>(&bits);
    literals_.append(b, format_.bytes);  // little-endian host
    return kEscape;
  }

  // Codes one value: returns its symbol and writes its raw bits or literal.
  uint8_t Value(uint32_t bits, int e, int32_t predicted) {
    const uint32_t magnitude = bits & ~format_.sign;
    const uint32_t exponent = magnitude >> format_.m;
    const bool negative = (bits & format_.sign) != 0;
    if (exponent != format_.all_ones) {
      const int step_biased = e + format_.bias;  // >= 1
      int64_t cell = 0;
      if (static_cast<int>(exponent) >= step_biased) {
        const uint64_t significand =
            (uint64_t{1} << format_.m) | (magnitude & format_.mant_mask);
        const int shift = static_cast<int>(exponent) - step_biased - format_.m;
        cell = shift >= 0
                   ? (shift > 40 ? kMaxCell
                                 : static_cast<int64_t>(significand << shift))
                   : static_cast<int64_t>(significand >> -shift);
      }
      if (cell == 0) {
        const uint32_t below = static_cast<uint32_t>(step_biased) - exponent;
        if (below <= kMaxBelow) {
          raw_.Put(magnitude & format_.mant_mask, format_.m);
          return static_cast<uint8_t>(kNearBase + negative * kMaxBelow + below -
                                      1);
        }
      } else if (cell < kMaxCell) {
        const int64_t n = negative ? -cell - 1 : cell;
        const int64_t residual = n - predicted;
        if (residual >= -kMaxResidual && residual <= kMaxResidual) {
          const int top = std::bit_width(static_cast<uint64_t>(cell)) - 1;
          if (top <= format_.m) {
            const int k = format_.m - top;
            raw_.Put(magnitude & ((1u << k) - 1), k);
          }
          return static_cast<uint8_t>(Zigzag(residual));
        }
      }
    }
    return Literal(bits);
  }

  const Format& format_;
  const Phases* phases_;
  std::string& side_;
  BitWriter& raw_;
  std::string& literals_;
  const predictive::VectorKernel kernel_;
  const ValueFormat value_format_;
  EncodeScratch& scratch_;
};

// ---------------------------------------------------------------- decoder

class Decoder {
 public:
  Decoder(const Format& format, const Phases* phases, Reader& side,
          predictive::RansDecoder& rans, BitReader& raw,
          std::string_view& literals, DecodeScratch& scratch)
      : format_(format),
        phases_(phases),
        side_(side),
        rans_(rans),
        raw_(raw),
        literals_(literals),
        kernel_(predictive::BestVectorKernel()),
        value_format_{format.m, format.all_ones, format.sign},
        scratch_(scratch) {}

  // Reads the frequency tables of `kinds` tensor kinds.
  absl::Status ReadTables(Reader& in, uint32_t kinds, int tables) {
    // Every entry is written below: no need to clear them first.
    entries_ = scratch_.entries.Get(size_t{kinds} * kTables * kProbScale);
    std::array<uint16_t, kAlphabetSize> freqs;
    for (uint32_t kind = 0; kind < kinds; ++kind) {
      uint32_t present = 0;
      for (int byte = 0; byte < (tables > 16 ? 4 : 2); ++byte) {
        uint8_t b;
        if (!in.Byte(b)) return Corrupt("table mask");
        present |= uint32_t{b} << (8 * byte);
      }
      if (uint64_t{present} >> tables) return Corrupt("table mask");
      for (int k = 0; k < tables; ++k) {
        uint32_t* entries =
            &entries_[(size_t{kind} * kTables + k) * kProbScale];
        freqs.fill(0);
        if (!(present >> k & 1)) {
          // A table the encoder never used decodes only to invalid symbols.
          freqs[kAlphabetSize - 1] = kProbScale - 1;
          freqs[kAlphabetSize - 2] = 1;
          predictive::BuildDecodeTable(freqs, entries);
          continue;
        }
        uint8_t first, last;
        if (!in.Byte(first) || !in.Byte(last) || first > last || last > kEscape)
          return Corrupt("frequency table range");
        for (int s = first; s <= last; ++s) {
          uint64_t f;
          if (!in.Varint(f) || f >= kProbScale)
            return Corrupt("frequency table");
          freqs[s] = static_cast<uint16_t>(f);
        }
        if (!predictive::BuildDecodeTable(freqs, entries))
          return Corrupt("frequencies do not sum up");
      }
    }
    return absl::OkStatus();
  }

  absl::Status Stream(const StreamSpec& spec, uint32_t kind,
                      const uint8_t* referenced, const float* reference,
                      std::span<std::byte> out) {
    const uint32_t dim = spec.dim;
    uint32_t* const values = scratch_.values.Get(spec.num_elements());
    const ChannelRoles roles = RolesFor(spec);
    const uint32_t* entries = &entries_[size_t{kind} * kTables * kProbScale];
    RowPredictor predictor(spec, format_, phases_);
    std::vector<uint8_t> exact;  // per predicted row
    // Per row: 0, or 3 / 4 for rows of reference runs, exact or coded.
    std::vector<uint8_t> row_state(size_t{spec.heads} * spec.tokens, 0);
    if (predictor.enabled()) {
      // Which rows are predicted depends on the token ids alone.
      size_t predicted_rows = 0;
      for (uint32_t h = 0; h < spec.heads; ++h) {
        predictor.StartHead();
        for (uint32_t t = 0; t < spec.tokens; ++t) {
          const bool predicted = predictor.Predict(h, t, nullptr, nullptr);
          predicted_rows += predicted;
          row_state[size_t{h} * spec.tokens + t] = predicted;
        }
      }
      std::string_view bitmap;
      if (!side_.Bytes((predicted_rows + 7) / 8, bitmap))
        return Corrupt("truncated row flags");
      exact.resize(predicted_rows);
      for (size_t r = 0; r < predicted_rows; ++r)
        exact[r] = static_cast<uint8_t>(bitmap[r / 8]) >> (r % 8) & 1;
      if (predicted_rows % 8 != 0 &&
          (static_cast<uint8_t>(bitmap.back()) >> (predicted_rows % 8)) != 0)
        return Corrupt("row flags padding");
    }
    bool any_coded_reference = false;
    if (referenced != nullptr) {
      // Which rows are: the runs' rows that token rows do not predict.
      size_t rows = 0;
      for (uint32_t h = 0; h < spec.heads; ++h)
        for (uint32_t t = 0; t < spec.tokens; ++t)
          rows += referenced[t] && !row_state[size_t{h} * spec.tokens + t];
      std::string_view bitmap;
      if (!side_.Bytes((rows + 7) / 8, bitmap))
        return Corrupt("truncated reference row flags");
      if (rows % 8 != 0 &&
          (static_cast<uint8_t>(bitmap.back()) >> (rows % 8)) != 0)
        return Corrupt("reference row flags padding");
      size_t r = 0;
      for (uint32_t h = 0; h < spec.heads; ++h)
        for (uint32_t t = 0; t < spec.tokens; ++t) {
          uint8_t& state = row_state[size_t{h} * spec.tokens + t];
          if (!referenced[t] || state) continue;
          const bool row_exact =
              static_cast<uint8_t>(bitmap[r / 8]) >> (r % 8) & 1;
          ++r;
          state = row_exact ? 3 : 4;
          any_coded_reference |= !row_exact;
        }
    }
    std::vector<HeadModel> models(spec.heads);
    std::vector<RefModel> ref_models(spec.heads);
    for (uint32_t h = 0; h < spec.heads; ++h) {
      if (absl::Status s = ReadHead(spec, roles, models[h]); !s.ok()) return s;
      Prepare(spec, roles, models[h]);
      if (any_coded_reference) {
        RefModel& ref = ref_models[h];
        ref.e.resize(dim);
        ref.shape.resize(dim);
        for (uint32_t d = 0; d < dim; ++d) {
          uint8_t byte;
          if (!side_.Byte(byte)) return Corrupt("truncated reference steps");
          ref.e[d] = format_.e_min + byte;
          if (ref.e[d] > format_.e_max) return Corrupt("reference step");
        }
        for (uint32_t d = 0; d < dim; d += 8) {
          uint8_t bits;
          if (!side_.Byte(bits)) return Corrupt("truncated reference steps");
          for (uint32_t i = d; i < std::min(dim, d + 8); ++i)
            ref.shape[i] = bits >> (i - d) & 1;
        }
      }
    }
    std::vector<int32_t> ref_step_biased(dim);

    // Without RoPE turning them, every unpredicted row of a head has the
    // same cells (base_cells) and tables.
    std::vector<int32_t> cells(dim), base_cells(dim), step_biased(dim);
    std::vector<uint32_t> table_of(dim), ref_table_of(dim);
    const std::vector<uint32_t> row_tables(dim, kRowTable * kProbScale);
    std::vector<uint8_t> symbols(dim);
    std::vector<uint32_t> predicted(dim);
    size_t predicted_index = 0;
    const bool turning = phases_ != nullptr && spec.rope != nullptr;
    for (uint32_t h = 0; h < spec.heads; ++h) {
      const HeadModel& model = models[h];
      const RefModel& ref_model = ref_models[h];
      if (any_coded_reference)
        for (uint32_t d = 0; d < dim; ++d)
          ref_step_biased[d] = ref_model.e[d] + format_.bias;
      uint32_t* head_values = values + size_t{h} * spec.tokens * dim;
      for (uint32_t d = 0; d < dim; ++d)
        step_biased[d] = model.e[d] + format_.bias;
      if (!turning) {
        PredictRow(spec, roles, model, phases_, 0, base_cells.data());
        TablesFor(model, base_cells, table_of);
      }
      predictor.StartHead();
      for (uint32_t t = 0; t < spec.tokens; ++t) {
        uint32_t* row = head_values + size_t{t} * dim;
        if (predictor.enabled() &&
            predictor.Predict(h, t, head_values, predicted.data())) {
          if (exact[predicted_index++]) {
            std::copy(predicted.begin(), predicted.end(), row);
            continue;
          }
          DecodeSymbols(kernel_, rans_, entries, row_tables.data(), dim,
                        symbols.data());
          for (uint32_t d = 0; d < dim; ++d)
            row[d] = RowValue(symbols[d], predicted[d]);
          if (corrupt_) return Corrupt("bad symbol");
          continue;
        }
        const uint8_t state = row_state[size_t{h} * spec.tokens + t];
        if (state == 3) {
          const float* p = reference + (size_t{h} * spec.tokens + t) * dim;
          for (uint32_t d = 0; d < dim; ++d) row[d] = RoundTo(format_, p[d]);
          continue;
        }
        if (state == 4) {
          ReferenceCells(ref_model,
                         reference + (size_t{h} * spec.tokens + t) * dim, dim,
                         cells.data());
          for (uint32_t d = 0; d < dim; ++d)
            ref_table_of[d] =
                static_cast<uint32_t>(kRefTableBase +
                                      TableOf(cells[d], ref_model.shape[d])) *
                kProbScale;
          DecodeSymbols(kernel_, rans_, entries, ref_table_of.data(), dim,
                        symbols.data());
          RebuildRow(dim, symbols.data(), ref_step_biased.data(),
                     ref_model.e.data(), cells.data(), row);
          if (corrupt_) return Corrupt("bad symbol");
          continue;
        }
        if (turning) {
          PredictRow(spec, roles, model, phases_, t, cells.data());
          TablesFor(model, cells, table_of);
        }
        DecodeSymbols(kernel_, rans_, entries, table_of.data(), dim,
                      symbols.data());
        RebuildRow(dim, symbols.data(), step_biased.data(), model.e.data(),
                   turning ? cells.data() : base_cells.data(), row);
        if (corrupt_) return Corrupt("bad symbol");
      }
    }
    if (format_.bytes == 4) {
      std::memcpy(out.data(), values, spec.num_elements() * 4);
    } else {
      for (size_t i = 0; i < spec.num_elements(); ++i) {
        const uint16_t v = static_cast<uint16_t>(values[i]);
        std::memcpy(out.data() + 2 * i, &v, 2);
      }
    }
    return absl::OkStatus();
  }

 private:
  static absl::Status Corrupt(const char* what) {
    return absl::DataLossError(absl::StrCat("lossless: ", what));
  }

  absl::Status ReadHead(const StreamSpec& spec, const ChannelRoles& roles,
                        HeadModel& model) {
    const uint32_t dim = spec.dim;
    const size_t pairs = spec.rope == nullptr ? 0 : spec.rope->first.size();
    model.e.resize(dim);
    model.shape.assign(dim, 0);
    model.cell.assign(dim, 0);
    model.mean_x.assign(pairs, 0);
    model.mean_y.assign(pairs, 0);
    for (uint32_t d = 0; d < dim; ++d) {
      uint8_t byte;
      if (!side_.Byte(byte)) return Corrupt("truncated channel steps");
      model.e[d] = format_.e_min + byte;
      if (model.e[d] > format_.e_max) return Corrupt("channel step");
    }
    auto signed_of = [](uint64_t z) {
      return (z & 1) ? -static_cast<int64_t>(z >> 1) - 1
                     : static_cast<int64_t>(z >> 1);
    };
    for (uint32_t d = 0; d < dim; ++d) {
      const int32_t i = roles.pair[d];
      if (i >= 0 && roles.second[d]) continue;
      uint64_t packed;
      if (!side_.Varint(packed)) return Corrupt("truncated predictions");
      model.shape[d] = packed & 1;
      const int64_t value = signed_of(packed >> 1);
      if (i < 0) {
        if (value < -kMaxPredicted || value > kMaxPredicted)
          return Corrupt("prediction out of range");
        model.cell[d] = static_cast<int32_t>(value);
        continue;
      }
      if (value < -kMaxMeanUnits || value > kMaxMeanUnits)
        return Corrupt("pair mean out of range");
      model.mean_x[i] = value;
      const uint32_t b = spec.rope->second[i];
      if (!side_.Varint(packed)) return Corrupt("truncated predictions");
      model.shape[b] = packed & 1;
      const int64_t y = signed_of(packed >> 1);
      if (y < -kMaxMeanUnits || y > kMaxMeanUnits)
        return Corrupt("pair mean out of range");
      model.mean_y[i] = y;
    }
    return absl::OkStatus();
  }

  void TablesFor(const HeadModel& model, const std::vector<int32_t>& cells,
                 std::vector<uint32_t>& table_of) const {
    for (size_t d = 0; d < cells.size(); ++d)
      table_of[d] =
          static_cast<uint32_t>(TableOf(cells[d], model.shape[d])) * kProbScale;
  }

  void RebuildRow(uint32_t dim, const uint8_t* symbols,
                  const int32_t* step_biased, const int32_t* e,
                  const int32_t* cells, uint32_t* row) {
    for (uint32_t d = 0; d < dim;) {
      d += RebuildValues(kernel_, value_format_, symbols + d, step_biased + d,
                         cells + d, dim - d, raw_.bits(), row + d);
      // A group the kernel leaves (or all, without one): one by one.
      for (const uint32_t end = std::min(dim, d + 16); d < end; ++d)
        row[d] = Value(symbols[d], e[d], cells[d]);
    }
  }

  uint32_t Value(uint8_t symbol, int e, int32_t predicted) {
    const int step_biased = e + format_.bias;
    if (symbol < kNearBase) {
      const int64_t residual =
          (symbol & 1) ? -int64_t{(symbol + 1u) / 2} : int64_t{symbol / 2u};
      const int64_t n = predicted + residual;
      if (n == 0 || n == -1) return Fail();
      const uint64_t cell = static_cast<uint64_t>(n < 0 ? -n - 1 : n);
      const int top = std::bit_width(cell) - 1;
      const int exponent = step_biased + top;
      if (exponent >= static_cast<int>(format_.all_ones)) return Fail();
      uint32_t magnitude = static_cast<uint32_t>(exponent) << format_.m;
      if (top <= format_.m) {
        const int k = format_.m - top;
        magnitude |= (static_cast<uint32_t>(cell << k) & format_.mant_mask) |
                     raw_.Get(k);
      } else {
        const int drop = top - format_.m;
        if (cell & ((uint64_t{1} << drop) - 1)) return Fail();
        magnitude |= static_cast<uint32_t>(cell >> drop) & format_.mant_mask;
      }
      return (n < 0 ? format_.sign : 0) | magnitude;
    }
    if (symbol < kEscape) {
      const uint32_t index = symbol - kNearBase;
      const bool negative = index >= kMaxBelow;
      const int below = static_cast<int>(index % kMaxBelow) + 1;
      const int exponent = step_biased - below;
      if (exponent < 0) return Fail();
      const uint32_t mantissa = raw_.Get(format_.m);
      return (negative ? format_.sign : 0) |
             static_cast<uint32_t>(exponent) << format_.m | mantissa;
    }
    return Literal(symbol);
  }

  uint32_t RowValue(uint8_t symbol, uint32_t predicted) {
    if (symbol < kNearBase) {
      const FloatFormat& f = format_.float_format;
      const int64_t diff =
          (symbol & 1) ? -int64_t{(symbol + 1u) / 2} : int64_t{symbol / 2u};
      const int64_t ord = int64_t{f.ToOrd(predicted)} + diff;
      if (ord < 0 || ord > int64_t{f.mask()}) return Fail();
      return f.FromOrd(static_cast<uint32_t>(ord));
    }
    return Literal(symbol);
  }

  uint32_t Literal(uint8_t symbol) {
    if (symbol != kEscape ||
        literals_.size() < static_cast<size_t>(format_.bytes))
      return Fail();
    uint32_t bits = 0;
    std::memcpy(&bits, literals_.data(), format_.bytes);
    literals_.remove_prefix(format_.bytes);
    return bits;
  }

  uint32_t Fail() {
    corrupt_ = true;
    return 0;
  }

  const Format& format_;
  const Phases* phases_;
  Reader& side_;
  predictive::RansDecoder& rans_;
  BitReader& raw_;
  std::string_view& literals_;
  predictive::VectorKernel kernel_;
  const ValueFormat value_format_;
  DecodeScratch& scratch_;
  uint32_t* entries_ = nullptr;
  bool corrupt_ = false;
};

EncodeScratch& ThreadEncodeScratch() {
  thread_local EncodeScratch scratch;
  return scratch;
}

DecodeScratch& ThreadDecodeScratch() {
  thread_local DecodeScratch scratch;
  return scratch;
}

uint32_t KindsOf(std::span<const ChunkStream> streams) {
  uint32_t kinds = 0;
  for (const ChunkStream& stream : streams)
    kinds = std::max(kinds, stream.kind + 1);
  return kinds;
}

const Phases* PhasesFor(std::span<const ChunkStream> streams,
                        std::unique_ptr<Phases>& storage) {
  for (const ChunkStream& stream : streams) {
    if (stream.spec.rope == nullptr || stream.spec.rope->empty()) continue;
    storage = std::make_unique<Phases>(BuildPhases(
        *stream.spec.rope, stream.spec.tokens, stream.spec.first_position));
    Phases& phases = *storage;
    const ChannelRoles roles = RolesFor(stream.spec);
    const uint32_t dim = stream.spec.dim;
    phases.dim = dim;
    phases.channel.assign(size_t{stream.spec.tokens} * 2 * dim, 0);
    for (uint32_t t = 0; t < stream.spec.tokens; ++t) {
      const double* phase = &phases.absolute[size_t{t} * phases.pairs * 2];
      double* row = &phases.channel[size_t{t} * 2 * dim];
      for (uint32_t d = 0; d < dim; ++d) {
        if (roles.pair[d] < 0) continue;
        row[d] = phase[2 * roles.pair[d]];
        row[dim + d] = phase[2 * roles.pair[d] + 1];
      }
    }
    return storage.get();
  }
  return nullptr;
}

}  // namespace

void EncodeChunkStreams(std::span<const ChunkStream> streams,
                        std::span<const std::byte> data, bool references,
                        std::string& out) {
  if (streams.empty()) return;
  const Format format(streams.front().spec.format);
  std::unique_ptr<Phases> phase_storage;
  const Phases* phases = PhasesFor(streams, phase_storage);
  size_t elements = 0;
  for (const ChunkStream& stream : streams)
    elements += stream.spec.num_elements();
  std::string side, literals;
  EncodeScratch& scratch = ThreadEncodeScratch();
  // At most a mantissa of raw bits per value.
  BitWriter raw(scratch.raw.Get(BitWriter::BufferBytes(elements * format.m)),
                elements * format.m);
  Encoder encoder(format, phases, side, raw, literals, scratch);
  ChunkSymbols symbols(elements, scratch);
  for (const ChunkStream& stream : streams)
    encoder.Stream(
        stream.spec, stream.kind, references ? stream.referenced : nullptr,
        stream.reference,
        data.subspan(stream.offset, stream.spec.num_elements() * format.bytes),
        symbols);
  raw.Finish();
  symbols.Count(KindsOf(streams));
  std::string tables;
  const int table_count = references ? kTables : kFormat3Tables;
  const auto freqs = Encoder::WriteTables(symbols, table_count, tables);
  std::vector<predictive::EncodeTable> encode_tables(freqs.size() * kTables);
  for (size_t kind = 0; kind < freqs.size(); ++kind)
    for (int k = 0; k < table_count; ++k)
      predictive::BuildEncodeTable(freqs[kind][k],
                                   encode_tables[kind * kTables + k]);
  // rANS codes last to first.
  predictive::RansEncoder rans(
      scratch.rans.Get(predictive::RansEncoder::StorageWords(symbols.size)));
  for (size_t i = symbols.size; i-- > 0;)
    rans.Put(i, encode_tables[symbols.tables[i]][symbols.symbols[i]]);
  std::string rans_bytes;
  rans.Finish(rans_bytes);
  PutVarint(tables.size(), out);
  out += tables;
  PutVarint(side.size(), out);
  out += side;
  PutVarint(rans_bytes.size(), out);
  out += rans_bytes;
  PutVarint(raw.bytes().size(), out);
  out += raw.bytes();
  out += literals;
  scratch.Trim();
}

absl::Status DecodeChunkStreams(std::span<const ChunkStream> streams,
                                std::string_view in, bool references,
                                std::span<std::byte> out) {
  if (streams.empty())
    return in.empty() ? absl::OkStatus()
                      : absl::DataLossError("lossless: trailing bytes");
  const Format format(streams.front().spec.format);
  Reader reader(in);
  std::string_view tables, side, rans_bytes, raw_bytes;
  uint64_t size;
  if (!reader.Varint(size) || !reader.Bytes(size, tables) ||
      !reader.Varint(size) || !reader.Bytes(size, side) ||
      !reader.Varint(size) || !reader.Bytes(size, rans_bytes) ||
      !reader.Varint(size) || !reader.Bytes(size, raw_bytes))
    return absl::DataLossError("lossless: truncated sections");
  std::string_view literals = reader.rest();
  std::unique_ptr<Phases> phase_storage;
  const Phases* phases = PhasesFor(streams, phase_storage);
  Reader side_reader(side);
  predictive::RansDecoder rans(std::as_bytes(std::span(rans_bytes)));
  BitReader raw(raw_bytes);
  DecodeScratch& scratch = ThreadDecodeScratch();
  Decoder decoder(format, phases, side_reader, rans, raw, literals, scratch);
  Reader table_reader(tables);
  if (absl::Status status =
          decoder.ReadTables(table_reader, KindsOf(streams),
                             references ? kTables : kFormat3Tables);
      !status.ok())
    return status;
  if (!table_reader.rest().empty())
    return absl::DataLossError("lossless: trailing table bytes");
  for (size_t s = 0; s < streams.size(); ++s) {
    const StreamSpec& spec = streams[s].spec;
    const size_t bytes = spec.num_elements() * format.bytes;
    if (streams[s].offset + bytes > out.size())
      return absl::InternalError("lossless: stream outside the chunk");
    if (absl::Status status = decoder.Stream(
            spec, streams[s].kind, references ? streams[s].referenced : nullptr,
            streams[s].reference, out.subspan(streams[s].offset, bytes));
        !status.ok())
      return absl::DataLossError(
          absl::StrCat("stream ", s, ": ", std::string(status.message())));
  }
  scratch.Trim();
  if (!side_reader.rest().empty())
    return absl::DataLossError("lossless: trailing model bytes");
  if (!rans.FinishedCleanly())
    return absl::DataLossError("lossless: symbol stream corrupt");
  if (!raw.FinishedCleanly())
    return absl::DataLossError("lossless: raw bits corrupt");
  if (!literals.empty())
    return absl::DataLossError("lossless: trailing literals");
  return absl::OkStatus();
}

}  // namespace seqkv::lossless
