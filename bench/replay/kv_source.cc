#include "bench/replay/kv_source.h"

#include <glob.h>

#include <cstring>
#include <span>

#include "absl/strings/str_cat.h"
#include "bench/load/workload.h"
#include "codec/float_bits.h"
#include "codec/model_state.h"
#include "codec/predictive/rope.h"
#include "model/kv_cache.h"

namespace seqkv::bench {
namespace {

absl::StatusOr<std::vector<std::string>> Glob(const std::string& pattern) {
  glob_t matches{};
  const int rc = glob(pattern.c_str(), 0, nullptr, &matches);
  std::vector<std::string> paths;
  if (rc == 0)
    for (size_t i = 0; i < matches.gl_pathc; ++i)
      paths.emplace_back(matches.gl_pathv[i]);
  globfree(&matches);
  if (rc != 0 && rc != GLOB_NOMATCH)
    return absl::InvalidArgumentError(
        absl::StrCat("--kv_source: cannot expand '", pattern, "'"));
  return paths;  // glob sorts them
}

float ToFloat(DType dtype, const std::byte* p) {
  if (dtype == DType::kFP32) {
    float value;
    std::memcpy(&value, p, 4);
    return value;
  }
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return dtype == DType::kBF16 ? Bf16ToFloat(bits) : Fp16ToFloat(bits);
}

void FromFloat(DType dtype, float value, std::byte* p) {
  if (dtype == DType::kFP32) {
    std::memcpy(p, &value, 4);
    return;
  }
  const uint16_t bits =
      dtype == DType::kBF16 ? FloatToBf16(value) : FloatToFp16(value);
  std::memcpy(p, &bits, 2);
}

// The slice's groups of a source profile, renumbered to layer 0.
absl::StatusOr<std::string> CutProfile(const std::string& json,
                                       const KvLayout& source, uint32_t layer,
                                       uint32_t head) {
  absl::StatusOr<FidelityProfile> profile = ParseFidelityProfile(json, &source);
  if (!profile.ok())
    return absl::Status(
        profile.status().code(),
        absl::StrCat("--profile: ", profile.status().message()));
  nlohmann::json groups = nlohmann::json::array();
  for (uint32_t tensor = 0; tensor < source.tensors_per_layer(); ++tensor) {
    const FidelityProfile::Group* group = profile->Find(layer, tensor);
    if (group == nullptr)
      return absl::InvalidArgumentError(
          absl::StrCat("--profile has no group for layer ", layer, " tensor ",
                       tensor == 0 ? "k" : "v", " (the slice's)"));
    nlohmann::json out = {
        {"layer", 0},
        {"tensor", source.latent ? "latent" : (tensor == 0 ? "k" : "v")},
        {"sensitivity", group->sensitivity}};
    if (!group->channel_weights.empty()) {
      const auto begin =
          group->channel_weights.begin() + size_t{head} * source.head_dim;
      out["channel_weights"] =
          std::vector<double>(begin, begin + source.head_dim);
    }
    groups.push_back(std::move(out));
  }
  return nlohmann::json({{"model", profile->model},
                         {"metric", "kl_per_rel_mse"},
                         {"groups", groups}})
      .dump();
}

}  // namespace

absl::StatusOr<KvSource> KvSource::Load(const KvSourceOptions& options) {
  if (options.slice_tokens == 0)
    return absl::InvalidArgumentError("--kv_block_tokens must be positive");
  auto paths = Glob(options.glob);
  if (!paths.ok()) return paths.status();
  KvSource source;
  source.options_ = options;
  bool have_layout = false;
  for (const std::string& path : *paths) {
    absl::StatusOr<KvCache> cache = ReadKvCacheFile(path);
    if (!cache.ok()) {
      source.skipped_.emplace_back(path, std::string(cache.status().message()));
      continue;
    }
    if (!have_layout) {
      source.source_layout_ = cache->layout;
      have_layout = true;
      if (options.model_layout) {
        KvLayout expected = *options.model_layout;
        expected.rope = {};
        if (std::string diff =
                DescribeLayoutDifference(expected, cache->layout);
            !diff.empty())
          return absl::InvalidArgumentError(
              absl::StrCat("--kv_source ", path,
                           " does not match the model's config.json: ", diff));
      }
      const KvLayout& layout = source.source_layout_;
      source.layer_ = options.layer < 0 ? layout.num_layers / 2
                                        : static_cast<uint32_t>(options.layer);
      if (source.layer_ >= layout.num_layers ||
          options.head >= layout.num_kv_heads)
        return absl::InvalidArgumentError(absl::StrCat(
            "--kv_layer ", source.layer_, " / --kv_head ", options.head,
            " are outside the source layout ", layout.DebugString()));
    } else if (cache->layout != source.source_layout_) {
      return absl::InvalidArgumentError(
          absl::StrCat("--kv_source files differ in layout: ", path, " is ",
                       cache->layout.DebugString(), ", the first was ",
                       source.source_layout_.DebugString()));
    }
    if (cache->num_tokens() < options.slice_tokens) {
      source.skipped_.emplace_back(
          path,
          absl::StrCat("holds ", cache->num_tokens(),
                       " tokens, fewer than a block's ", options.slice_tokens));
      continue;
    }
    // Copy [layer_][head][*][*] of each tensor.
    const KvLayout& layout = source.source_layout_;
    const size_t row = size_t{layout.head_dim} * DTypeSize(layout.dtype);
    const size_t offset =
        (size_t{source.layer_} * layout.num_kv_heads + options.head) *
        cache->num_tokens() * row;
    const size_t bytes = cache->num_tokens() * row;
    Slice slice;
    slice.path = path;
    slice.tokens = cache->num_tokens();
    slice.k.assign(cache->k.begin() + offset,
                   cache->k.begin() + offset + bytes);
    if (!layout.latent)
      slice.v.assign(cache->v.begin() + offset,
                     cache->v.begin() + offset + bytes);
    const uint32_t file = static_cast<uint32_t>(source.slices_.size());
    for (uint32_t start = 0; start + options.slice_tokens <= slice.tokens;
         start += options.slice_tokens)
      source.windows_.push_back({file, start});
    source.slices_.push_back(std::move(slice));
  }
  if (source.slices_.empty())
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv_source '", options.glob, "' matches no KV cache file",
        source.skipped_.empty()
            ? std::string()
            : absl::StrCat(" (", source.skipped_.front().first, ": ",
                           source.skipped_.front().second, ")")));
  source.layout_ = source.source_layout_;
  source.layout_.num_layers = 1;
  source.layout_.num_kv_heads = 1;
  source.layout_.rope = options.rope;
  if (auto status = source.layout_.Validate(); !status.ok()) return status;
  if (!options.profile_json.empty()) {
    auto profile = CutProfile(options.profile_json, source.source_layout_,
                              source.layer_, options.head);
    if (!profile.ok()) return profile.status();
    source.slice_profile_ = *std::move(profile);
  }
  return source;
}

