// "lossless": bit-exact predictive coding of KV chunks (see
// lossless_codec_stream.h for the model and docs/CODECS.md for the format).
#include "codec/lossless_codec.h"

#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/lossless_codec_stream.h"

namespace seqkv {
namespace {

constexpr uint8_t kFormatVersion = 2;
constexpr uint8_t kFlagRope = 1;       // RoPE step table follows the header
constexpr uint8_t kFlagTokenRows = 2;  // layer-0 rows predicted by token id
constexpr uint8_t kKnownFlags = kFlagRope | kFlagTokenRows;

void PutVarint(uint64_t value, std::string& out) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

bool GetVarint(std::string_view& in, uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    value |= uint64_t{byte & 0x7Fu} << shift;
    if (!(byte & 0x80)) return true;
  }
  return false;
}

void PutFloat(float value, std::string& out) {
  char bytes[4];
  std::memcpy(bytes, &value, 4);
  out.append(bytes, 4);
}

// Covers the payload as well as the data it decodes to, so that every
// change to a payload is caught, even one that would still decode to the
// same values (a slack bit in a range coder's last byte, a RoPE table entry
// too close to the original to move any prediction).
uint32_t Checksum(std::string_view payload, std::span<const std::byte> data) {
  const uint64_t seed = XXH3_64bits(payload.data(), payload.size());
  return static_cast<uint32_t>(
      XXH3_64bits_withSeed(data.data(), data.size(), seed));
}

// The channel pairs that RoPE rotates together, or none.
lossless::RopePairs RopePairsFor(const KvLayout& layout) {
  lossless::RopePairs pairs;
  if (layout.latent || layout.rope.style == RopeStyle::kNone) return pairs;
  const uint32_t rotary =
      layout.rope.rotary_dim == 0 ? layout.head_dim : layout.rope.rotary_dim;
  const uint32_t half = rotary / 2;
  for (uint32_t i = 0; i < half; ++i) {
    if (layout.rope.style == RopeStyle::kRotateHalf) {
      pairs.first.push_back(i);
      pairs.second.push_back(i + half);
    } else {
      pairs.first.push_back(2 * i);
      pairs.second.push_back(2 * i + 1);
    }
  }
  return pairs;
}

class LosslessCodec final : public Codec {
 public:
  std::string spec() const override { return "lossless"; }
  bool lossless() const override { return true; }

  absl::Status Encode(const ChunkInfo& chunk, std::span<const std::byte> data,
                      std::string& out) const override {
    if (data.size() != chunk.num_bytes())
      return absl::InvalidArgumentError(
          absl::StrCat("lossless: chunk has ", data.size(), " bytes, expected ",
                       chunk.num_bytes()));
    const KvLayout& layout = *chunk.layout;
    lossless::RopePairs rope = RopePairsFor(layout);
    const bool token_rows = chunk.tokens.size() == chunk.num_tokens;
    uint8_t flags = 0;
    if (!rope.empty()) flags |= kFlagRope;
    if (token_rows) flags |= kFlagTokenRows;
    const size_t start = out.size();
    out.push_back(static_cast<char>(kFormatVersion));
    out.push_back(static_cast<char>(flags));
    // The rotation per position, as the decoder will use it (fp32), so that
    // decoding never depends on a math library's cos and sin.
    const uint32_t rotary = rope.first.size() * 2;
    for (uint32_t i = 0; i < rope.first.size(); ++i) {
      const double theta =
          std::pow(layout.rope.theta, -2.0 * i / static_cast<double>(rotary));
      const float c = static_cast<float>(std::cos(theta));
      const float s = static_cast<float>(std::sin(theta));
      PutFloat(c, out);
      PutFloat(s, out);
      rope.cos.push_back(c);
      rope.sin.push_back(s);
    }
    std::vector<std::string> streams(layout.num_layers *
                                     layout.tensors_per_layer());
    ForEachStream(chunk, rope, token_rows,
                  [&](size_t index, const lossless::StreamSpec& spec,
                      size_t offset, size_t bytes) {
                    lossless::EncodeStream(spec, data.subspan(offset, bytes),
                                           streams[index]);
                  });
    for (const std::string& stream : streams) PutVarint(stream.size(), out);
    for (const std::string& stream : streams) out += stream;
    const uint32_t checksum =
        Checksum(std::string_view(out).substr(start), data);
    char bytes[4];
    std::memcpy(bytes, &checksum, 4);
    out.append(bytes, 4);
    return absl::OkStatus();
  }

