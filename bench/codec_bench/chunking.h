// Cutting a KV cache dump into chunks in codec layout
// ([layer][tensor][kv_head][token][head_dim]), as the server stores them, and
// moving one tensor of a chunk in and out of it for the peer compressors.
#ifndef SEQKV_BENCH_CODEC_BENCH_CHUNKING_H_
#define SEQKV_BENCH_CODEC_BENCH_CHUNKING_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "codec/kv_layout.h"
#include "model/kv_cache.h"

namespace seqkv::bench {

// Tokens [begin, begin + count) of every tensor of `cache`, in codec layout.
std::vector<std::byte> GatherChunk(const KvCache& cache, uint32_t begin,
                                   uint32_t count);

// Tensor `tensor` (0 = K or latent, 1 = V) of a chunk, as
// [layer][kv_head][token][head_dim]; and the way back.
std::vector<std::byte> ExtractTensor(const ChunkInfo& chunk,
                                     std::span<const std::byte> data,
                                     uint32_t tensor);
void InsertTensor(const ChunkInfo& chunk, uint32_t tensor,
                  std::span<const std::byte> part, std::span<std::byte> data);

}  // namespace seqkv::bench

#endif  // SEQKV_BENCH_CODEC_BENCH_CHUNKING_H_
