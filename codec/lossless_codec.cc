// "lossless": bit-exact predictive coding of KV chunks (see
// lossless_codec_stream.h for the model and docs/CODECS.md for the format).
#include "codec/lossless_codec.h"

#include <xxhash.h>
#if defined(__x86_64__)
// XXH3 of large buffers through the library's run-time dispatch (AVX2 or
// AVX-512 where the CPU has them; the same hashes).
#include <xxh_x86dispatch.h>
#endif

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/float_bits.h"
#include "codec/lossless_chunk_coder.h"
#include "codec/lossless_codec_stream.h"
#include "codec/predictive/references.h"

namespace seqkv {
namespace {

// Format 3 (lossless_chunk_coder.h) is written; format 2 (one adaptive
// range-coded stream per layer and tensor, lossless_codec_stream.h) is still
// read, so chunks stored before stay readable.
constexpr uint8_t kFormatVersion = 3;
constexpr uint8_t kRangeCodedVersion = 2;
// Format 4, written only for chunks with reference runs: format 3's header,
// then a u64 digest of the references (predictive/references.h), the body
// with the runs' rows coded against their sources' rows, and a u64 checksum
// in place of the u32 (see Checksum64).
constexpr uint8_t kReferencesVersion = 4;
constexpr uint8_t kFlagRope = 1;        // RoPE step table follows the header
constexpr uint8_t kFlagTokenRows = 2;   // layer-0 rows predicted by token id
constexpr uint8_t kFlagTokenTable = 4;  // ... and from the model's table
constexpr uint8_t kKnownFlags = kFlagRope | kFlagTokenRows | kFlagTokenTable;

// The model state blob with every token's layer-0 K (before RoPE) and V:
// "SKVL0TB1" | u32 vocab | u32 num_kv_heads | u32 head_dim | u32 0 |
// K bf16 [vocab][num_kv_heads][head_dim] | V likewise, little-endian.
constexpr std::string_view kLayer0StateKey = "layer0";
constexpr std::string_view kLayer0Magic = "SKVL0TB1";

class Layer0Rows {
 public:
  // Null when the blob is not a table for this layout: the codec then
  // simply does without.
  static std::unique_ptr<Layer0Rows> Parse(std::string_view blob,
                                           const KvLayout& layout) {
    if (layout.latent || blob.size() < 24 || blob.substr(0, 8) != kLayer0Magic)
      return nullptr;
    uint32_t header[4];
    std::memcpy(header, blob.data() + 8, 16);
    const uint64_t row_values = uint64_t{header[1]} * header[2];
    if (header[1] != layout.num_kv_heads || header[2] != layout.head_dim ||
        header[3] != 0 || header[0] == 0 ||
        blob.size() != 24 + 2 * 2 * row_values * header[0])
      return nullptr;
    auto rows = std::unique_ptr<Layer0Rows>(new Layer0Rows());
    rows->vocab_ = header[0];
    rows->head_dim_ = header[2];
    rows->row_values_ = row_values;
    rows->values_.resize(2 * row_values * header[0]);
    std::memcpy(rows->values_.data(), blob.data() + 24, blob.size() - 24);
    rows->hash_ = static_cast<uint32_t>(XXH3_64bits(blob.data(), blob.size()));
    return rows;
  }

  uint32_t hash() const { return hash_; }
  // The rows of K (tensor 0) or V (tensor 1).
  const lossless::TokenRowSource* ForTensor(uint32_t tensor) const {
    return &tensors_[tensor];
  }

 private:
  class Tensor final : public lossless::TokenRowSource {
   public:
    bool Row(int32_t token, uint32_t head,
             std::span<double> row) const override {
      if (token < 0 || static_cast<uint32_t>(token) >= table->vocab_)
        return false;
      const uint16_t* values =
          table->values_.data() + index * table->row_values_ * table->vocab_ +
          static_cast<uint64_t>(token) * table->row_values_ +
          uint64_t{head} * table->head_dim_;
      for (uint32_t d = 0; d < table->head_dim_; ++d)
        row[d] = Bf16ToFloat(values[d]);
      return true;
    }
    const Layer0Rows* table = nullptr;
    uint64_t index = 0;
  };

