#include "codec/predictive/predictive_codec.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "codec/float_bits.h"
#include "codec/model_state.h"
#include "codec/predictive/byte_io.h"
#include "codec/predictive/error_weights.h"
#include "codec/predictive/references.h"
#include "codec/predictive/residual_coder.h"
#include "codec/predictive/rope.h"
#include "codec/predictive/row_ops.h"
#include "xxhash.h"

namespace seqkv {
namespace {

using predictive::ByteReader;
using predictive::GroupShape;
using predictive::PutVarint;
using predictive::RansDecoder;
using predictive::ResidualDecoder;
using predictive::RopeTable;

// Chunk payload: u8 'P' | u8 version | varint num_groups | per group, in
// (layer, tensor) order: varint size | u8 flags | residual group header (see
// residual_coder.h) | one rANS stream with the symbols of every coded group,
// in group order | u32 checksum (XXH32 of everything before it). Groups are
// length-prefixed, which is how the decoder finds the stream. One stream
// per chunk, rather than one per group, pays the 64 states' final words
// once. The checksum makes every corruption detectable, including ones that
// would decode to valid numbers (a flipped step or offset).
//
// Version 3, written only for chunks with reference runs (version 2 stays
// the format of every other chunk, byte for byte): after num_groups a u64
// digest of the references (references.h), and groups with the flag
// kFlagReferences hold, after flags and scale codes, varint size | the
// residual header of the rows no run covers | the residual header of the
// rows runs cover (predicted by their source rows), both quantized with the
// group's one step, their symbols in the stream in that order.
constexpr uint8_t kMagic = 'P';
constexpr uint8_t kVersion = 2;
constexpr uint8_t kVersionReferences = 3;
constexpr uint8_t kFlagPreRope = 1;
constexpr uint8_t kFlagLayer0 = 2;
// The group's values were scaled per channel before quantizing (see
// error_weights.h); ceil(C / 2) bytes of 4-bit scale codes follow the flags.
constexpr uint8_t kFlagChannelScales = 4;
// Version 3: the group's rows are two sub-groups, those that reference rows
// predict last (see above).
constexpr uint8_t kFlagReferences = 8;
constexpr uint8_t kKnownFlags =
    kFlagPreRope | kFlagLayer0 | kFlagChannelScales | kFlagReferences;

// Relative-MSE targets below this are not honoured: bf16 output rounding
// alone costs about 5e-6.
constexpr double kMinRelMse = 1e-5;
// A group never gets a looser target than this from a KL split.
constexpr double kMaxRelMse = 0.5;
// Share of each group's budget left for rounding and float slack.
constexpr double kBudgetMargin = 0.99;

struct Options {
  double rel_mse = 0.01;
  std::optional<double> kl;
  // The per-chunk budget that kl= spends: kl itself, or what the profile's
  // measured map says gives a measured KL of kl.
  double kl_budget = 0;
  bool prerope = true;
  bool layer0 = true;
  bool channel_weights = true;
  bool trellis = true;
};

// Each channel's scale (1 without codes), or its inverse.
std::vector<float> ChannelFactors(std::span<const uint8_t> codes,
                                  bool inverse) {
  std::vector<float> factors;
  for (uint8_t code : codes) {
    const float scale = predictive::ScaleOfCode(code);
    factors.push_back(inverse ? 1.0f / scale : scale);
  }
  return factors;
}

// Expected squared error of rounding a value of unit square to the output
// dtype (half an ulp, uniform), an upper estimate.
double RoundingFloor(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return std::ldexp(1.0, -14) / 12;
    case DType::kFP16:
      return std::ldexp(1.0, -20) / 12;
    case DType::kFP32:
      return 0;
  }
  return 0;
}

void PutU64(uint64_t value, std::string& out) {
  char bytes[sizeof(value)];
  std::memcpy(bytes, &value, sizeof(value));
  out.append(bytes, sizeof(bytes));
}

// How a chunk's rows split between the two sub-groups of a group coded
// against references; the same for every head, group and both directions.
struct ReferencePlan {
  std::optional<predictive::ReferencePredictor> predictor;
  std::vector<uint32_t> unpredicted;  // tokens no run covers, ascending
  std::vector<uint32_t> predicted;    // tokens runs cover, ascending
};

void AppendChecksum(size_t payload_start, std::string& out) {
  const uint32_t checksum =
      XXH32(out.data() + payload_start, out.size() - payload_start, 0);
  char bytes[sizeof(checksum)];
  std::memcpy(bytes, &checksum, sizeof(checksum));
  out.append(bytes, sizeof(bytes));
}

class PredictiveCodec final : public Codec {
 public:
  PredictiveCodec(Options options, const KvLayout& layout,
                  std::optional<Layer0Table> layer0,
                  std::vector<double> sensitivities,
                  std::vector<std::vector<uint8_t>> channel_codes)
      : options_(options),
        layout_(layout),
        layer0_(std::move(layer0)),
        sensitivities_(std::move(sensitivities)),
        channel_codes_(std::move(channel_codes)) {}

