// A KV cache in the layout inference engines hand out: for each of K and V
// (or the single latent tensor), [layer][kv_head][token][head_dim].
#ifndef SEQKV_MODEL_KV_CACHE_H_
#define SEQKV_MODEL_KV_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "codec/kv_layout.h"
#include "model/safetensors.h"

namespace seqkv {

struct KvCache {
  KvLayout layout;
  std::vector<int32_t> tokens;
  std::vector<std::byte> k;  // the latent tensor for latent layouts
  std::vector<std::byte> v;  // empty for latent layouts

  uint32_t num_tokens() const { return static_cast<uint32_t>(tokens.size()); }
  // Checks that k and v hold exactly the bytes the layout and tokens imply.
  absl::Status Validate() const;

  // Copies tokens [begin, end) of every tensor in token-major wire order
  // ([token][layer][tensor][head][dim]) into `out` (appended).
  void AppendTokenMajor(uint32_t begin, uint32_t end, std::string& out) const;
  // The same into `out`, which holds exactly (end - begin) tokens' bytes.
  void CopyTokenMajor(uint32_t begin, uint32_t end,
                      std::span<std::byte> out) const;
  // Scatters `bytes` of the token-major wire form, starting `offset` bytes
  // into it, into k and v, which must already be sized for num_tokens().
  // Any split works, down to part of a head's row.
  void ScatterTokenMajor(uint64_t offset, std::span<const std::byte> bytes);
  // Resizes k and v for num_tokens() tokens, zero-filled.
  void AllocateTensors();
  // The same without the fill: bytes they held stay, new ones are zero. For
  // callers that overwrite every byte; reuses the memory when it fits.
  void ResizeTensors();
};

// Reads a dump in the format of shared/data/kv: `tokens` int32 [T] and `k`,
// `v` [layers, kv_heads, T, head_dim] in bf16, fp16 or fp32. The layout's
// RoPE convention is not in the file; callers set it.
absl::StatusOr<KvCache> ReadKvCacheFile(const std::string& path);
// Writes `tokens`, `k` and `v` in the same format.
absl::Status WriteKvCacheFile(const std::string& path, const KvCache& cache);

}  // namespace seqkv

#endif  // SEQKV_MODEL_KV_CACHE_H_
