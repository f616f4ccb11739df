// Encoded chunk:
//   header   u8 format version, u8 2*B, u32 checksum of everything after it
//   masks    fractional B only: per (layer, tensor, head) a head_dim-bit mask
//            of the channels coded with ceil(B) bits
//   norms    per row (layer, tensor, head, token), per block: fp16 norm
//   indices  per row, per block, per coordinate: Lloyd-Max index, packed
//            little-endian bit by bit
// A row's channels form one group (integer B) or two (fractional B); each
// group is split into power-of-two blocks (the binary digits of its size), so
// any head_dim works and 64/128/256 give one block per group.
#include "codec/turbo/turbo_codec.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "codec/turbo/bit_packing.h"
#include "codec/turbo/element_io.h"
#include "codec/turbo/hadamard.h"
#include "codec/turbo/lloyd_max.h"
#include "codec/turbo/payload_header.h"

namespace seqkv {
namespace {

constexpr uint8_t kFormatVersion = 1;
constexpr uint64_t kRotationSeed = 0x5EC0C0DE7E5B0001ull;

struct Block {
  uint32_t offset;  // into the row's gathered (hi group, then lo group) order
  uint32_t size;    // power of two
  int bits;
};

// Everything about coding rows of one head_dim, derived from B alone.
struct RowPlan {
  uint32_t head_dim = 0;
  uint32_t num_hi = 0;  // channels with bits_hi; head_dim for integer B
  int bits_hi = 0;
  int bits_lo = 0;
  bool split = false;
  std::vector<Block> blocks;
  size_t code_bits_per_row = 0;
  // Indexed by log2(block size).
  std::vector<std::vector<float>> signs;
  // Unit-variance centroids and decision thresholds, indexed by bits.
  std::vector<std::vector<float>> centroids;
  std::vector<std::vector<float>> thresholds;
};

void AddBlocks(uint32_t offset, uint32_t size, int bits, RowPlan& plan) {
  for (int b = 31; b >= 0; --b) {
    const uint32_t block = uint32_t{1} << b;
    if (size & block) {
      plan.blocks.push_back({offset, block, bits});
      offset += block;
    }
  }
}

RowPlan MakePlan(int twice_bits, uint32_t head_dim) {
  RowPlan plan;
  plan.head_dim = head_dim;
  plan.bits_hi = (twice_bits + 1) / 2;
  plan.bits_lo = twice_bits / 2;
  plan.split = plan.bits_hi != plan.bits_lo;
  plan.num_hi = plan.split ? (head_dim + 1) / 2 : head_dim;
  AddBlocks(0, plan.num_hi, plan.bits_hi, plan);
  AddBlocks(plan.num_hi, head_dim - plan.num_hi, plan.bits_lo, plan);
  plan.code_bits_per_row = size_t{plan.num_hi} * plan.bits_hi +
                           size_t{head_dim - plan.num_hi} * plan.bits_lo;
  plan.signs.resize(32);
  for (const Block& block : plan.blocks) {
    auto& signs = plan.signs[std::countr_zero(block.size)];
    if (signs.empty()) signs = HadamardSigns(block.size, kRotationSeed);
  }
  plan.centroids.resize(plan.bits_hi + 1);
  plan.thresholds.resize(plan.bits_hi + 1);
  for (int bits : {plan.bits_lo, plan.bits_hi}) {
    std::span<const double> c = GaussianLloydMaxCentroids(bits);
    plan.centroids[bits].assign(c.begin(), c.end());
    plan.thresholds[bits].clear();
    for (size_t i = 0; i + 1 < c.size(); ++i)
      plan.thresholds[bits].push_back(
          static_cast<float>(0.5 * (c[i] + c[i + 1])));
  }
  return plan;
}

size_t MaskBytes(uint32_t head_dim) { return (head_dim + 7) / 8; }

struct Sizes {
  size_t num_slots, num_rows, mask_bytes, norm_bytes, code_bytes, total;
};

Sizes ComputeSizes(const ChunkInfo& chunk, const RowPlan& plan) {
  const KvLayout& l = *chunk.layout;
  Sizes s;
  s.num_slots = size_t{l.num_layers} * l.tensors_per_layer() * l.num_kv_heads;
  s.num_rows = s.num_slots * chunk.num_tokens;
  s.mask_bytes = plan.split ? s.num_slots * MaskBytes(plan.head_dim) : 0;
  s.norm_bytes = s.num_rows * plan.blocks.size() * 2;
  s.code_bytes = (s.num_rows * plan.code_bits_per_row + 7) / 8;
  s.total = kPayloadHeaderBytes + s.mask_bytes + s.norm_bytes + s.code_bytes;
  return s;
}

// Channel order of one slot: the ceil(B) group ascending, then the rest.
void OrderFromMask(const RowPlan& plan, const uint8_t* mask,
                   std::vector<uint32_t>& order) {
  order.clear();
  for (uint32_t c = 0; c < plan.head_dim; ++c)
    if (!plan.split || (mask[c / 8] >> (c % 8)) & 1) order.push_back(c);
  if (!plan.split) return;
  for (uint32_t c = 0; c < plan.head_dim; ++c)
    if (!((mask[c / 8] >> (c % 8)) & 1)) order.push_back(c);
}

class TurboCodec final : public Codec {
 public:
  explicit TurboCodec(int twice_bits) : twice_bits_(twice_bits) {}