  absl::Status Decode(const ChunkInfo& chunk, std::string_view encoded,
                      std::span<std::byte> out) const override {
    if (out.size() != chunk.num_bytes())
      return absl::InternalError("lossless: output buffer has the wrong size");
    const KvLayout& layout = *chunk.layout;
    if (encoded.size() < 2 + 4)
      return absl::DataLossError("lossless: payload too short");
    if (static_cast<uint8_t>(encoded[0]) != kFormatVersion)
      return absl::DataLossError(absl::StrCat(
          "lossless: unknown format version ", static_cast<uint8_t>(encoded[0]),
          " (expected ", kFormatVersion, ")"));
    const uint8_t flags = static_cast<uint8_t>(encoded[1]);
    uint32_t stored_checksum;
    std::memcpy(&stored_checksum, encoded.data() + encoded.size() - 4, 4);
    std::string_view in = encoded.substr(2, encoded.size() - 2 - 4);
    if (flags & ~kKnownFlags)
      return absl::DataLossError("lossless: unknown header flags");
    lossless::RopePairs rope = RopePairsFor(layout);
    if (((flags & kFlagRope) != 0) != !rope.empty())
      return absl::DataLossError(
          "lossless: RoPE flag does not match the layout");
    const bool token_rows = (flags & kFlagTokenRows) != 0;
    if (token_rows && chunk.tokens.size() != chunk.num_tokens)
      return absl::DataLossError(
          "lossless: payload needs the chunk's token ids, none given");
    if (in.size() < rope.first.size() * 8)
      return absl::DataLossError("lossless: truncated RoPE table");
    for (size_t i = 0; i < rope.first.size(); ++i) {
      float c, s;
      std::memcpy(&c, in.data(), 4);
      std::memcpy(&s, in.data() + 4, 4);
      in.remove_prefix(8);
      const double norm = double{c} * c + double{s} * s;
      if (!(norm > 0.999 && norm < 1.001))
        return absl::DataLossError("lossless: bad RoPE table entry");
      rope.cos.push_back(c);
      rope.sin.push_back(s);
    }
    const size_t num_streams =
        size_t{layout.num_layers} * layout.tensors_per_layer();
    std::vector<std::string_view> streams(num_streams);
    std::vector<uint64_t> sizes(num_streams);
    for (uint64_t& size : sizes)
      if (!GetVarint(in, size))
        return absl::DataLossError("lossless: truncated stream table");
    for (size_t i = 0; i < num_streams; ++i) {
      if (sizes[i] > in.size())
        return absl::DataLossError(absl::StrCat(
            "lossless: stream ", i, " runs past the end of the payload"));
      streams[i] = in.substr(0, sizes[i]);
      in.remove_prefix(sizes[i]);
    }
    if (!in.empty())
      return absl::DataLossError("lossless: trailing bytes after the streams");
    absl::Status status;
    ForEachStream(chunk, rope, token_rows,
                  [&](size_t index, const lossless::StreamSpec& spec,
                      size_t offset, size_t bytes) {
                    if (!status.ok()) return;
                    status = lossless::DecodeStream(spec, streams[index],
                                                    out.subspan(offset, bytes));
                    if (!status.ok())
                      status = absl::DataLossError(absl::StrCat(
                          "lossless: stream ", index, ": ", status.message()));
                  });
    if (!status.ok()) return status;
    if (Checksum(encoded.substr(0, encoded.size() - 4), out) !=
        stored_checksum)
      return absl::DataLossError("lossless: checksum mismatch");
    return absl::OkStatus();
  }

 private:
  // Calls fn(index, spec, byte offset, byte size) for each (layer, tensor).
  template <typename Fn>
  static void ForEachStream(const ChunkInfo& chunk,
                            const lossless::RopePairs& rope, bool token_rows,
                            Fn fn) {
    const KvLayout& layout = *chunk.layout;
    const size_t width = DTypeSize(layout.dtype);
    size_t index = 0;
    for (uint32_t layer = 0; layer < layout.num_layers; ++layer) {
      for (uint32_t tensor = 0; tensor < layout.tensors_per_layer(); ++tensor) {
        lossless::StreamSpec spec;
        spec.format = lossless::FloatFormat::For(layout.dtype);
        spec.heads = layout.num_kv_heads;
        spec.tokens = chunk.num_tokens;
        spec.dim = layout.head_dim;
        // Only keys carry RoPE; a latent tensor is left unrotated.
        if (tensor == 0 && !rope.empty()) spec.rope = &rope;
        if (layer == 0 && token_rows) spec.token_ids = chunk.tokens;
        const size_t offset = chunk.RowOffset(layer, tensor, 0, 0) * width;
        fn(index++, spec, offset, spec.num_elements() * width);
      }
    }
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Codec>> CreateLosslessCodec(
    std::string_view params, const ModelContext& model) {
  if (!params.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("codec 'lossless' takes no parameters, got '",
                     std::string(params), "'"));
  return std::make_unique<LosslessCodec>();
}

}  // namespace seqkv
