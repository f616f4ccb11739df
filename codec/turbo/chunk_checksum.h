// A 32-bit checksum over an encoded chunk's payload, so that decoders report
// corruption as DATA_LOSS instead of silently returning wrong values (a
// fixed-rate payload has no redundancy of its own to catch a flipped bit).
#ifndef SEQKV_CODEC_TURBO_CHUNK_CHECKSUM_H_
#define SEQKV_CODEC_TURBO_CHUNK_CHECKSUM_H_

#include <xxhash.h>

#include <cstdint>
#include <string_view>

namespace seqkv {

inline uint32_t ChunkChecksum(std::string_view bytes) {
  return static_cast<uint32_t>(XXH3_64bits(bytes.data(), bytes.size()));
}

}  // namespace seqkv

#endif  // SEQKV_CODEC_TURBO_CHUNK_CHECKSUM_H_
