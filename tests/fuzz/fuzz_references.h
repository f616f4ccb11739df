// A fixed small set of reference rows (ChunkInfo::references) for the
// decoders' fuzz targets: payloads coded against references, and any fuzz
// bytes, are decoded against these.
#ifndef SEQKV_TESTS_FUZZ_FUZZ_REFERENCES_H_
#define SEQKV_TESTS_FUZZ_FUZZ_REFERENCES_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "codec/float_bits.h"
#include "codec/kv_layout.h"

namespace seqkv::testing {

struct FuzzReferences {
  std::vector<std::byte> source;
  ChunkReferences references;
};

// One source of tokens + 3 tokens at position 1000 with deterministic
// finite values; runs [1, 1 + tokens / 2) from source token 2 and, where
// there is room, the rest but the last token from source token 0. Null for
// chunks under 2 tokens.
inline std::unique_ptr<FuzzReferences> MakeFuzzReferences(
    const KvLayout& layout, uint32_t tokens) {
  if (tokens < 2) return nullptr;
  auto f = std::make_unique<FuzzReferences>();
  const uint32_t source_tokens = tokens + 3;
  const size_t elements = layout.elements_per_token() * source_tokens;
  const size_t size = DTypeSize(layout.dtype);
  f->source.resize(elements * size);
  uint32_t state = 12345;
  for (size_t i = 0; i < elements; ++i) {
    state = state * 1664525u + 1013904223u;
    const float value = static_cast<float>(state >> 8) / (1 << 23) - 1.0f;
    if (size == 4) {
      std::memcpy(&f->source[i * 4], &value, 4);
    } else {
      const uint16_t bits = layout.dtype == DType::kBF16 ? FloatToBf16(value)
                                                         : FloatToFp16(value);
      std::memcpy(&f->source[i * 2], &bits, 2);
    }
  }
  f->references.sources.push_back(
      ReferenceSource{source_tokens, 1000, f->source});
  const uint32_t first = tokens / 2;
  f->references.runs.push_back(ReferenceRun{1, first, 0, 2});
  if (tokens > first + 2)
    f->references.runs.push_back(
        ReferenceRun{first + 1, tokens - first - 2, 0, 0});
  return f;
}

}  // namespace seqkv::testing

#endif  // SEQKV_TESTS_FUZZ_FUZZ_REFERENCES_H_
