#include "server/codec_cache.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace seqkv {

absl::StatusOr<std::shared_ptr<const Codec>> CodecCache::CodecFor(
    const std::shared_ptr<const Model>& model, const std::string& spec) {
  // The key holds the model's address; the entry keeps the model alive so
  // the address cannot be reused by another model.
  const std::string key =
      absl::StrCat(reinterpret_cast<uintptr_t>(model.get()), "|", spec);
  {
    absl::MutexLock lock(&mutex_);
    if (auto it = codecs_.find(key); it != codecs_.end()) return it->second;
  }
  auto codec = CreateCodec(spec, model->context);
  if (!codec.ok()) return codec.status();
  // Pairs the codec with its model: the aliasing constructor shares the
  // model's ownership and points at the codec.
  auto holder = std::make_shared<
      std::pair<std::shared_ptr<const Model>, std::unique_ptr<Codec>>>(
      model, std::move(*codec));
  std::shared_ptr<const Codec> shared(holder, holder->second.get());
  absl::MutexLock lock(&mutex_);
  codecs_.emplace(key, shared);
  return shared;
}

absl::StatusOr<std::shared_ptr<const Codec>> CodecCache::CodecForChunk(
    const std::shared_ptr<const Model>& model, const std::string& spec,
    uint64_t state_version) {
  auto at = models_->AtStateVersion(model, state_version);
  if (!at.ok()) return at.status();
  return CodecFor(*at, spec);
}

}  // namespace seqkv
