#include "bench/load/workload.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "codec/float_bits.h"

namespace seqkv::bench {
namespace {

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Stores `value` at element `index` of a tensor in `dtype`.
void StoreValue(DType dtype, float value, std::byte* base, size_t index) {
  switch (dtype) {
    case DType::kBF16: {
      const uint16_t bits = FloatToBf16(value);
      std::memcpy(base + 2 * index, &bits, 2);
      break;
    }
    case DType::kFP16: {
      const uint16_t bits = FloatToFp16(value);
      std::memcpy(base + 2 * index, &bits, 2);
      break;
    }
    case DType::kFP32:
      std::memcpy(base + 4 * index, &value, 4);
      break;
  }
}

// Reads element `index` of a tensor in `dtype` as float.
float LoadValue(DType dtype, const std::byte* base, size_t index) {
  switch (dtype) {
    case DType::kBF16: {
      uint16_t bits;
      std::memcpy(&bits, base + 2 * index, 2);
      return Bf16ToFloat(bits);
    }
    case DType::kFP16: {
      uint16_t bits;
      std::memcpy(&bits, base + 2 * index, 2);
      return Fp16ToFloat(bits);
    }
    case DType::kFP32: {
      float value;
      std::memcpy(&value, base + 4 * index, 4);
      return value;
    }
  }
  return 0;
}

// Element (layer, head, token, dim) of a [layer][head][token][dim] tensor.
size_t ElementIndex(const KvLayout& layout, size_t tokens, uint32_t layer,
                    uint32_t head, size_t token, uint32_t dim) {
  return ((size_t{layer} * layout.num_kv_heads + head) * tokens + token) *
             layout.head_dim +
         dim;
}

}  // namespace

uint64_t Mix64(uint64_t a, uint64_t b, uint64_t c) {
  return SplitMix(SplitMix(SplitMix(a) ^ b) ^ c);
}

absl::StatusOr<Workload> Workload::Create(const WorkloadOptions& options) {
  if (auto status = options.layout.Validate(); !status.ok()) return status;
  if (options.tokens_per_request == 0)
    return absl::InvalidArgumentError("--tokens_per_request must be positive");
  if (!(options.shared_prefix_ratio >= 0 && options.shared_prefix_ratio < 1))
    return absl::InvalidArgumentError(
        absl::StrCat("--shared_prefix_ratio must be in [0, 1), got ",
                     options.shared_prefix_ratio));
  if (options.vocab_size == 0)
    return absl::InvalidArgumentError("vocab_size must be positive");
  Workload workload(options);
  workload.shared_prefix_tokens_ = static_cast<uint32_t>(
      std::floor(options.shared_prefix_ratio * options.tokens_per_request));
  const KvLayout& layout = options.layout;
  const size_t tokens = options.tokens_per_request;
  const size_t elements = size_t{layout.num_layers} * layout.num_kv_heads *
                          tokens * layout.head_dim;
  const size_t bytes = elements * DTypeSize(layout.dtype);
  workload.k_.resize(bytes);
  workload.v_.resize(layout.latent ? 0 : bytes);

  if (options.source == "synthetic") {
    // Keys of real models have a few large channels per head; values are
    // close to Gaussian. The data only needs to be plausible for codecs.
    std::mt19937_64 rng(options.seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (size_t i = 0; i < elements; ++i) {
      const uint32_t dim = static_cast<uint32_t>(i % layout.head_dim);
      const float scale = dim % 16 == 3 ? 8.0f : 1.0f;
      StoreValue(layout.dtype, normal(rng) * scale, workload.k_.data(), i);
      if (!layout.latent)
        StoreValue(layout.dtype, normal(rng) * 0.5f, workload.v_.data(), i);
    }
    return workload;
  }

  // Tile real caches: element (l, h, t, d) comes from file element
  // (l mod L, h mod H, t mod T, d mod D), exact when the layouts agree.
  std::vector<std::filesystem::path> files;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator(options.source, error))
    if (entry.path().extension() == ".safetensors" &&
        entry.path().filename().string().find("tokens") == std::string::npos)
      files.push_back(entry.path());
  if (error || files.empty())
    return absl::NotFoundError(absl::StrCat(
        "--source: no *.safetensors caches in '", options.source, "'"));
  std::sort(files.begin(), files.end());
  auto file = ReadKvCacheFile(files.front().string());
  if (!file.ok()) return file.status();
  const KvLayout& from = file->layout;
  const size_t from_tokens = file->num_tokens();
  if (from_tokens == 0)
    return absl::InvalidArgumentError(
        absl::StrCat(files.front().string(), " holds no tokens"));
  for (uint32_t l = 0; l < layout.num_layers; ++l)
    for (uint32_t h = 0; h < layout.num_kv_heads; ++h)
      for (size_t t = 0; t < tokens; ++t)
        for (uint32_t d = 0; d < layout.head_dim; ++d) {
          const size_t src = ElementIndex(
              from, from_tokens, l % from.num_layers, h % from.num_kv_heads,
              t % from_tokens, d % from.head_dim);
          const size_t dst = ElementIndex(layout, tokens, l, h, t, d);
          StoreValue(layout.dtype, LoadValue(from.dtype, file->k.data(), src),
                     workload.k_.data(), dst);
          if (!layout.latent) {
            const auto& v_source = file->v.empty() ? file->k : file->v;
            StoreValue(layout.dtype,
                       LoadValue(from.dtype, v_source.data(), src),
                       workload.v_.data(), dst);
          }
        }
  return workload;
}

void Workload::FillTokens(uint64_t sequence,
                          std::vector<int32_t>& tokens) const {
  tokens.resize(options_.tokens_per_request);
  // The shared prefix depends on the seed only, so every sequence of a run
  // (and of reruns with the same seed) starts with it.
  const uint64_t shared_key = Mix64(options_.seed, 0x5eed, 0);
  const uint64_t own_key =
      Mix64(options_.seed, options_.run_nonce, sequence + 1);
  for (uint32_t i = 0; i < tokens.size(); ++i) {
    const uint64_t key = i < shared_prefix_tokens_ ? shared_key : own_key;
    tokens[i] = static_cast<int32_t>(SplitMix(key + i) % options_.vocab_size);
  }
}

std::vector<int32_t> Workload::Tokens(uint64_t sequence) const {
  std::vector<int32_t> tokens;
  FillTokens(sequence, tokens);
  return tokens;
}

KvCache Workload::MakeCache() const {
  KvCache cache;
  cache.layout = options_.layout;
  cache.tokens.assign(options_.tokens_per_request, 0);
  cache.k = k_;
  cache.v = v_;
  return cache;
}

}  // namespace seqkv::bench
