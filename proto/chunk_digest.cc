#include "proto/chunk_digest.h"

#include <xxhash.h>

#include <bit>
#include <cstring>

namespace seqkv {

static_assert(std::endian::native == std::endian::little,
              "token ids and digests travel as little-endian");

uint64_t ChunkDigest(std::span<const int32_t> tokens) {
  return XXH3_64bits_withSeed(tokens.data(), tokens.size() * sizeof(int32_t),
                              kChunkDigestSeed);
}

std::string PackChunkDigests(std::span<const int32_t> tokens,
                             uint32_t chunk_tokens) {
  std::string packed;
  if (chunk_tokens == 0) return packed;
  const size_t chunks = tokens.size() / chunk_tokens;
  packed.resize(chunks * sizeof(uint64_t));
  for (size_t i = 0; i < chunks; ++i) {
    const uint64_t digest =
        ChunkDigest(tokens.subspan(i * chunk_tokens, chunk_tokens));
    std::memcpy(packed.data() + i * sizeof(uint64_t), &digest,
                sizeof(uint64_t));
  }
  return packed;
}

}  // namespace seqkv
