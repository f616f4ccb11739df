// The digest a client may send for a whole chunk of a prompt instead of its
// token ids (LookupRequest.chunk_digests): XXH3-64 with seed
// kChunkDigestSeed of the chunk's ids as little-endian int32s. The server
// keys its in-memory index by the same function, so it is part of the wire
// API and must never change.
#ifndef SEQKV_PROTO_CHUNK_DIGEST_H_
#define SEQKV_PROTO_CHUNK_DIGEST_H_

#include <cstdint>
#include <span>
#include <string>

namespace seqkv {

inline constexpr uint64_t kChunkDigestSeed = 0x73657170746f6b73;  // "seqptoks"

uint64_t ChunkDigest(std::span<const int32_t> tokens);

// Digests of the whole `chunk_tokens`-token chunks of `tokens`, packed as
// little-endian u64s: the bytes of LookupRequest.chunk_digests.
std::string PackChunkDigests(std::span<const int32_t> tokens,
                             uint32_t chunk_tokens);

}  // namespace seqkv

#endif  // SEQKV_PROTO_CHUNK_DIGEST_H_
