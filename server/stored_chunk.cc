#include "server/stored_chunk.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/chunk_layout.h"

namespace seqkv {
namespace {

std::span<const int32_t> Span(
    const google::protobuf::RepeatedField<int32_t>& r) {
  return {r.data(), static_cast<size_t>(r.size())};
}

// A codec's error is damage: the payload does not decode.
absl::Status Decoded(const absl::Status& status) {
  if (status.ok()) return status;
  return absl::DataLossError(
      absl::StrCat("its payload does not decode: ", status.message()));
}

absl::Status Corrupt(std::string_view what) {
  return absl::DataLossError(
      absl::StrCat("the chunk's references are corrupt: ", std::string(what)));
}

}  // namespace

ChunkInfo CodedPart(const KvLayout& layout, const NodeRecord& record,
                    const ChunkReferences* references) {
  const uint32_t copied = record.copied_tokens();
  const auto tokens = Span(record.tokens()).subspan(copied);
  return ChunkInfo{&layout, static_cast<uint32_t>(tokens.size()),
                   record.first_position() + copied, tokens, references};
}

namespace {

absl::StatusOr<DecodedReferences> DecodeReferencesAt(
    const ChunkDecoding& tools, const std::shared_ptr<const Model>& model,
    const NodeRecord& record, uint32_t depth);

absl::Status DecodeAt(const ChunkDecoding& tools,
                      const std::shared_ptr<const Model>& model,
                      const Codec& codec, const NodeRecord& record,
                      std::string_view payload, std::span<std::byte> out,
                      uint32_t depth) {
  const KvLayout& layout = model->context.layout;
  const uint32_t num_tokens = static_cast<uint32_t>(record.tokens_size());
  if (out.size() != size_t{num_tokens} * layout.bytes_per_token())
    return absl::DataLossError("a chunk's tokens do not match its bytes");
  if (!HasReferences(record)) {
    const ChunkInfo info{&layout, num_tokens, record.first_position(),
                         Span(record.tokens())};
    return Decoded(codec.Decode(info, payload, out));
  }
  if (!codec.codes_against_references())
    return Corrupt(absl::StrCat("codec '", codec.spec(),
                                "' does not code against references"));
  auto references = DecodeReferencesAt(tools, model, record, depth);
  if (!references.ok()) return references.status();
  const uint32_t copied = record.copied_tokens();
  const ChunkInfo part = CodedPart(layout, record, &references->references);
  if (copied == 0) return Decoded(codec.Decode(part, payload, out));
  // The head is the first referenced chunk's; the payload holds the rest.
  auto rest = tools.buffers->Acquire(part.num_bytes(), "a chunk's coded part");
  if (!rest.ok()) return rest.status();
  if (auto status = codec.Decode(part, payload, rest->bytes()); !status.ok())
    return Decoded(status);
  const ReferenceSource& head = references->references.sources[0];
  CopyChunkTokens(layout, head.data, head.num_tokens, 0, out, num_tokens, 0,
                  copied);
  CopyChunkTokens(layout, rest->bytes(), part.num_tokens, 0, out, num_tokens,
                  copied, part.num_tokens);
  return absl::OkStatus();
}

// Reads and decodes the chunk `record` names into `out`.
absl::Status ReadAndDecodeAt(const ChunkDecoding& tools,
                             const std::shared_ptr<const Model>& model,
                             const NodeRecord& record, std::span<std::byte> out,
                             uint32_t depth) {
  if (depth > kMaxReferenceDepth)
    return Corrupt("references nest deeper than chunks are ever coded");
  auto codec = tools.codecs->CodecForChunk(model, record.codec(),
                                           record.codec_state_version());
  if (!codec.ok())
    return absl::DataLossError(
        absl::StrCat("a referenced chunk's codec '", record.codec(),
                     "' cannot be built: ", codec.status().message()));
  if (record.tokens_only() || record.payload_token_major() ||
      (*codec)->stores_chunk_verbatim())
    return Corrupt("a referenced chunk has no payload a codec decodes");
  // Codes kept: DATA_LOSS is damage, others (a store reopening, memory)
  // are not.
  auto payload = tools.trie->ReadPayload(record);
  if (!payload.ok())
    return absl::Status(payload.status().code(),
                        absl::StrCat("a referenced chunk's payload: ",
                                     payload.status().message()));
  if (auto status =
          DecodeAt(tools, model, **codec, record, payload->view(), out, depth);
      !status.ok())
    return absl::Status(status.code(),
                        absl::StrCat("a referenced chunk: ", status.message()));
  return absl::OkStatus();
}

absl::StatusOr<DecodedReferences> DecodeReferencesAt(
    const ChunkDecoding& tools, const std::shared_ptr<const Model>& model,
    const NodeRecord& record, uint32_t depth) {
  const KvLayout& layout = model->context.layout;
  const uint32_t num_tokens = static_cast<uint32_t>(record.tokens_size());
  const uint32_t copied = record.copied_tokens();
  if (copied > num_tokens ||
      (copied > 0 &&
       (record.references_size() == 0 ||
        copied > static_cast<uint32_t>(
                     record.references(0).record().tokens_size()))))
    return Corrupt("the copied head does not fit");
  DecodedReferences decoded;
  for (const auto& reference : record.references()) {
    const NodeRecord& source = reference.record();
    const uint32_t tokens = static_cast<uint32_t>(source.tokens_size());
    const size_t bytes = size_t{tokens} * layout.bytes_per_token();
    std::shared_ptr<ChunkBuffer> chunk =
        tools.cache != nullptr ? tools.cache->Find(source) : nullptr;
    if (chunk == nullptr || chunk->bytes().size() != bytes) {
      auto buffer = tools.buffers->Acquire(bytes, "a referenced chunk");
      if (!buffer.ok()) return buffer.status();
      if (auto status =
              ReadAndDecodeAt(tools, model, source, buffer->bytes(), depth + 1);
          !status.ok())
        return status;
      chunk = std::make_shared<ChunkBuffer>(*std::move(buffer));
      if (tools.cache != nullptr) tools.cache->Insert(source, chunk);
    }
    decoded.references.sources.push_back(
        {tokens, source.first_position(), chunk->bytes()});
    decoded.sources.push_back(std::move(chunk));
  }
  for (const auto& run : record.reference_runs()) {
    if (run.reference() >= decoded.references.sources.size() ||
        run.token() < copied || run.num_tokens() == 0 ||
        uint64_t{run.token()} + run.num_tokens() > num_tokens ||
        uint64_t{run.source_token()} + run.num_tokens() >
            decoded.references.sources[run.reference()].num_tokens)
      return Corrupt("a run is out of range");
    decoded.references.runs.push_back({run.token() - copied, run.num_tokens(),
                                       run.reference(), run.source_token()});
  }
  return decoded;
}

}  // namespace

absl::StatusOr<DecodedReferences> DecodeReferences(
    const ChunkDecoding& tools, const std::shared_ptr<const Model>& model,
    const NodeRecord& record) {
  return DecodeReferencesAt(tools, model, record, 0);
}

absl::Status DecodeStoredChunk(const ChunkDecoding& tools,
                               const std::shared_ptr<const Model>& model,
                               const Codec& codec, const NodeRecord& record,
                               std::string_view payload,
                               std::span<std::byte> out) {
  return DecodeAt(tools, model, codec, record, payload, out, 0);
}

}  // namespace seqkv