  std::string spec() const override {
    std::string spec =
        options_.kl ? absl::StrCat("predictive:kl=", *options_.kl)
                    : absl::StrCat("predictive:rel_mse=", options_.rel_mse);
    if (!options_.prerope) spec += ",prerope=0";
    if (!options_.layer0) spec += ",layer0=0";
    if (!options_.channel_weights) spec += ",channel_weights=0";
    if (!options_.trellis) spec += ",trellis=0";
    return spec;
  }
  bool lossless() const override { return false; }
  bool codes_against_references() const override { return true; }

  absl::Status Encode(const ChunkInfo& chunk, std::span<const std::byte> data,
                      std::string& out) const override;
  absl::Status Decode(const ChunkInfo& chunk, std::string_view encoded,
                      std::span<std::byte> out) const override;

 private:
  bool RotatesGroup(uint32_t tensor) const {
    return options_.prerope && !layout_.latent && tensor == 0 &&
           layout_.rope.style != RopeStyle::kNone;
  }
  // Layer 0 is predicted from the token table when the table is registered,
  // the chunk's token ids are all in it, and (for K) the group is coded
  // pre-RoPE, the frame the table holds.
  bool PredictsGroup(const ChunkInfo& chunk, uint32_t layer,
                     uint32_t tensor) const {
    if (!options_.layer0 || !layer0_ || layer != 0 || layout_.latent)
      return false;
    if (tensor == 0 && !RotatesGroup(0)) return false;
    return TokensInTable(chunk);
  }
  bool TokensInTable(const ChunkInfo& chunk) const {
    if (chunk.tokens.size() != chunk.num_tokens) return false;
    for (int32_t token : chunk.tokens)
      if (token < 0 || static_cast<uint32_t>(token) >= layer0_->vocab())
        return false;
    return true;
  }
  // Groups coded against references: all, but those that layer 0's table
  // predicts (as well as a reference would, and for free).
  bool ReferencesGroup(const ChunkInfo& chunk, uint32_t layer,
                       uint32_t tensor) const {
    return !PredictsGroup(chunk, layer, tensor);
  }
  ReferencePlan MakePlan(const ChunkInfo& chunk) const {
    ReferencePlan plan;
    plan.predictor.emplace(chunk, layout_);
    for (uint32_t t = 0; t < chunk.num_tokens; ++t)
      (plan.predictor->run_of(t) < 0 ? plan.unpredicted : plan.predicted)
          .push_back(t);
    return plan;
  }
  absl::Status CheckChunk(const ChunkInfo& chunk) const {
    if (chunk.layout == nullptr || !(*chunk.layout == layout_))
      return absl::InvalidArgumentError(
          "predictive: chunk layout differs from the model's layout");
    return absl::OkStatus();
  }

