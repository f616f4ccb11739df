#include "server/chunk_layout.h"

#include <cstring>

namespace seqkv {
namespace {

// Rows are (layer, tensor, head) triples; each holds head_dim elements per
// token in both orders, so the copy is a transpose of [rows][tokens] blocks.
size_t RowsPerToken(const KvLayout& layout) {
  return size_t{layout.num_layers} * layout.tensors_per_layer() *
         layout.num_kv_heads;
}

}  // namespace

void ScatterTokens(const KvLayout& layout, uint32_t num_tokens, uint32_t first,
                   uint32_t count, std::span<const std::byte> token_major,
                   std::span<std::byte> chunk) {
  const size_t rows = RowsPerToken(layout);
  const size_t vector = size_t{layout.head_dim} * DTypeSize(layout.dtype);
  const std::byte* from = token_major.data();
  for (size_t t = first; t < size_t{first} + count; ++t)
    for (size_t r = 0; r < rows; ++r, from += vector)
      std::memcpy(chunk.data() + (r * num_tokens + t) * vector, from, vector);
}

void ChunkToTokenMajor(const KvLayout& layout, uint32_t num_tokens,
                       std::span<const std::byte> chunk, uint32_t begin,
                       uint32_t end, std::span<std::byte> out) {
  const size_t rows = RowsPerToken(layout);
  const size_t vector = size_t{layout.head_dim} * DTypeSize(layout.dtype);
  std::byte* to = out.data();
  for (size_t t = begin; t < end; ++t)
    for (size_t r = 0; r < rows; ++r, to += vector)
      std::memcpy(to, chunk.data() + (r * num_tokens + t) * vector, vector);
}

void CopyChunkTokens(const KvLayout& layout, std::span<const std::byte> source,
                     uint32_t source_tokens, uint32_t from,
                     std::span<std::byte> target, uint32_t target_tokens,
                     uint32_t to, uint32_t count) {
  const size_t rows = RowsPerToken(layout);
  const size_t vector = size_t{layout.head_dim} * DTypeSize(layout.dtype);
  for (size_t r = 0; r < rows; ++r)
    std::memcpy(target.data() + (r * target_tokens + to) * vector,
                source.data() + (r * source_tokens + from) * vector,
                count * vector);
}

}  // namespace seqkv
