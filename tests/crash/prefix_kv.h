// Synthetic KV caches whose values are a function of the token prefix, as a
// model's are: the K and V of position p depend on tokens[0..p] alone. Two
// Puts that share a prefix carry the same bytes for it, so deduplication
// never mixes values from different data, and whatever range a Get returns
// can be checked by generating it again. Values are finite bf16 (lossy
// codecs refuse NaN and Inf).
#ifndef SEQKV_TESTS_CRASH_PREFIX_KV_H_
#define SEQKV_TESTS_CRASH_PREFIX_KV_H_

#include <cstdint>
#include <span>
#include <string>

#include "model/kv_cache.h"

namespace seqkv::testing {

// The cache of `tokens` in `layout` (bf16, not latent). Thread-safe.
KvCache PrefixCache(const KvLayout& layout, std::span<const int32_t> tokens);

// Empty when `got` holds exactly PrefixCache(layout, got.tokens) and its
// tokens are a prefix of `asked`; otherwise what differs.
std::string CheckPrefixCache(const KvLayout& layout,
                             std::span<const int32_t> asked,
                             const KvCache& got);

// XXH3-64 of a cache's tokens, K and V: the identity of a lossy Get.
uint64_t CacheDigest(const KvCache& cache);

}  // namespace seqkv::testing

#endif  // SEQKV_TESTS_CRASH_PREFIX_KV_H_