  Options options_;
  KvLayout layout_;
  std::optional<Layer0Table> layer0_;
  std::vector<double> sensitivities_;  // per group, for kl=
  // Per group, with kl= and a profile that weighs channels: the channel
  // scale codes (empty: none).
  std::vector<std::vector<uint8_t>> channel_codes_;
};

absl::Status PredictiveCodec::Encode(const ChunkInfo& chunk,
                                     std::span<const std::byte> data,
                                     std::string& out) const {
  if (absl::Status s = CheckChunk(chunk); !s.ok()) return s;
  if (data.size() != chunk.num_bytes())
    return absl::InvalidArgumentError(
        absl::StrCat("predictive: chunk has ", data.size(), " bytes, expected ",
                     chunk.num_bytes()));
  const uint32_t tensors = layout_.tensors_per_layer();
  const uint32_t num_groups = layout_.num_layers * tensors;
  const GroupShape shape{layout_.num_kv_heads, chunk.num_tokens,
                         layout_.head_dim};
  const size_t dsize = DTypeSize(layout_.dtype);
  const uint32_t width = layout_.head_dim;

  const bool references = predictive::HasReferenceRuns(chunk);
  if (references) {
    if (std::string problem = predictive::CheckReferences(chunk, layout_);
        !problem.empty())
      return absl::InvalidArgumentError(absl::StrCat("predictive: ", problem));
  }

  const size_t payload_start = out.size();
  out.push_back(static_cast<char>(kMagic));
  out.push_back(static_cast<char>(references ? kVersionReferences : kVersion));
  PutVarint(num_groups, out);
  if (references) PutU64(predictive::ReferenceDigest(chunk), out);
  if (chunk.num_tokens == 0) {
    AppendChecksum(payload_start, out);
    return absl::OkStatus();
  }

  std::optional<RopeTable> rope;
  if (RotatesGroup(0))
    rope.emplace(layout_.rope, width, chunk.first_position, chunk.num_tokens);
  ReferencePlan plan;
  if (references) plan = MakePlan(chunk);
  // Where row (h, t) of a group goes in `values`: rows in (head, token)
  // order, or, for groups split by references, the unpredicted sub-group's
  // rows (head-major) before the predicted one's.
  std::vector<size_t> slot_of(chunk.num_tokens);
  if (references) {
    for (size_t i = 0; i < plan.unpredicted.size(); ++i)
      slot_of[plan.unpredicted[i]] = i;
    for (size_t i = 0; i < plan.predicted.size(); ++i)
      slot_of[plan.predicted[i]] = i;
  }
  const uint32_t num_unpredicted =
      static_cast<uint32_t>(plan.unpredicted.size());
  const uint32_t num_predicted = static_cast<uint32_t>(plan.predicted.size());
  std::vector<float> reference(width);

  // With a KL budget every group gets an equal share of the KL still left,
  // so its relative-MSE target is proportional to 1 / sensitivity (the
  // allocation that minimizes bits when groups have equal sizes). Groups are
  // coded in order and charged what they actually spent.
  double kl_left = options_.kl ? options_.kl_budget : 0;
  uint32_t groups_left = num_groups;

  std::vector<float> values(shape.num_elements());
  std::string group_bytes;
  // Two per group: a group split by references has its sub-groups' symbols
  // there; any other leaves the second empty (nothing in the stream).
  std::vector<predictive::GroupSymbols> symbols(2 * size_t{num_groups});
  for (uint32_t layer = 0; layer < layout_.num_layers; ++layer) {
    for (uint32_t tensor = 0; tensor < tensors; ++tensor) {
      const uint32_t group = layer * tensors + tensor;
      const bool rotate = RotatesGroup(tensor);
      const bool predict = PredictsGroup(chunk, layer, tensor);
      const bool split = references && ReferencesGroup(chunk, layer, tensor);
      const std::byte* src =
          data.data() + chunk.RowOffset(layer, tensor, 0, 0) * dsize;
      predictive::RowTransform transform{layout_.dtype, width};
      if (rotate) transform.rope = &*rope;
      double energy = 0;
      for (uint32_t h = 0; h < shape.num_heads; ++h) {
        for (uint32_t t = 0; t < chunk.num_tokens; ++t) {
          const size_t row = size_t{h} * chunk.num_tokens + t;
          transform.token = t;
          if (predict)
            transform.prediction = layer0_->Row(tensor, chunk.tokens[t], h);
          size_t slot = row;
          if (split) {
            const bool predicted = plan.predictor->run_of(t) >= 0;
            transform.reference = nullptr;
            if (predicted) {
              if (!plan.predictor->Predict(layer, tensor, h, t, RotatesGroup(0),
                                           reference.data()))
                return absl::InvalidArgumentError(absl::StrCat(
                    "predictive: non-finite reference value at layer ", layer,
                    " tensor ", tensor, " head ", h, " token ", t));
              transform.reference = reference.data();
              slot = size_t{num_unpredicted} * shape.num_heads +
                     size_t{h} * num_predicted + slot_of[t];
            } else {
              slot = size_t{h} * num_unpredicted + slot_of[t];
            }
          }
          // A NaN or infinity makes the row's energy non-finite, so one
          // check per row finds it.
          const double row_energy = predictive::StartRow(
              transform, src + row * width * dsize, &values[slot * width]);
          if (!std::isfinite(row_energy))
            return absl::InvalidArgumentError(
                absl::StrCat("predictive: non-finite value at layer ", layer,
                             " tensor ", tensor, " head ", h, " token ", t));
          energy += row_energy;
        }
      }

      // Channels weighted by the profile are scaled so that the budget
      // below bounds the weighted error. Layer 0 rebuilt from the token ids
      // leaves only rounding noise, not worth the codes.
      const std::span<const uint8_t> channel_codes =
          channel_codes_.empty() || predict ? std::span<const uint8_t>()
                                            : channel_codes_[group];
      if (!channel_codes.empty()) {
        const std::vector<float> factors =
            ChannelFactors(channel_codes, /*inverse=*/false);
        // Every head has num_tokens rows in either arrangement of
        // `values`; split groups hold two runs of heads.
        auto scale_rows = [&](size_t first_row, uint32_t rows_per_head) {
          for (uint32_t h = 0; h < shape.num_heads; ++h) {
            const float* factor = &factors[size_t{h} * width];
            for (uint32_t t = 0; t < rows_per_head; ++t) {
              float* row =
                  &values[(first_row + size_t{h} * rows_per_head + t) * width];
              for (uint32_t d = 0; d < width; ++d) row[d] *= factor[d];
            }
          }
        };
        if (split) {
          scale_rows(0, num_unpredicted);
          scale_rows(size_t{num_unpredicted} * shape.num_heads, num_predicted);
        } else {
          scale_rows(0, chunk.num_tokens);
        }
      }

      double target = options_.rel_mse;
      if (options_.kl) {
        const double sensitivity = sensitivities_[group];
        const double share = kl_left / std::max<uint32_t>(groups_left, 1);
        target = sensitivity > 0 ? share / sensitivity : kMaxRelMse;
        target = std::clamp(target, kMinRelMse, kMaxRelMse);
      }
      const double budget = std::max(
          0.0,
          energy * (target * kBudgetMargin - RoundingFloor(layout_.dtype)));
      group_bytes.clear();
      group_bytes.push_back(static_cast<char>(
          (rotate ? kFlagPreRope : 0) | (predict ? kFlagLayer0 : 0) |
          (channel_codes.empty() ? 0 : kFlagChannelScales) |
          (split ? kFlagReferences : 0)));
      predictive::AppendScaleCodes(channel_codes, group_bytes);
      double error;
      if (split) {
        // One step for the whole group (a uniform quantizer's error per
        // value is the same in both sub-groups, so this is MSE-optimal),
        // but statistics of their own: predicted rows' residuals are far
        // smaller.
        const float step = predictive::ChooseStep(values, budget, error);
        const size_t split_at =
            size_t{num_unpredicted} * shape.num_heads * width;
        const std::span<const float> all(values);
        std::string header;
        predictive::EncodeResidualWithStep(
            GroupShape{shape.num_heads, num_unpredicted, width},
            all.first(split_at), step, header, symbols[2 * size_t{group}]);
        PutVarint(header.size(), group_bytes);
        group_bytes += header;
        predictive::EncodeResidualWithStep(
            GroupShape{shape.num_heads, num_predicted, width},
            all.subspan(split_at), step, group_bytes,
            symbols[2 * size_t{group} + 1]);
      } else {
        error =
            predictive::EncodeResidual(shape, values, budget, options_.trellis,
                                       group_bytes, symbols[2 * size_t{group}]);
      }
      PutVarint(group_bytes.size(), out);
      out += group_bytes;

      if (options_.kl) {
        // Whatever a group leaves unspent (layer 0 rebuilt from the token
        // ids spends almost nothing) goes to the groups after it.
        if (energy > 0) kl_left -= sensitivities_[group] * error / energy;
        kl_left = std::max(kl_left, 0.0);
        --groups_left;
      }
    }
  }
  predictive::EncodeSymbolStream(symbols, out);
  AppendChecksum(payload_start, out);
  return absl::OkStatus();
}

absl::Status PredictiveCodec::Decode(const ChunkInfo& chunk,
                                     std::string_view encoded,
                                     std::span<std::byte> out) const {
  if (absl::Status s = CheckChunk(chunk); !s.ok()) return s;
  if (out.size() != chunk.num_bytes())
    return absl::InvalidArgumentError(
        absl::StrCat("predictive: output has ", out.size(), " bytes, expected ",
                     chunk.num_bytes()));
  const uint32_t tensors = layout_.tensors_per_layer();
  const uint32_t num_groups = layout_.num_layers * tensors;
  if (encoded.size() < sizeof(uint32_t))
    return absl::DataLossError("predictive: payload too short");
  const size_t body_size = encoded.size() - sizeof(uint32_t);
  uint32_t stored_checksum;
  std::memcpy(&stored_checksum, encoded.data() + body_size, sizeof(uint32_t));
  if (XXH32(encoded.data(), body_size, 0) != stored_checksum)
    return absl::DataLossError("predictive: checksum mismatch");
  encoded = encoded.substr(0, body_size);
  ByteReader reader(encoded);
  uint8_t magic, version;
  uint64_t stored_groups;
  if (!reader.GetByte(magic) || magic != kMagic)
    return absl::DataLossError("predictive: bad magic");
  if (!reader.GetByte(version) ||
      (version != kVersion && version != kVersionReferences))
    return absl::DataLossError("predictive: unknown format version");
  if (!reader.GetVarint(stored_groups) || stored_groups != num_groups)
    return absl::DataLossError(absl::StrCat(
        "predictive: payload group count does not match ", num_groups));
  // Version 3 was coded against references: it decodes only with the same
  // ones (a version-2 payload ignores any given).
  const bool references = version == kVersionReferences;
  if (references) {
    if (!predictive::HasReferenceRuns(chunk))
      return absl::DataLossError(
          "predictive: payload was coded against reference rows, none given");
    if (std::string problem = predictive::CheckReferences(chunk, layout_);
        !problem.empty())
      return absl::DataLossError(absl::StrCat("predictive: ", problem));
    std::string_view digest_bytes;
    uint64_t digest;
    if (!reader.GetBytes(sizeof(digest), digest_bytes))
      return absl::DataLossError("predictive: truncated reference digest");
    std::memcpy(&digest, digest_bytes.data(), sizeof(digest));
    if (digest != predictive::ReferenceDigest(chunk))
      return absl::DataLossError(
          "predictive: payload was coded against other reference rows");
  }
  if (chunk.num_tokens == 0) {
    if (reader.remaining() != 0)
      return absl::DataLossError("predictive: bytes after an empty chunk");
    return absl::OkStatus();
  }

  // The groups come first; the rANS stream is what follows them.
  std::vector<std::string_view> group_bytes(num_groups);
  for (uint32_t group = 0; group < num_groups; ++group) {
    uint64_t size;
    if (!reader.GetVarint(size) || !reader.GetBytes(size, group_bytes[group]) ||
        group_bytes[group].empty())
      return absl::DataLossError(
          absl::StrCat("predictive: group ", group, " is truncated"));
  }
  std::string_view stream;
  reader.GetBytes(reader.remaining(), stream);
  RansDecoder rans(std::as_bytes(std::span(stream)));
  bool any_coded = false;

  const GroupShape shape{layout_.num_kv_heads, chunk.num_tokens,
                         layout_.head_dim};
  const size_t dsize = DTypeSize(layout_.dtype);
  const uint32_t width = layout_.head_dim;
  std::optional<RopeTable> rope;
  ReferencePlan plan;
  if (references) plan = MakePlan(chunk);
  std::vector<float> row(width);
  std::vector<float> reference(width);
  std::vector<uint8_t> channel_codes;
  ResidualDecoder decoder;
  for (uint32_t layer = 0; layer < layout_.num_layers; ++layer) {
    for (uint32_t tensor = 0; tensor < tensors; ++tensor) {
      std::string_view bytes = group_bytes[layer * tensors + tensor];
      const uint8_t flags = static_cast<uint8_t>(bytes[0]);
      bytes.remove_prefix(1);
      const bool rotate = flags & kFlagPreRope;
      const bool predict = flags & kFlagLayer0;
      const bool split = flags & kFlagReferences;
      if ((flags & ~kKnownFlags) != 0 ||
          (rotate && (tensor != 0 || layout_.latent ||
                      layout_.rope.style == RopeStyle::kNone)) ||
          (split && (!references || predict)))
        return absl::DataLossError("predictive: bad group flags");
      if (predict) {
        if (layer != 0 || layout_.latent || (tensor == 0 && !rotate))
          return absl::DataLossError("predictive: bad group flags");
        if (!layer0_)
          return absl::DataLossError(
              "predictive: payload needs the model's layer-0 table, which is "
              "not registered");
        if (!TokensInTable(chunk))
          return absl::DataLossError(
              "predictive: chunk token ids are missing or outside the layer-0 "
              "table");
      }
      channel_codes.clear();
      if ((flags & kFlagChannelScales) &&
          !predictive::ReadScaleCodes(bytes, shape.num_channels(),
                                      channel_codes))
        return absl::DataLossError("predictive: truncated channel scales");
      if (rotate && !rope)
        rope.emplace(layout_.rope, width, chunk.first_position,
                     chunk.num_tokens);
      std::byte* dst =
          out.data() + chunk.RowOffset(layer, tensor, 0, 0) * dsize;
      predictive::RowTransform transform{layout_.dtype, width};
      if (rotate) transform.rope = &*rope;
      if (split) {
        // The unpredicted rows' sub-group, then the predicted rows'.
        uint64_t size;
        std::string_view sub_bytes[2];
        ByteReader group_reader(bytes);
        if (!group_reader.GetVarint(size) ||
            !group_reader.GetBytes(size, sub_bytes[0]) ||
            !group_reader.GetBytes(group_reader.remaining(), sub_bytes[1]))
          return absl::DataLossError("predictive: truncated sub-groups");
        const std::vector<float> factors =
            ChannelFactors(channel_codes, /*inverse=*/true);
        for (int part = 0; part < 2; ++part) {
          const std::vector<uint32_t>& tokens =
              part == 0 ? plan.unpredicted : plan.predicted;
          const GroupShape sub_shape{
              shape.num_heads, static_cast<uint32_t>(tokens.size()), width};
          if (absl::Status s =
                  decoder.Open(sub_shape, sub_bytes[part], factors);
              !s.ok())
            return s;
          any_coded |= decoder.coded();
          for (uint32_t h = 0; h < shape.num_heads; ++h) {
            for (uint32_t t : tokens) {
              if (!decoder.NextRow(rans, row.data()))
                return absl::DataLossError("predictive: corrupt escapes");
              transform.token = t;
              transform.reference = nullptr;
              if (part == 1) {
                if (!plan.predictor->Predict(layer, tensor, h, t,
                                             RotatesGroup(0), reference.data()))
                  return absl::DataLossError(
                      "predictive: non-finite reference value");
                transform.reference = reference.data();
              }
              predictive::FinishRow(
                  transform, row.data(),
                  dst + (size_t{h} * chunk.num_tokens + t) * width * dsize);
            }
          }
          if (absl::Status s = decoder.Finish(); !s.ok()) return s;
        }
        continue;
      }
      if (absl::Status s = decoder.Open(
              shape, bytes, ChannelFactors(channel_codes, /*inverse=*/true));
          !s.ok())
        return s;
      any_coded |= decoder.coded();
      for (uint32_t h = 0; h < shape.num_heads; ++h) {
        for (uint32_t t = 0; t < chunk.num_tokens; ++t) {
          if (!decoder.NextRow(rans, row.data()))
            return absl::DataLossError("predictive: corrupt escapes");
          transform.token = t;
          if (predict)
            transform.prediction = layer0_->Row(tensor, chunk.tokens[t], h);
          predictive::FinishRow(
              transform, row.data(),
              dst + (size_t{h} * chunk.num_tokens + t) * width * dsize);
        }
      }
      if (absl::Status s = decoder.Finish(); !s.ok()) return s;
    }
  }
  // Without coded groups there is no stream at all.
  if (any_coded ? !rans.FinishedCleanly() : !stream.empty())
    return absl::DataLossError("predictive: corrupt entropy stream");
  return absl::OkStatus();
}

absl::StatusOr<Options> ParseOptions(std::string_view params) {
  Options options;
  bool has_rel_mse = false;
  if (params.empty()) return options;
  while (!params.empty()) {
    const size_t comma = params.find(',');
    const std::string_view item = params.substr(0, comma);
    params = comma == std::string_view::npos ? std::string_view()
                                             : params.substr(comma + 1);
    const size_t equals = item.find('=');
    const std::string key(item.substr(0, equals));
    const std::string value(
        equals == std::string_view::npos ? "" : item.substr(equals + 1));
    double number;
    if (!absl::SimpleAtod(value, &number) || !std::isfinite(number))
      return absl::InvalidArgumentError(
          absl::StrCat("predictive: parameter '", key,
                       "' needs a number, got '", value, "'"));
    if (key == "rel_mse") {
      if (number < kMinRelMse || number > 1)
        return absl::InvalidArgumentError(
            absl::StrCat("predictive: rel_mse must be in [", kMinRelMse,
                         ", 1], got ", value));
      options.rel_mse = number;
      has_rel_mse = true;
    } else if (key == "kl") {
      if (!(number > 0))
        return absl::InvalidArgumentError(
            absl::StrCat("predictive: kl must be positive, got ", value));
      options.kl = number;
    } else if (key == "prerope" || key == "layer0" ||
               key == "channel_weights" || key == "trellis") {
      if (number != 0 && number != 1)
        return absl::InvalidArgumentError(
            absl::StrCat("predictive: ", key, " must be 0 or 1, got ", value));
      bool& flag = key == "prerope"           ? options.prerope
                   : key == "layer0"          ? options.layer0
                   : key == "channel_weights" ? options.channel_weights
                                              : options.trellis;
      flag = number == 1;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "predictive: unknown parameter '", key,
          "' (known: rel_mse, kl, prerope, layer0, channel_weights, trellis)"));
    }
  }
  if (has_rel_mse && options.kl)
    return absl::InvalidArgumentError(
        "predictive: give either rel_mse or kl, not both");
  return options;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Codec>> CreatePredictiveCodec(
    std::string_view params, const ModelContext& model) {
  absl::StatusOr<Options> options = ParseOptions(params);
  if (!options.ok()) return options.status();
  if (absl::Status s = model.layout.Validate(); !s.ok()) return s;

  std::optional<Layer0Table> layer0;
  if (const std::string* blob = model.FindState(kLayer0TableKey);
      blob != nullptr && options->layer0) {
    absl::StatusOr<Layer0Table> table = Layer0Table::Parse(*blob, model.layout);
    if (!table.ok()) return table.status();
    layer0 = *std::move(table);
  }

  std::vector<double> sensitivities;
  std::vector<std::vector<uint8_t>> channel_codes;
  if (options->kl) {
    const std::string* blob = model.FindState(kProfileKey);
    if (blob == nullptr)
      return absl::FailedPreconditionError(absl::StrCat(
          "predictive:kl needs a fidelity profile for model '", model.name,
          "' (register one with seqkv model register --profile)"));
    absl::StatusOr<FidelityProfile> profile =
        ParseFidelityProfile(*blob, &model.layout);
    if (!profile.ok()) return profile.status();
    options->kl_budget = profile->BudgetForKl(*options->kl);
    const uint32_t tensors = model.layout.tensors_per_layer();
    for (uint32_t layer = 0; layer < model.layout.num_layers; ++layer) {
      for (uint32_t tensor = 0; tensor < tensors; ++tensor) {
        const FidelityProfile::Group* group = profile->Find(layer, tensor);
        if (group == nullptr)
          return absl::FailedPreconditionError(
              absl::StrCat("predictive:kl: the profile of model '", model.name,
                           "' has no sensitivity for layer ", layer, " tensor ",
                           tensor == 0 ? "k" : "v"));
        sensitivities.push_back(group->sensitivity);
        std::vector<uint8_t>& codes = channel_codes.emplace_back();
        if (options->channel_weights)
          for (double weight : group->channel_weights)
            codes.push_back(predictive::ScaleCodeForWeight(weight));
      }
    }
  }
  return std::make_unique<PredictiveCodec>(
      *options, model.layout, std::move(layer0), std::move(sensitivities),
      std::move(channel_codes));
}

}  // namespace seqkv
