#include "bench/codec_bench/chunking.h"

#include <cstring>

namespace seqkv::bench {

std::vector<std::byte> GatherChunk(const KvCache& cache, uint32_t begin,
                                   uint32_t count) {
  const KvLayout& l = cache.layout;
  const size_t row = size_t{l.head_dim} * DTypeSize(l.dtype);
  const size_t total_tokens = cache.num_tokens();
  std::vector<std::byte> out(l.bytes_per_token() * count);
  std::byte* dst = out.data();
  for (uint32_t layer = 0; layer < l.num_layers; ++layer) {
    for (uint32_t tensor = 0; tensor < l.tensors_per_layer(); ++tensor) {
      const std::vector<std::byte>& src = tensor == 0 ? cache.k : cache.v;
      for (uint32_t head = 0; head < l.num_kv_heads; ++head) {
        const size_t first =
            ((size_t{layer} * l.num_kv_heads + head) * total_tokens + begin) *
            row;
        std::memcpy(dst, src.data() + first, row * count);
        dst += row * count;
      }
    }
  }
  return out;
}

namespace {

// Calls f(offset in chunk, offset in part, bytes) for every contiguous run.
template <typename F>
void ForEachTensorRun(const ChunkInfo& chunk, uint32_t tensor, F f) {
  const KvLayout& l = *chunk.layout;
  const size_t width = DTypeSize(l.dtype);
  const size_t block = size_t{l.num_kv_heads} * chunk.num_tokens * l.head_dim;
  for (uint32_t layer = 0; layer < l.num_layers; ++layer)
    f(chunk.RowOffset(layer, tensor, 0, 0) * width, layer * block * width,
      block * width);
}

}  // namespace

std::vector<std::byte> ExtractTensor(const ChunkInfo& chunk,
                                     std::span<const std::byte> data,
                                     uint32_t tensor) {
  std::vector<std::byte> part(chunk.num_bytes() /
                              chunk.layout->tensors_per_layer());
  ForEachTensorRun(chunk, tensor, [&](size_t from, size_t to, size_t n) {
    std::memcpy(part.data() + to, data.data() + from, n);
  });
  return part;
}

void InsertTensor(const ChunkInfo& chunk, uint32_t tensor,
                  std::span<const std::byte> part, std::span<std::byte> data) {
  ForEachTensorRun(chunk, tensor, [&](size_t to, size_t from, size_t n) {
    std::memcpy(data.data() + to, part.data() + from, n);
  });
}

}  // namespace seqkv::bench
