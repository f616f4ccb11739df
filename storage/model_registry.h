// Registered models: layout, chunk size, default codec and versioned codec
// state, persisted once per model and cached in memory. This file owns the
// meta column family's `model/`, `models/` and `model_state/` keys:
//
//   models/<owner>/<name>   ModelRecord of a tenant's model
//   model/<name>            ModelRecord stored before models had owners
//                           (owner empty); read as before, never created now
//   model_state/<model key>\0<version, 8 bytes big-endian>
//                           CodecStateRecord: an earlier version's state
//
// A registration that changes a model's codec state makes a new version and
// keeps the old one's state, so every stored chunk (which names the version
// it was encoded with) stays decodable. The bytes of a tenant's records are
// charged to the usage of the namespace named after it (Usage::bytes_models).
#ifndef SEQKV_STORAGE_MODEL_REGISTRY_H_
#define SEQKV_STORAGE_MODEL_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "codec/codec.h"
#include "storage/kv_store.h"
#include "storage/namespace_records.h"
#include "storage/records.pb.h"

namespace seqkv {

using storage::v1::ModelRecord;

// Which model a name means: the tenant that owns it and its name. `owner`
// is empty for a model stored before models had owners.
struct ModelId {
  std::string owner;
  std::string name;
};

// A model as a registration describes it.
struct ModelSpec {
  std::string name;
  KvLayout layout;
  uint32_t chunk_tokens = 0;
  std::string default_codec;  // empty: the server's
  // Blobs codecs read (a layer-0 table, a fidelity profile), by key.
  std::map<std::string, std::string, std::less<>> codec_state;
};

// A registered model as the server uses it, at one codec state version.
struct Model {
  // The stored record less its codec state, which is in `context` alone:
  // a layer-0 table can be hundreds of MB.
  ModelRecord record;
  ModelContext context;  // layout and codec state, for codecs
  uint32_t chunk_tokens = 0;
  // Part of every root key: changes whenever the stored bytes would, and
  // differs between owners, so two tenants' models of one name never share
  // a trie even in a namespace both write.
  std::string fingerprint;
  // The record's key, and the bytes it takes (charged to its owner).
  std::string key;
  uint64_t record_bytes = 0;

  const std::string& owner() const { return record.owner(); }
  uint64_t codec_state_version() const {
    return record.codec_state_version();
  }
};

// Thread-safe. Register and the commits that store new models are
// serialized by the caller (they stage usage, see NamespaceUsage).
class ModelRegistry {
 public:
  // Both must outlive the registry.
  ModelRegistry(KvStore* store, NamespaceUsage* usage)
      : store_(store), usage_(usage) {}

  // The model or NOT_FOUND.
  absl::StatusOr<std::shared_ptr<const Model>> Find(const ModelId& id);

  // `model` at codec state `version`: itself at its current version, else
  // the same model with that version's kept state (DATA_LOSS if missing).
  absl::StatusOr<std::shared_ptr<const Model>> AtStateVersion(
      const std::shared_ptr<const Model>& model, uint64_t version);

  // A model of `owner` not stored yet, as `spec` describes it (codec state
  // moved in); INVALID_ARGUMENT if the layout is bad.
  static absl::StatusOr<std::shared_ptr<const Model>> FromSpec(
      const std::string& owner, ModelSpec spec, int64_t created_unix_micros);

  // Stores the model `spec` describes as `id` unless it exists. An existing
  // model with the same layout and chunk size is kept; codec state entries
  // given replace theirs (a new version when any differs) and a default
  // codec given replaces it; a different layout gives FAILED_PRECONDITION.
  // `check` sees the model as it would be stored and can refuse it (a
  // default codec its state does not support); `charge` sees the bytes the
  // owner's records would grow by and can refuse them (a quota). Nothing is
  // stored when either refuses. Returns true when the model was created.
  absl::StatusOr<bool> Register(
      const ModelId& id, ModelSpec spec,
      const std::function<absl::Status(const Model&)>& check,
      const std::function<absl::Status(int64_t added_bytes)>& charge);

  // Adds the record of a model made by FromSpec (whose codec state is
  // empty) to `batch` and returns the bytes to charge its owner, whose
  // usage the caller stages in the same batch; call Remember() after the
  // batch is written.
  static uint64_t AddToBatch(const Model& model, WriteBatch& batch);
  void Remember(std::shared_ptr<const Model> model);

 private:
  absl::StatusOr<std::shared_ptr<const Model>> Load(const std::string& key);

  KvStore* store_;
  NamespaceUsage* usage_;
  absl::Mutex mutex_;
  absl::flat_hash_map<std::string, std::shared_ptr<const Model>> cache_
      ABSL_GUARDED_BY(mutex_);
  // Keys known not to exist, so that resolving a name through an owner's
  // models, the shared ones and the old ones reads RocksDB once per miss.
  absl::flat_hash_set<std::string> missing_ ABSL_GUARDED_BY(mutex_);
  // Earlier versions, by model key and version.
  absl::flat_hash_map<std::string, std::shared_ptr<const Model>> versions_
      ABSL_GUARDED_BY(mutex_);
};

}  // namespace seqkv

#endif  // SEQKV_STORAGE_MODEL_REGISTRY_H_
