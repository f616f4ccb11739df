// Encoded chunk:
//   header   u8 format version, u8 B, u32 checksum of everything after it
//   params   per (layer, tensor, head), per group: fp16 scale, fp16 zero.
//            Keys: groups ordered [token group][channel]; values:
//            [token][channel group]
//   codes    every element in chunk order, B bits each, packed little-endian
// Groups at the end of a chunk or row hold fewer than 32 elements.
#include "codec/kivi/kivi_codec.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "codec/turbo/bit_packing.h"
#include "codec/turbo/element_io.h"
#include "codec/turbo/payload_header.h"

namespace seqkv {
namespace {

constexpr uint8_t kFormatVersion = 1;
constexpr uint32_t kGroupSize = 32;

uint32_t CeilDiv(uint32_t a, uint32_t b) { return (a + b - 1) / b; }

// Keys (and latents) are grouped along tokens, values along channels.
bool PerChannel(const KvLayout& layout, uint32_t tensor) {
  return layout.latent || tensor == 0;
}

size_t GroupsPerSlot(const KvLayout& layout, uint32_t tensor, uint32_t tokens) {
  return PerChannel(layout, tensor)
             ? size_t{CeilDiv(tokens, kGroupSize)} * layout.head_dim
             : size_t{tokens} * CeilDiv(layout.head_dim, kGroupSize);
}

// Group index of element (token t, channel c) within its slot.
size_t GroupOf(const KvLayout& layout, uint32_t tensor, uint32_t t,
               uint32_t c) {
  return PerChannel(layout, tensor)
             ? size_t{t / kGroupSize} * layout.head_dim + c
             : size_t{t} * CeilDiv(layout.head_dim, kGroupSize) +
                   c / kGroupSize;
}

size_t ParamBytes(const ChunkInfo& chunk) {
  const KvLayout& l = *chunk.layout;
  size_t groups = 0;
  for (uint32_t tensor = 0; tensor < l.tensors_per_layer(); ++tensor)
    groups += GroupsPerSlot(l, tensor, chunk.num_tokens);
  return groups * l.num_layers * l.num_kv_heads * 4;
}

class KiviCodec final : public Codec {
 public:
  explicit KiviCodec(int bits) : bits_(bits) {}

  std::string spec() const override { return absl::StrCat("kivi:", bits_); }
  bool lossless() const override { return false; }

  absl::Status Encode(const ChunkInfo& chunk, std::span<const std::byte> data,
                      std::string& out) const override;
  absl::Status Decode(const ChunkInfo& chunk, std::string_view encoded,
                      std::span<std::byte> out) const override;

 private:
  size_t TotalBytes(const ChunkInfo& chunk) const {
    return kPayloadHeaderBytes + ParamBytes(chunk) +
           PackedBytes(chunk.num_elements(), bits_);
  }

