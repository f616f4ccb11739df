#include "model/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace seqkv {
namespace {

// Bytes of one tensor ([layer][head][token][dim]) for `tokens` tokens.
size_t TensorBytes(const KvLayout& layout, size_t tokens) {
  return size_t{layout.num_layers} * layout.num_kv_heads * tokens *
         layout.head_dim * DTypeSize(layout.dtype);
}

std::string_view SafetensorsDType(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return "BF16";
    case DType::kFP16:
      return "F16";
    case DType::kFP32:
      return "F32";
  }
  return "";
}

}  // namespace

absl::Status KvCache::Validate() const {
  if (auto status = layout.Validate(); !status.ok()) return status;
  const size_t expected = TensorBytes(layout, tokens.size());
  if (k.size() != expected)
    return absl::InvalidArgumentError(
        absl::StrCat("k has ", k.size(), " bytes, layout and ", tokens.size(),
                     " tokens need ", expected));
  if (v.size() != (layout.latent ? 0 : expected))
    return absl::InvalidArgumentError(absl::StrCat(
        "v has ", v.size(), " bytes, expected ", layout.latent ? 0 : expected));
  return absl::OkStatus();
}

void KvCache::AllocateTensors() {
  k.assign(TensorBytes(layout, tokens.size()), std::byte{0});
  v.assign(layout.latent ? 0 : TensorBytes(layout, tokens.size()),
           std::byte{0});
}

void KvCache::ResizeTensors() {
  k.resize(TensorBytes(layout, tokens.size()));
  v.resize(layout.latent ? 0 : TensorBytes(layout, tokens.size()));
}

void KvCache::AppendTokenMajor(uint32_t begin, uint32_t end,
                               std::string& out) const {
  const size_t start = out.size();
  out.resize(start + size_t{end - begin} * layout.bytes_per_token());
  CopyTokenMajor(begin, end,
                 std::as_writable_bytes(std::span(out).subspan(start)));
}

void KvCache::CopyTokenMajor(uint32_t begin, uint32_t end,
                             std::span<std::byte> out) const {
  const size_t row = size_t{layout.head_dim} * DTypeSize(layout.dtype);
  const size_t total_tokens = tokens.size();
  std::byte* dst = out.data();
  for (uint32_t t = begin; t < end; ++t) {
    for (uint32_t layer = 0; layer < layout.num_layers; ++layer) {
      for (uint32_t tensor = 0; tensor < layout.tensors_per_layer(); ++tensor) {
        const std::vector<std::byte>& source = tensor == 0 ? k : v;
        for (uint32_t head = 0; head < layout.num_kv_heads; ++head) {
          size_t offset =
              ((size_t{layer} * layout.num_kv_heads + head) * total_tokens +
               t) *
              row;
          std::memcpy(dst, source.data() + offset, row);
          dst += row;
        }
      }
    }
  }
}

void KvCache::ScatterTokenMajor(uint64_t offset,
                                std::span<const std::byte> bytes) {
  // The wire order is rows of head_dim values: for each token, for each
  // layer, for each tensor, for each head. Each run of bytes up to the end
  // of its row goes to that row's place in k or v.
  const size_t row = size_t{layout.head_dim} * DTypeSize(layout.dtype);
  const size_t heads = layout.num_kv_heads;
  const size_t tensors = layout.tensors_per_layer();
  const size_t total_tokens = tokens.size();
  const uint64_t first_row = offset / row;
  size_t in_row = offset % row;
  size_t head = first_row % heads;
  size_t tensor = first_row / heads % tensors;
  size_t layer = first_row / (heads * tensors) % layout.num_layers;
  uint64_t token = first_row / (heads * tensors * layout.num_layers);
  while (!bytes.empty()) {
    const size_t take = std::min(bytes.size(), row - in_row);
    std::vector<std::byte>& target = tensor == 0 ? k : v;
    std::memcpy(target.data() +
                    ((layer * heads + head) * total_tokens + token) * row +
                    in_row,
                bytes.data(), take);
    bytes = bytes.subspan(take);
    in_row = 0;
    if (++head < heads) continue;
    head = 0;
    if (++tensor < tensors) continue;
    tensor = 0;
    if (++layer < layout.num_layers) continue;
    layer = 0;
    ++token;
  }
}

absl::StatusOr<KvCache> ReadKvCacheFile(const std::string& path) {
  auto file = ReadSafetensors(path);
  if (!file.ok()) return file.status();
  auto tokens = file->Find("tokens");
  auto k = file->Find("k");
  if (!tokens.ok() || !k.ok())
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": needs tensors 'tokens' and 'k' (and 'v')"));
  auto v = file->Find("v");
  const Tensor& k_tensor = **k;
  if ((*tokens)->dtype != "I32" || (*tokens)->shape.size() != 1)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": 'tokens' must be int32 [T]"));
  if (k_tensor.shape.size() != 4)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": 'k' must be [layers, kv_heads, T, head_dim]"));
  KvCache cache;
  auto dtype = ParseDType(k_tensor.dtype);
  if (!dtype.ok()) return dtype.status();
  cache.layout.dtype = *dtype;
  cache.layout.num_layers = static_cast<uint32_t>(k_tensor.shape[0]);
  cache.layout.num_kv_heads = static_cast<uint32_t>(k_tensor.shape[1]);
  cache.layout.head_dim = static_cast<uint32_t>(k_tensor.shape[3]);
  cache.layout.latent = !v.ok();
  auto token_span = (*tokens)->as<int32_t>();
  cache.tokens.assign(token_span.begin(), token_span.end());
  if (k_tensor.shape[2] != static_cast<int64_t>(cache.tokens.size()))
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": 'k' has ", k_tensor.shape[2],
                     " tokens, 'tokens' has ", cache.tokens.size()));
  if (v.ok() &&
      ((*v)->shape != k_tensor.shape || (*v)->dtype != k_tensor.dtype))
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": 'v' must have the shape and dtype of 'k'"));
  cache.k = std::move(file->tensors["k"].data);
  if (v.ok()) cache.v = std::move(file->tensors["v"].data);
  if (auto status = cache.Validate(); !status.ok()) return status;
  return cache;
}

absl::Status WriteKvCacheFile(const std::string& path, const KvCache& cache) {
  if (auto status = cache.Validate(); !status.ok()) return status;
  SafetensorsFile file;
  Tensor& tokens = file.tensors["tokens"];
  tokens.dtype = "I32";
  tokens.shape = {static_cast<int64_t>(cache.tokens.size())};
  tokens.data.resize(cache.tokens.size() * sizeof(int32_t));
  std::memcpy(tokens.data.data(), cache.tokens.data(), tokens.data.size());
  std::vector<int64_t> shape = {
      cache.layout.num_layers, cache.layout.num_kv_heads,
      static_cast<int64_t>(cache.tokens.size()), cache.layout.head_dim};
  Tensor& k = file.tensors["k"];
  k.dtype = SafetensorsDType(cache.layout.dtype);
  k.shape = shape;
  k.data = cache.k;
  if (!cache.layout.latent) {
    Tensor& v = file.tensors["v"];
    v.dtype = k.dtype;
    v.shape = shape;
    v.data = cache.v;
  }
  return WriteSafetensors(path, file);
}

}  // namespace seqkv
