// The header that turbo and kivi payloads start with: format version (u8),
// the codec's bits field (u8), and a 32-bit checksum (LE) of everything after
// the header, so that decoders report corruption as DATA_LOSS instead of
// silently returning wrong values (a fixed-rate payload has no redundancy of
// its own to catch a flipped bit).
#ifndef SEQKV_CODEC_TURBO_PAYLOAD_HEADER_H_
#define SEQKV_CODEC_TURBO_PAYLOAD_HEADER_H_

#include <xxhash.h>
#if defined(__x86_64__)
// XXH3 of large buffers through the library's run-time dispatch (AVX2 or
// AVX-512 where the CPU has them; the same hashes).
#include <xxh_x86dispatch.h>
#endif

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "codec/codec.h"

namespace seqkv {

inline constexpr size_t kPayloadHeaderBytes = 6;

inline uint32_t ChunkChecksum(std::string_view bytes) {
  return static_cast<uint32_t>(XXH3_64bits(bytes.data(), bytes.size()));
}

// Appends a header whose checksum SealPayload fills in later.
void AppendPayloadHeader(uint8_t version, uint8_t bits_field, std::string& out);
// Writes the checksum of the payload that starts at `start` in `out`.
void SealPayload(size_t start, std::string& out);

// The checks every Encode and Decode of these codecs start with, naming
// `codec` (its spec) in messages: the chunk has a valid layout and `buffer`
// (the input chunk, or the output buffer) holds exactly the chunk's bytes
// (INVALID_ARGUMENT).
absl::Status CheckChunkBuffer(std::string_view codec, const ChunkInfo& chunk,
                              std::string_view buffer_name,
                              size_t buffer_bytes);
// A payload has this version and bits field, `expected_size` bytes and a
// matching checksum (else DATA_LOSS).
absl::Status CheckPayload(std::string_view codec, std::string_view encoded,
                          uint8_t version, uint8_t bits_field,
                          size_t expected_size);

}  // namespace seqkv

#endif  // SEQKV_CODEC_TURBO_PAYLOAD_HEADER_H_
