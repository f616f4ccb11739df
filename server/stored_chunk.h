// Decoding a stored chunk whose payload was coded against chunks stored
// before it (split dedup, cross-prefix residuals): their payloads are read
// and decoded first, then the chunk's own.
#ifndef SEQKV_SERVER_STORED_CHUNK_H_
#define SEQKV_SERVER_STORED_CHUNK_H_

#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "codec/codec.h"
#include "server/chunk_buffer_pool.h"
#include "server/codec_cache.h"
#include "server/decoded_chunk_cache.h"
#include "storage/trie.h"

namespace seqkv {

// A chunk coded against others is that many levels above chunks coded on
// their own at most, so that decoding it decodes at most
// 1 + kMaxSources + kMaxSources^2 chunks (ReferencePlanner).
inline constexpr uint32_t kMaxReferenceDepth = 2;

// Whether decoding `record` needs the chunks it names.
inline bool HasReferences(const NodeRecord& record) {
  return record.references_size() > 0 || record.copied_tokens() > 0;
}

// What a chunk's references are to its codec: each referenced chunk
// decoded, and the runs, in the tokens of the part the payload codes
// (after the copied head).
struct DecodedReferences {
  std::vector<std::shared_ptr<ChunkBuffer>> sources;  // read only
  ChunkReferences references;
};

// The tools the decoding uses; all must outlive the call.
struct ChunkDecoding {
  const Trie* trie = nullptr;
  CodecCache* codecs = nullptr;
  ChunkBufferPool* buffers = nullptr;
  // Referenced chunks decoded lately (null: none kept).
  DecodedChunkCache* cache = nullptr;
};

// Reads and decodes the chunks `record` references (and theirs, at most
// kMaxReferenceDepth levels down). DATA_LOSS when one is missing, damaged,
// or the references do not fit the chunk; other errors keep their codes.
absl::StatusOr<DecodedReferences> DecodeReferences(
    const ChunkDecoding& tools, const std::shared_ptr<const Model>& model,
    const NodeRecord& record);

// The part of `record`'s chunk its payload codes: the tokens after the
// copied head.
ChunkInfo CodedPart(const KvLayout& layout, const NodeRecord& record,
                    const ChunkReferences* references);

// Decodes `record`'s chunk, whose payload is `payload`, into `out` (chunk
// layout, the whole chunk) with its codec `codec`. DATA_LOSS when it or a
// chunk it references is damaged (does not decode, payload missing or
// failing its checksum); other errors (the memory budget, a store that is
// reopening) keep their codes.
absl::Status DecodeStoredChunk(const ChunkDecoding& tools,
                               const std::shared_ptr<const Model>& model,
                               const Codec& codec, const NodeRecord& record,
                               std::string_view payload,
                               std::span<std::byte> out);

}  // namespace seqkv

#endif  // SEQKV_SERVER_STORED_CHUNK_H_