void KvSource::Fill(uint64_t hash_id, uint64_t position, uint32_t tokens,
                    std::vector<std::byte>& k,
                    std::vector<std::byte>& v) const {
  tokens = std::min(tokens, options_.slice_tokens);
  const Window& window =
      windows_[Mix64(options_.seed, hash_id, 0x6b76) % windows_.size()];
  const Slice& slice = slices_[window.file];
  const DType dtype = layout_.dtype;
  const uint32_t width = layout_.head_dim;
  const size_t row = size_t{width} * DTypeSize(dtype);
  const size_t begin = size_t{window.start} * row;
  const size_t bytes = size_t{tokens} * row;
  const size_t k_at = k.size();
  k.insert(k.end(), slice.k.begin() + begin, slice.k.begin() + begin + bytes);
  if (!layout_.latent)
    v.insert(v.end(), slice.v.begin() + begin, slice.v.begin() + begin + bytes);
  // Keys carry their position's RoPE phase: move it from the window's place
  // in its file to the block's place in the replayed sequence.
  if (layout_.rope.style == RopeStyle::kNone || position == window.start)
    return;
  const predictive::RopeTable from(layout_.rope, width, window.start, tokens);
  const predictive::RopeTable to(layout_.rope, width, position, tokens);
  std::vector<float> values(width);
  for (uint32_t t = 0; t < tokens; ++t) {
    std::byte* out = k.data() + k_at + t * row;
    for (uint32_t d = 0; d < width; ++d)
      values[d] = ToFloat(dtype, out + d * DTypeSize(dtype));
    from.Undo(t, values.data());
    to.Apply(t, values.data());
    for (uint32_t d = 0; d < width; ++d)
      FromFloat(dtype, values[d], out + d * DTypeSize(dtype));
  }
}

nlohmann::json KvSource::Describe() const {
  nlohmann::json files = nlohmann::json::array();
  for (const Slice& slice : slices_) files.push_back(slice.path);
  nlohmann::json skipped = nlohmann::json::array();
  for (const auto& [path, why] : skipped_)
    skipped.push_back({{"path", path}, {"why", why}});
  return {{"glob", options_.glob},
          {"files", files},
          {"skipped", skipped},
          {"source_layout", source_layout_.DebugString()},
          {"slice",
           {{"layer", layer_},
            {"kv_head", options_.head},
            {"tokens_per_block", options_.slice_tokens},
            {"layout", layout_.DebugString()},
            {"dtype", DTypeName(layout_.dtype)},
            {"head_dim", layout_.head_dim},
            {"rope", absl::StrCat(RopeStyleName(layout_.rope.style), ":",
                                  layout_.rope.theta)},
            {"bytes_per_token", layout_.bytes_per_token()}}},
          {"windows", windows_.size()},
          {"profile", slice_profile_.empty() ? "none" : "sliced"}};
}

}  // namespace seqkv::bench