  int bits_;
};

absl::Status KiviCodec::Encode(const ChunkInfo& chunk,
                               std::span<const std::byte> data,
                               std::string& out) const {
  if (absl::Status s = CheckChunkBuffer("kivi", chunk, "chunk", data.size());
      !s.ok())
    return s;
  const KvLayout& layout = *chunk.layout;
  const uint32_t d = layout.head_dim;
  const uint32_t tokens = chunk.num_tokens;
  const float levels = static_cast<float>((1u << bits_) - 1);
  const size_t start = out.size();
  out.reserve(start + TotalBytes(chunk));
  AppendPayloadHeader(kFormatVersion, bits_, out);

  std::string codes;
  codes.reserve(PackedBytes(chunk.num_elements(), bits_));
  std::vector<float> values(size_t{tokens} * d);
  std::vector<float> lo, hi, scale, zero;
  {
    BitWriter writer(codes);
    size_t slot = 0;
    for (uint32_t layer = 0; layer < layout.num_layers; ++layer) {
      for (uint32_t tensor = 0; tensor < layout.tensors_per_layer(); ++tensor) {
        for (uint32_t head = 0; head < layout.num_kv_heads; ++head, ++slot) {
          LoadElements(layout.dtype, data, slot * values.size(), values);
          const size_t groups = GroupsPerSlot(layout, tensor, tokens);
          lo.assign(groups, INFINITY);
          hi.assign(groups, -INFINITY);
          for (uint32_t t = 0; t < tokens; ++t) {
            for (uint32_t c = 0; c < d; ++c) {
              const float v = values[size_t{t} * d + c];
              if (!std::isfinite(v))
                return absl::InvalidArgumentError(absl::StrCat(
                    "kivi: non-finite value at layer ", layer, ", tensor ",
                    tensor, ", head ", head, ", token ", t));
              const size_t g = GroupOf(layout, tensor, t, c);
              lo[g] = std::min(lo[g], v);
              hi[g] = std::max(hi[g], v);
            }
          }
          scale.resize(groups);
          zero.resize(groups);
          for (size_t g = 0; g < groups; ++g) {
            const uint16_t zero_bits = FloatToFp16(lo[g]);
            const uint16_t scale_bits =
                FloatToFp16((hi[g] - Fp16ToFloat(zero_bits)) / levels);
            if (!Fp16IsFinite(zero_bits) || !Fp16IsFinite(scale_bits))
              return absl::InvalidArgumentError(absl::StrCat(
                  "kivi: values in [", lo[g], ", ", hi[g], "] at layer ", layer,
                  ", tensor ", tensor, ", head ", head,
                  " exceed the fp16 range of scale and zero point"));
            // Quantize with the stored (rounded) parameters, which are what
            // the decoder will use.
            zero[g] = Fp16ToFloat(zero_bits);
            scale[g] = std::max(0.0f, Fp16ToFloat(scale_bits));
            AppendLe16(out, scale[g] > 0 ? scale_bits : 0);
            AppendLe16(out, zero_bits);
          }
          for (uint32_t t = 0; t < tokens; ++t) {
            for (uint32_t c = 0; c < d; ++c) {
              const size_t g = GroupOf(layout, tensor, t, c);
              float q = 0;
              if (scale[g] > 0)
                q = std::clamp(
                    std::nearbyint((values[size_t{t} * d + c] - zero[g]) /
                                   scale[g]),
                    0.0f, levels);
              writer.Write(static_cast<uint32_t>(q), bits_);
            }
          }
        }
      }
    }
  }
  out.append(codes);
  if (out.size() - start != TotalBytes(chunk))
    return absl::InternalError("kivi: encoded size does not match the plan");
  SealPayload(start, out);
  return absl::OkStatus();
}

absl::Status KiviCodec::Decode(const ChunkInfo& chunk, std::string_view encoded,
                               std::span<std::byte> out) const {
  if (absl::Status s =
          CheckChunkBuffer("kivi", chunk, "output buffer", out.size());
      !s.ok())
    return s;
  if (absl::Status s = CheckPayload("kivi", encoded, kFormatVersion, bits_,
                                    TotalBytes(chunk));
      !s.ok())
    return s;
  const KvLayout& layout = *chunk.layout;
  const uint32_t d = layout.head_dim;
  const uint32_t tokens = chunk.num_tokens;

  const char* params = encoded.data() + kPayloadHeaderBytes;
  BitReader reader(encoded.substr(kPayloadHeaderBytes + ParamBytes(chunk)));
  std::vector<float> values(size_t{tokens} * d);
  std::vector<float> scale, zero;
  size_t slot = 0;
  for (uint32_t layer = 0; layer < layout.num_layers; ++layer) {
    for (uint32_t tensor = 0; tensor < layout.tensors_per_layer(); ++tensor) {
      for (uint32_t head = 0; head < layout.num_kv_heads; ++head, ++slot) {
        const size_t groups = GroupsPerSlot(layout, tensor, tokens);
        scale.resize(groups);
        zero.resize(groups);
        for (size_t g = 0; g < groups; ++g, params += 4) {
          const uint16_t scale_bits = ReadLe16(params);
          const uint16_t zero_bits = ReadLe16(params + 2);
          if (!Fp16IsFinite(scale_bits) || !Fp16IsFinite(zero_bits) ||
              (scale_bits & 0x8000))
            return absl::DataLossError(
                absl::StrCat("kivi: invalid scale or zero point at layer ",
                             layer, ", tensor ", tensor, ", head ", head));
          scale[g] = Fp16ToFloat(scale_bits);
          zero[g] = Fp16ToFloat(zero_bits);
        }
        for (uint32_t t = 0; t < tokens; ++t) {
          for (uint32_t c = 0; c < d; ++c) {
            const size_t g = GroupOf(layout, tensor, t, c);
            values[size_t{t} * d + c] =
                zero[g] + static_cast<float>(reader.Read(bits_)) * scale[g];
          }
        }
        StoreElements(layout.dtype, values, slot * values.size(), out);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Codec>> CreateKiviCodec(
    std::string_view params, const ModelContext& model) {
  int bits = 0;
  if (!absl::SimpleAtoi(absl::string_view(params.data(), params.size()),
                        &bits) ||
      bits < 1 || bits > 8)
    return absl::InvalidArgumentError(
        absl::StrCat("codec 'kivi' wants an integer bit width in [1, 8], got '",
                     std::string(params), "'"));
  return std::make_unique<KiviCodec>(bits);
}

}  // namespace seqkv