  Layer0Rows() {
    tensors_[0].table = tensors_[1].table = this;
    tensors_[1].index = 1;
  }

  uint32_t vocab_ = 0;
  uint32_t head_dim_ = 0;
  uint64_t row_values_ = 0;
  uint32_t hash_ = 0;
  std::vector<uint16_t> values_;  // K then V, bf16 bits
  Tensor tensors_[2];
};

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

// Format 4's checksum: XXH3-64 of the decoded chunk seeded with the hash of
// the payload. Predictions from reference rows involve float arithmetic;
// should a decoder machine ever round differently from the encoder's, its
// output fails this check (DATA_LOSS) rather than being served.
uint64_t Checksum64(std::string_view payload, std::span<const std::byte> data) {
  const uint64_t seed = XXH3_64bits(payload.data(), payload.size());
  return XXH3_64bits_withSeed(data.data(), data.size(), seed);
}

// The predictions of a chunk's rows that reference runs cover, for the
// chunk coder: per token whether a run covers it, and predicted values in
// chunk layout (K turned to this chunk's positions). False when a source
// value is not finite.
struct ReferenceRows {
  std::vector<uint8_t> referenced;
  std::vector<float> values;
};

bool PredictReferenceRows(const ChunkInfo& chunk, ReferenceRows& rows) {
  const KvLayout& layout = *chunk.layout;
  const predictive::ReferencePredictor predictor(chunk, layout);
  rows.referenced.assign(chunk.num_tokens, 0);
  rows.values.assign(chunk.num_elements(), 0.0f);
  for (uint32_t t = 0; t < chunk.num_tokens; ++t)
    rows.referenced[t] = predictor.run_of(t) >= 0;
  for (uint32_t layer = 0; layer < layout.num_layers; ++layer)
    for (uint32_t tensor = 0; tensor < layout.tensors_per_layer(); ++tensor)
      for (uint32_t h = 0; h < layout.num_kv_heads; ++h)
        for (uint32_t t = 0; t < chunk.num_tokens; ++t)
          if (rows.referenced[t] &&
              !predictor.Predict(
                  layer, tensor, h, t, /*pre_rope=*/false,
                  &rows.values[chunk.RowOffset(layer, tensor, h, t)]))
            return false;
  return true;
}

void PutU64(uint64_t value, std::string& out) {
  char bytes[8];
  std::memcpy(bytes, &value, 8);
  out.append(bytes, 8);
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
  explicit LosslessCodec(std::unique_ptr<Layer0Rows> layer0)
      : layer0_(std::move(layer0)) {}

  std::string spec() const override { return "lossless"; }
  bool lossless() const override { return true; }
  bool codes_against_references() const override { return true; }

  absl::Status Encode(const ChunkInfo& chunk, std::span<const std::byte> data,
                      std::string& out) const override {
    if (data.size() != chunk.num_bytes())
      return absl::InvalidArgumentError(
          absl::StrCat("lossless: chunk has ", data.size(), " bytes, expected ",
                       chunk.num_bytes()));
    const KvLayout& layout = *chunk.layout;
    const bool references = predictive::HasReferenceRuns(chunk);
    ReferenceRows reference_rows;
    if (references) {
      if (std::string problem = predictive::CheckReferences(chunk, layout);
          !problem.empty())
        return absl::InvalidArgumentError(absl::StrCat("lossless: ", problem));
      if (!PredictReferenceRows(chunk, reference_rows))
        return absl::InvalidArgumentError(
            "lossless: a reference source row is not finite");
    }
    lossless::RopePairs rope = RopePairsFor(layout);
    const bool token_rows = chunk.tokens.size() == chunk.num_tokens;
    uint8_t flags = 0;
    if (!rope.empty()) flags |= kFlagRope;
    if (token_rows) flags |= kFlagTokenRows;
    const Layer0Rows* table = token_rows ? layer0_.get() : nullptr;
    if (table != nullptr) flags |= kFlagTokenTable;
    const size_t start = out.size();
    // Real caches code to about half their size: one allocation, mostly.
    out.reserve(start + data.size() * 5 / 8 + 4096);
    out.push_back(
        static_cast<char>(references ? kReferencesVersion : kFormatVersion));
    out.push_back(static_cast<char>(flags));
    if (table != nullptr) {
      // Which table: decoding with another one would fail the checksum.
      const uint32_t hash = table->hash();
      char bytes[4];
      std::memcpy(bytes, &hash, 4);
      out.append(bytes, 4);
    }
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
    if (references) PutU64(predictive::ReferenceDigest(chunk), out);
    const std::vector<lossless::ChunkStream> streams = Streams(
        chunk, rope, token_rows, table, references ? &reference_rows : nullptr);
    lossless::EncodeChunkStreams(streams, data, references, out);
    if (references) {
      PutU64(Checksum64(std::string_view(out).substr(start), data), out);
      return absl::OkStatus();
    }
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
    const uint8_t version = static_cast<uint8_t>(encoded[0]);
    if (version != kFormatVersion && version != kRangeCodedVersion &&
        version != kReferencesVersion)
      return absl::DataLossError(
          absl::StrCat("lossless: unknown format version ", version,
                       " (expected ", kRangeCodedVersion, ", ", kFormatVersion,
                       " or ", kReferencesVersion, ")"));
    const bool references = version == kReferencesVersion;
    const size_t checksum_size = references ? 8 : 4;
    if (encoded.size() < 2 + checksum_size)
      return absl::DataLossError("lossless: payload too short");
    const uint8_t flags = static_cast<uint8_t>(encoded[1]);
    uint32_t stored_checksum = 0;
    uint64_t stored_checksum64 = 0;
    if (references)
      std::memcpy(&stored_checksum64, encoded.data() + encoded.size() - 8, 8);
    else
      std::memcpy(&stored_checksum, encoded.data() + encoded.size() - 4, 4);
    std::string_view in = encoded.substr(2, encoded.size() - 2 - checksum_size);
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
    const Layer0Rows* table = nullptr;
    if (flags & kFlagTokenTable) {
      if (!token_rows || in.size() < 4)
        return absl::DataLossError("lossless: bad layer-0 table reference");
      uint32_t hash;
      std::memcpy(&hash, in.data(), 4);
      in.remove_prefix(4);
      if (layer0_ == nullptr || layer0_->hash() != hash)
        return absl::FailedPreconditionError(
            "lossless: payload was coded with a layer-0 table (codec state "
            "'layer0') that this model does not have");
      table = layer0_.get();
    }
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
    ReferenceRows reference_rows;
    if (references) {
      // Coded against references: only the same ones decode it (a payload
      // of format 2 or 3 ignores any given).
      if (!predictive::HasReferenceRuns(chunk))
        return absl::DataLossError(
            "lossless: payload was coded against reference rows, none given");
      if (std::string problem = predictive::CheckReferences(chunk, layout);
          !problem.empty())
        return absl::DataLossError(absl::StrCat("lossless: ", problem));
      uint64_t digest;
      if (in.size() < 8)
        return absl::DataLossError("lossless: truncated reference digest");
      std::memcpy(&digest, in.data(), 8);
      in.remove_prefix(8);
      if (digest != predictive::ReferenceDigest(chunk))
        return absl::DataLossError(
            "lossless: payload was coded against other reference rows");
      if (!PredictReferenceRows(chunk, reference_rows))
        return absl::DataLossError(
            "lossless: a reference source row is not finite");
    }
    absl::Status status;
    if (version != kRangeCodedVersion) {
      const std::vector<lossless::ChunkStream> streams =
          Streams(chunk, rope, token_rows, table,
                  references ? &reference_rows : nullptr);
      status = lossless::DecodeChunkStreams(streams, in, references, out);
    } else {
      status = DecodeRangeCoded(chunk, rope, token_rows, table, in, out);
    }
    if (!status.ok()) return status;
    if (references) {
      if (Checksum64(encoded.substr(0, encoded.size() - 8), out) !=
          stored_checksum64)
        return absl::DataLossError("lossless: checksum mismatch");
      return absl::OkStatus();
    }
    if (Checksum(encoded.substr(0, encoded.size() - 4), out) != stored_checksum)
      return absl::DataLossError("lossless: checksum mismatch");
    return absl::OkStatus();
  }

 private:
  // The streams of formats 3 and 4 (with `reference_rows`).
  static std::vector<lossless::ChunkStream> Streams(
      const ChunkInfo& chunk, const lossless::RopePairs& rope, bool token_rows,
      const Layer0Rows* table, const ReferenceRows* reference_rows) {
    const KvLayout& layout = *chunk.layout;
    std::vector<lossless::ChunkStream> streams;
    ForEachStream(
        chunk, rope, token_rows, table,
        [&](size_t index, const lossless::StreamSpec& spec, size_t offset,
            size_t) {
          lossless::ChunkStream& stream =
              streams.emplace_back(lossless::ChunkStream{
                  spec, offset,
                  static_cast<uint32_t>(index % layout.tensors_per_layer())});
          if (reference_rows != nullptr) {
            stream.referenced = reference_rows->referenced.data();
            stream.reference = reference_rows->values.data() +
                               offset / DTypeSize(layout.dtype);
          }
        });
    return streams;
  }

  // The streams of format 2, each range-coded on its own.
  static absl::Status DecodeRangeCoded(const ChunkInfo& chunk,
                                       const lossless::RopePairs& rope,
                                       bool token_rows, const Layer0Rows* table,
                                       std::string_view in,
                                       std::span<std::byte> out) {
    const KvLayout& layout = *chunk.layout;
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
    ForEachStream(chunk, rope, token_rows, table,
                  [&](size_t index, const lossless::StreamSpec& spec,
                      size_t offset, size_t bytes) {
                    if (!status.ok()) return;
                    status = lossless::DecodeStream(spec, streams[index],
                                                    out.subspan(offset, bytes));
                    if (!status.ok())
                      status = absl::DataLossError(absl::StrCat(
                          "lossless: stream ", index, ": ", status.message()));
                  });
    return status;
  }

  // Calls fn(index, spec, byte offset, byte size) for each (layer, tensor).
  template <typename Fn>
  static void ForEachStream(const ChunkInfo& chunk,
                            const lossless::RopePairs& rope, bool token_rows,
                            const Layer0Rows* table, Fn fn) {
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
        if (layer == 0 && token_rows) {
          spec.token_ids = chunk.tokens;
          if (table != nullptr) spec.token_source = table->ForTensor(tensor);
          spec.first_position = chunk.first_position;
        }
        const size_t offset = chunk.RowOffset(layer, tensor, 0, 0) * width;
        fn(index++, spec, offset, spec.num_elements() * width);
      }
    }
  }

  std::unique_ptr<Layer0Rows> layer0_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Codec>> CreateLosslessCodec(
    std::string_view params, const ModelContext& model) {
  if (!params.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("codec 'lossless' takes no parameters, got '",
                     std::string(params), "'"));
  std::unique_ptr<Layer0Rows> layer0;
  if (const std::string* blob = model.FindState(kLayer0StateKey))
    layer0 = Layer0Rows::Parse(*blob, model.layout);
  return std::make_unique<LosslessCodec>(std::move(layer0));
}

}  // namespace seqkv
