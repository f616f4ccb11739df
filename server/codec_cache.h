// Codecs bound to models, built once per (model, spec) and shared.
#ifndef SEQKV_SERVER_CODEC_CACHE_H_
#define SEQKV_SERVER_CODEC_CACHE_H_

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "codec/codec.h"
#include "storage/model_registry.h"

namespace seqkv {

// Thread-safe. Entries live as long as the cache (a model registered again
// is a new Model object, so it gets new entries).
class CodecCache {
 public:
  // `models` (for earlier codec state versions) must outlive the cache.
  explicit CodecCache(ModelRegistry* models) : models_(models) {}

  // A codec for `spec` bound to `model`; the codec keeps the model alive.
  // The errors of CreateCodec.
  absl::StatusOr<std::shared_ptr<const Codec>> CodecFor(
      const std::shared_ptr<const Model>& model, const std::string& spec);
  // The codec a stored chunk of `model` was encoded with: `spec` bound to
  // the model's codec state at `state_version`.
  absl::StatusOr<std::shared_ptr<const Codec>> CodecForChunk(
      const std::shared_ptr<const Model>& model, const std::string& spec,
      uint64_t state_version);

 private:
  ModelRegistry* const models_;
  absl::Mutex mutex_;
  absl::flat_hash_map<std::string, std::shared_ptr<const Codec>> codecs_
      ABSL_GUARDED_BY(mutex_);
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_CODEC_CACHE_H_
