// Moves KV bytes between the wire's token-major order and the chunk layout
// codecs see ([layer][tensor][head][token][dim]).
#ifndef SEQKV_SERVER_CHUNK_LAYOUT_H_
#define SEQKV_SERVER_CHUNK_LAYOUT_H_

#include <cstddef>
#include <span>

#include "codec/kv_layout.h"

namespace seqkv {

// Writes tokens [first, first + count) of a chunk of `num_tokens` tokens
// from `token_major` (exactly those tokens, in wire order) into `chunk`, so
// that a chunk can be filled as its bytes arrive.
void ScatterTokens(const KvLayout& layout, uint32_t num_tokens, uint32_t first,
                   uint32_t count, std::span<const std::byte> token_major,
                   std::span<std::byte> chunk);

// `token_major` holds `num_tokens` tokens; `chunk` receives them.
inline void TokenMajorToChunk(const KvLayout& layout, uint32_t num_tokens,
                              std::span<const std::byte> token_major,
                              std::span<std::byte> chunk) {
  ScatterTokens(layout, num_tokens, 0, num_tokens, token_major, chunk);
}

// Writes tokens [begin, end) of a chunk of `num_tokens` tokens to `out`
// (exactly their size) in token-major order.
void ChunkToTokenMajor(const KvLayout& layout, uint32_t num_tokens,
                       std::span<const std::byte> chunk, uint32_t begin,
                       uint32_t end, std::span<std::byte> out);

// Copies tokens [from, from + count) of chunk `source` (`source_tokens`
// tokens) to tokens [to, to + count) of chunk `target` (`target_tokens`),
// both in chunk layout.
void CopyChunkTokens(const KvLayout& layout, std::span<const std::byte> source,
                     uint32_t source_tokens, uint32_t from,
                     std::span<std::byte> target, uint32_t target_tokens,
                     uint32_t to, uint32_t count);

}  // namespace seqkv

#endif  // SEQKV_SERVER_CHUNK_LAYOUT_H_
