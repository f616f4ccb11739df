// Registered models: layout, chunk size, default codec and codec state,
// persisted once per model (under `model/<name>` in the meta column family,
// which this file owns) and cached in memory.
#ifndef SEQKV_STORAGE_MODEL_REGISTRY_H_
#define SEQKV_STORAGE_MODEL_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "codec/codec.h"
#include "storage/kv_store.h"
#include "storage/records.pb.h"

namespace seqkv {

using storage::v1::ModelRecord;

// A model as a registration describes it.
struct ModelSpec {
  std::string name;
  KvLayout layout;
  uint32_t chunk_tokens = 0;
  std::string default_codec;  // empty: the server's
  // Blobs codecs read (a layer-0 table, a fidelity profile), by key.
  std::map<std::string, std::string, std::less<>> codec_state;
};

// A registered model as the server uses it.
struct Model {
  // The stored record less its codec state, which is in `context` alone:
  // a layer-0 table can be hundreds of MB.
  ModelRecord record;
  ModelContext context;  // layout and codec state, for codecs
  uint32_t chunk_tokens = 0;
  // Changes whenever the stored bytes would; part of every root key.
  std::string fingerprint;
};

// Thread-safe.
class ModelRegistry {
 public:
  explicit ModelRegistry(KvStore* store) : store_(store) {}

  // The model or NOT_FOUND.
  absl::StatusOr<std::shared_ptr<const Model>> Find(const std::string& name);

  // A model not stored yet, as `spec` describes it (codec state moved in);
  // INVALID_ARGUMENT if the layout is bad.
  static absl::StatusOr<std::shared_ptr<const Model>> FromSpec(
      ModelSpec spec, int64_t created_unix_micros);

  // Stores the model `spec` describes unless it exists. An existing model with
  // the same layout and chunk size is kept (its codec state and default codec
  // are updated when given); a different layout gives FAILED_PRECONDITION.
  // `check` sees the model as it would be stored and can refuse it (a
  // default codec its state does not support); nothing is stored then.
  // Returns true when the model was created.
  absl::StatusOr<bool> Register(
      ModelSpec spec, const std::function<absl::Status(const Model&)>& check);

  // Adds the record of a model made by FromSpec (whose codec state is
  // empty) to `batch`; call Remember() after the batch is written.
  static void AddToBatch(const Model& model, WriteBatch& batch);
  void Remember(std::shared_ptr<const Model> model);

 private:
  KvStore* store_;
  absl::Mutex mutex_;
  absl::flat_hash_map<std::string, std::shared_ptr<const Model>> cache_
      ABSL_GUARDED_BY(mutex_);
};

}  // namespace seqkv

#endif  // SEQKV_STORAGE_MODEL_REGISTRY_H_
