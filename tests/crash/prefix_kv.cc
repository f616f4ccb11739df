#include "tests/crash/prefix_kv.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace seqkv::testing {
namespace {

uint64_t SplitMix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A finite bf16 of magnitude 2^-7 .. 2^4 from 16 random bits.
uint16_t FiniteBf16(uint16_t bits) {
  const uint16_t sign = bits & 0x8000;
  const uint16_t exponent = 120 + ((bits >> 7) & 0xF) % 12;
  return sign | static_cast<uint16_t>(exponent << 7) | (bits & 0x7F);
}

}  // namespace

KvCache PrefixCache(const KvLayout& layout, std::span<const int32_t> tokens) {
  KvCache cache;
  cache.layout = layout;
  cache.tokens.assign(tokens.begin(), tokens.end());
  cache.AllocateTensors();
  const size_t num_tokens = tokens.size();
  const uint32_t dim = layout.head_dim;
  uint64_t prefix = 0x5EC4u;
  for (size_t p = 0; p < num_tokens; ++p) {
    // The running hash of tokens[0..p] seeds every value of position p.
    prefix = SplitMix(prefix ^ static_cast<uint32_t>(tokens[p]));
    uint64_t counter = prefix;
    for (std::vector<std::byte>* tensor : {&cache.k, &cache.v}) {
      for (uint32_t row = 0; row < layout.num_layers * layout.num_kv_heads;
           ++row) {
        std::byte* out =
            tensor->data() + ((row * num_tokens + p) * dim) * sizeof(uint16_t);
        for (uint32_t d = 0; d < dim; d += 4) {
          const uint64_t bits = SplitMix(counter++);
          for (uint32_t i = 0; i < 4 && d + i < dim; ++i) {
            const uint16_t value = FiniteBf16(bits >> (16 * i));
            std::memcpy(out + (d + i) * sizeof(uint16_t), &value,
                        sizeof(value));
          }
        }
      }
    }
  }
  return cache;
}

std::string CheckPrefixCache(const KvLayout& layout,
                             std::span<const int32_t> asked,
                             const KvCache& got) {
  if (got.tokens.size() > asked.size() ||
      !std::equal(got.tokens.begin(), got.tokens.end(), asked.begin()))
    return absl::StrCat("returned ", got.tokens.size(),
                        " tokens that are not a prefix of the ", asked.size(),
                        " asked");
  const KvCache want = PrefixCache(layout, got.tokens);
  if (got.k.size() != want.k.size() || got.v.size() != want.v.size())
    return absl::StrCat("returned ", got.k.size(), "+", got.v.size(),
                        " bytes for ", got.tokens.size(), " tokens, expected ",
                        want.k.size(), "+", want.v.size());
  for (const auto& [name, a, b] :
       {std::tuple{"K", &got.k, &want.k}, std::tuple{"V", &got.v, &want.v}}) {
    const auto diff = std::mismatch(a->begin(), a->end(), b->begin());
    if (diff.first != a->end())
      return absl::StrCat(name, " differs at byte ", diff.first - a->begin(),
                          " of ", a->size(), " (", got.tokens.size(),
                          " tokens)");
  }
  return "";
}

uint64_t CacheDigest(const KvCache& cache) {
  const std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> state(
      XXH3_createState(), XXH3_freeState);
  XXH3_64bits_reset(state.get());
  XXH3_64bits_update(state.get(), cache.tokens.data(),
                     cache.tokens.size() * sizeof(int32_t));
  XXH3_64bits_update(state.get(), cache.k.data(), cache.k.size());
  XXH3_64bits_update(state.get(), cache.v.data(), cache.v.size());
  return XXH3_64bits_digest(state.get());
}

}  // namespace seqkv::testing
