#include "tools/lm/fidelity.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "model/bf16_ops.h"

namespace seqkv::lm {
namespace {

size_t RowBytes(const KvLayout& layout) {
  return size_t{layout.head_dim} * DTypeSize(layout.dtype);
}

float ElementAsFloat(const KvLayout& layout, const std::byte* data,
                     size_t index) {
  switch (layout.dtype) {
    case DType::kBF16: {
      uint16_t bits;
      std::memcpy(&bits, data + 2 * index, 2);
      return Bf16ToFloat(bits);
    }
    case DType::kFP16: {
      uint16_t bits;
      std::memcpy(&bits, data + 2 * index, 2);
      return Fp16ToFloat(bits);
    }
    case DType::kFP32: {
      float value;
      std::memcpy(&value, data + 4 * index, 4);
      return value;
    }
  }
  return 0;
}

// KL(p || q) of two rows of logits, in nats.
double RowKl(std::span<const float> exact, std::span<const float> approx) {
  const std::vector<float> lp = LogSoftmax(exact);
  const std::vector<float> lq = LogSoftmax(approx);
  double kl = 0;
  for (size_t i = 0; i < lp.size(); ++i)
    kl += std::exp(double(lp[i])) * (double(lp[i]) - double(lq[i]));
  return kl;
}

}  // namespace

KvCache PrefixCache(const KvCache& cache, uint32_t end) {
  KvCache out;
  out.layout = cache.layout;
  out.tokens.assign(cache.tokens.begin(), cache.tokens.begin() + end);
  out.AllocateTensors();
  const size_t row = RowBytes(cache.layout);
  const size_t heads =
      size_t{cache.layout.num_layers} * cache.layout.num_kv_heads;
  for (size_t lh = 0; lh < heads; ++lh) {
    std::memcpy(out.k.data() + lh * end * row,
                cache.k.data() + lh * cache.num_tokens() * row, end * row);
    if (!cache.layout.latent)
      std::memcpy(out.v.data() + lh * end * row,
                  cache.v.data() + lh * cache.num_tokens() * row, end * row);
  }
  return out;
}

std::vector<std::byte> GatherChunk(const KvCache& cache, uint32_t begin,
                                   uint32_t count) {
  const KvLayout& layout = cache.layout;
  const size_t row = RowBytes(layout);
  std::vector<std::byte> chunk(size_t{count} * layout.bytes_per_token());
  std::byte* dst = chunk.data();
  for (uint32_t l = 0; l < layout.num_layers; ++l)
    for (uint32_t t = 0; t < layout.tensors_per_layer(); ++t) {
      const std::vector<std::byte>& source = t == 0 ? cache.k : cache.v;
      for (uint32_t h = 0; h < layout.num_kv_heads; ++h) {
        const size_t offset =
            ((size_t{l} * layout.num_kv_heads + h) * cache.num_tokens() +
             begin) *
            row;
        std::memcpy(dst, source.data() + offset, count * row);
        dst += count * row;
      }
    }
  return chunk;
}

void ScatterChunk(std::span<const std::byte> chunk, uint32_t begin,
                  uint32_t count, KvCache& cache) {
  const KvLayout& layout = cache.layout;
  const size_t row = RowBytes(layout);
  const std::byte* src = chunk.data();
  for (uint32_t l = 0; l < layout.num_layers; ++l)
    for (uint32_t t = 0; t < layout.tensors_per_layer(); ++t) {
      std::vector<std::byte>& target = t == 0 ? cache.k : cache.v;
      for (uint32_t h = 0; h < layout.num_kv_heads; ++h) {
        const size_t offset =
            ((size_t{l} * layout.num_kv_heads + h) * cache.num_tokens() +
             begin) *
            row;
        std::memcpy(target.data() + offset, src, count * row);
        src += count * row;
      }
    }
}

absl::StatusOr<KvCache> RoundTripCache(const Codec& codec, const KvCache& cache,
                                       uint32_t chunk_tokens,
                                       uint64_t* encoded_bytes) {
  if (chunk_tokens == 0)
    return absl::InvalidArgumentError("chunk_tokens must be positive");
  KvCache out;
  out.layout = cache.layout;
  out.tokens = cache.tokens;
  out.AllocateTensors();
  std::string encoded;
  for (uint32_t begin = 0; begin < cache.num_tokens(); begin += chunk_tokens) {
    const uint32_t count = std::min(chunk_tokens, cache.num_tokens() - begin);
    ChunkInfo chunk;
    chunk.layout = &cache.layout;
    chunk.num_tokens = count;
    chunk.first_position = begin;
    chunk.tokens = std::span<const int32_t>(cache.tokens).subspan(begin, count);
    const std::vector<std::byte> data = GatherChunk(cache, begin, count);
    encoded.clear();
    if (auto status = codec.Encode(chunk, data, encoded); !status.ok())
      return absl::Status(
          status.code(),
          absl::StrCat(codec.spec(), " encode of tokens [", begin, ", ",
                       begin + count, "): ", status.message()));
    *encoded_bytes += encoded.size();
    std::vector<std::byte> decoded(data.size());
    if (auto status = codec.Decode(chunk, encoded, decoded); !status.ok())
      return absl::Status(
          status.code(),
          absl::StrCat(codec.spec(), " decode of tokens [", begin, ", ",
                       begin + count, "): ", status.message()));
    ScatterChunk(decoded, begin, count, out);
  }
  return out;
}

ErrorEnergy CompareTensor(const KvCache& exact, const KvCache& approx,
                          bool values) {
  const std::vector<std::byte>& a = values ? exact.v : exact.k;
  const std::vector<std::byte>& b = values ? approx.v : approx.k;
  ErrorEnergy result;
  const size_t count = a.size() / DTypeSize(exact.layout.dtype);
  for (size_t i = 0; i < count; ++i) {
    const double x = ElementAsFloat(exact.layout, a.data(), i);
    const double y = ElementAsFloat(exact.layout, b.data(), i);
    result.error += (x - y) * (x - y);
    result.energy += x * x;
  }
  return result;
}

void FidelityTotals::Add(const ForwardResult& exact,
                         const ForwardResult& approx,
                         std::span<const int32_t> targets,
                         std::span<const float> file_logprobs) {
  for (size_t r = 0; r < targets.size(); ++r) {
    const std::vector<float> lp = LogSoftmax(exact.row(r));
    const std::vector<float> lq = LogSoftmax(approx.row(r));
    double row_kl = 0;
    for (size_t i = 0; i < lp.size(); ++i)
      row_kl += std::exp(double(lp[i])) * (double(lp[i]) - double(lq[i]));
    kl += row_kl;
    nll_exact -= lp[targets[r]];
    nll_approx -= lq[targets[r]];
    top1_agree += ArgMax(exact.row(r)) == ArgMax(approx.row(r));
    if (r < file_logprobs.size()) {
      nll_file -= file_logprobs[r];
      ++file_tokens;
    }
    ++tokens;
  }
}

double MeanKl(const ForwardResult& exact, const ForwardResult& approx,
              uint32_t rows) {
  double total = 0;
  for (uint32_t r = 0; r < rows; ++r)
    total += RowKl(exact.row(r), approx.row(r));
  return rows > 0 ? total / rows : 0;
}

}  // namespace seqkv::lm