  std::string spec() const override {
    return twice_bits_ % 2 == 0 ? absl::StrCat("turbo:", twice_bits_ / 2)
                                : absl::StrCat("turbo:", twice_bits_ / 2, ".5");
  }
  bool lossless() const override { return false; }

  absl::Status Encode(const ChunkInfo& chunk, std::span<const std::byte> data,
                      std::string& out) const override;
  absl::Status Decode(const ChunkInfo& chunk, std::string_view encoded,
                      std::span<std::byte> out) const override;

 private:
  int twice_bits_;
};

absl::Status TurboCodec::Encode(const ChunkInfo& chunk,
                                std::span<const std::byte> data,
                                std::string& out) const {
  if (absl::Status s = CheckChunkBuffer("turbo", chunk, "chunk", data.size());
      !s.ok())
    return s;
  const KvLayout& layout = *chunk.layout;
  const uint32_t d = layout.head_dim;
  const uint32_t tokens = chunk.num_tokens;
  const RowPlan plan = MakePlan(twice_bits_, d);
  const Sizes sizes = ComputeSizes(chunk, plan);

  const size_t start = out.size();
  out.reserve(start + sizes.total);
  AppendPayloadHeader(kFormatVersion, twice_bits_, out);

  // Pass 1: per slot, the channel split (fractional B only).
  std::vector<uint8_t> masks(sizes.mask_bytes, 0);
  std::vector<float> row(d);
  if (plan.split) {
    std::vector<double> energy(d);
    std::vector<uint32_t> rank(d);
    for (size_t slot = 0; slot < sizes.num_slots; ++slot) {
      std::fill(energy.begin(), energy.end(), 0.0);
      for (uint32_t t = 0; t < tokens; ++t) {
        LoadElements(layout.dtype, data, (slot * tokens + t) * d, row);
        for (uint32_t c = 0; c < d; ++c) energy[c] += double{row[c]} * row[c];
      }
      std::iota(rank.begin(), rank.end(), 0);
      std::stable_sort(rank.begin(), rank.end(), [&](uint32_t a, uint32_t b) {
        return energy[a] > energy[b];
      });
      uint8_t* mask = &masks[slot * MaskBytes(d)];
      for (uint32_t i = 0; i < plan.num_hi; ++i)
        mask[rank[i] / 8] |= static_cast<uint8_t>(1u << (rank[i] % 8));
    }
    out.append(reinterpret_cast<const char*>(masks.data()), masks.size());
  }

  // Pass 2: rotate and quantize every row. Norms and codes go to separate
  // sections; codes are staged so one pass over the data suffices.
  std::string codes;
  codes.reserve(sizes.code_bytes);
  std::vector<uint32_t> order;
  std::vector<float> gathered(d);
  {
    BitWriter writer(codes);
    for (size_t slot = 0; slot < sizes.num_slots; ++slot) {
      OrderFromMask(plan, plan.split ? &masks[slot * MaskBytes(d)] : nullptr,
                    order);
      for (uint32_t t = 0; t < tokens; ++t) {
        LoadElements(layout.dtype, data, (slot * tokens + t) * d, row);
        for (uint32_t i = 0; i < d; ++i) gathered[i] = row[order[i]];
        for (const Block& block : plan.blocks) {
          std::span<float> x(&gathered[block.offset], block.size);
          double sum = 0;
          for (float v : x) sum += double{v} * v;
          const double norm = std::sqrt(sum);
          if (!std::isfinite(norm))
            return absl::InvalidArgumentError(
                absl::StrCat("turbo: non-finite value in row (slot ", slot,
                             ", token ", t, ")"));
          if (norm > kMaxFp16)
            return absl::InvalidArgumentError(absl::StrCat(
                "turbo: row norm ", norm, " (slot ", slot, ", token ", t,
                ") exceeds the fp16 range of the stored norm"));
          AppendLe16(out, FloatToFp16(static_cast<float>(norm)));
          const std::vector<float>& thresholds = plan.thresholds[block.bits];
          if (norm == 0) {
            for (uint32_t i = 0; i < block.size; ++i)
              writer.Write(0, block.bits);
            continue;
          }
          // Unit vector, rotated, in units of the N(0, 1/n) coordinate std.
          const float scale = static_cast<float>(
              std::sqrt(static_cast<double>(block.size)) / norm);
          for (float& v : x) v *= scale;
          ForwardRandomizedHadamard(x,
                                    plan.signs[std::countr_zero(block.size)]);
          for (float v : x) {
            uint32_t index = 0;
            for (float threshold : thresholds) index += v > threshold;
            writer.Write(index, block.bits);
          }
        }
      }
    }
  }
  out.append(codes);
  if (out.size() - start != sizes.total)
    return absl::InternalError("turbo: encoded size does not match the plan");
  SealPayload(start, out);
  return absl::OkStatus();
}

absl::Status TurboCodec::Decode(const ChunkInfo& chunk,
                                std::string_view encoded,
                                std::span<std::byte> out) const {
  if (absl::Status s =
          CheckChunkBuffer("turbo", chunk, "output buffer", out.size());
      !s.ok())
    return s;
  const KvLayout& layout = *chunk.layout;
  const uint32_t d = layout.head_dim;
  const uint32_t tokens = chunk.num_tokens;
  const RowPlan plan = MakePlan(twice_bits_, d);
  const Sizes sizes = ComputeSizes(chunk, plan);
  if (absl::Status s = CheckPayload("turbo", encoded, kFormatVersion,
                                    twice_bits_, sizes.total);
      !s.ok())
    return s;

  const char* masks = encoded.data() + kPayloadHeaderBytes;
  const char* norms = masks + sizes.mask_bytes;
  BitReader reader(encoded.substr(kPayloadHeaderBytes + sizes.mask_bytes +
                                  sizes.norm_bytes));
  std::vector<uint32_t> order;
  std::vector<float> gathered(d), row(d);
  for (size_t slot = 0; slot < sizes.num_slots; ++slot) {
    const uint8_t* mask =
        plan.split
            ? reinterpret_cast<const uint8_t*>(masks + slot * MaskBytes(d))
            : nullptr;
    if (plan.split) {
      uint32_t count = 0;
      for (size_t i = 0; i < MaskBytes(d); ++i) count += std::popcount(mask[i]);
      if (count != plan.num_hi || (d % 8 && mask[d / 8] >> (d % 8)))
        return absl::DataLossError(absl::StrCat("turbo: channel mask of slot ",
                                                slot, " is malformed"));
    }
    OrderFromMask(plan, mask, order);
    for (uint32_t t = 0; t < tokens; ++t) {
      for (const Block& block : plan.blocks) {
        const uint16_t norm_bits = ReadLe16(norms);
        norms += 2;
        if (!Fp16IsFinite(norm_bits) || (norm_bits & 0x8000))
          return absl::DataLossError(absl::StrCat(
              "turbo: invalid norm in slot ", slot, ", token ", t));
        const std::vector<float>& centroids = plan.centroids[block.bits];
        std::span<float> x(&gathered[block.offset], block.size);
        if ((norm_bits & 0x7FFF) == 0) {  // a zero vector stays exactly +0
          for (float& v : x) {
            reader.Read(block.bits);
            v = 0.0f;
          }
          continue;
        }
        double sum = 0;
        for (float& v : x) {
          v = centroids[reader.Read(block.bits)];
          sum += double{v} * v;
        }
        // Renormalizing puts the reconstruction on the unit sphere, where the
        // original direction was; sum > 0 as no centroid is zero.
        const float scale =
            static_cast<float>(Fp16ToFloat(norm_bits) / std::sqrt(sum));
        InverseRandomizedHadamard(x, plan.signs[std::countr_zero(block.size)]);
        for (float& v : x) v *= scale;
      }
      for (uint32_t i = 0; i < d; ++i) row[order[i]] = gathered[i];
      StoreElements(layout.dtype, row, (slot * tokens + t) * d, out);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Codec>> CreateTurboCodec(
    std::string_view params, const ModelContext& model) {
  double bits = 0;
  if (!absl::SimpleAtod(absl::string_view(params.data(), params.size()),
                        &bits) ||
      !(bits >= 2 && bits <= 4) ||
      std::fabs(bits * 2 - std::round(bits * 2)) > 1e-9)
    return absl::InvalidArgumentError(
        absl::StrCat("codec 'turbo' wants bits in {2, 2.5, 3, 3.5, 4}, got '",
                     std::string(params), "'"));
  return std::make_unique<TurboCodec>(static_cast<int>(std::lround(bits * 2)));
}

}  // namespace seqkv
