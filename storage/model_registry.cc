#include "storage/model_registry.h"

#include "absl/base/internal/endian.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace seqkv {
namespace {

// Names probed at random are forgotten past this many.
constexpr size_t kMaxMissingKeys = 1 << 16;

std::string ModelKey(const ModelId& id) {
  if (id.owner.empty()) return absl::StrCat("model/", id.name);
  return absl::StrCat("models/", id.owner, "/", id.name);
}

// Injective: the version is always the last 8 bytes.
std::string StateKey(const std::string& model_key, uint64_t version) {
  std::string key = absl::StrCat("model_state/", model_key);
  key.push_back('\0');
  char be[8];
  absl::big_endian::Store64(be, version);
  key.append(be, sizeof(be));
  return key;
}

absl::StatusOr<KvLayout> LayoutFromRecord(const storage::v1::Layout& record) {
  KvLayout layout;
  layout.num_layers = record.num_layers();
  layout.num_kv_heads = record.num_kv_heads();
  layout.head_dim = record.head_dim();
  layout.latent = record.latent();
  switch (record.dtype()) {
    case storage::v1::DTYPE_BF16:
      layout.dtype = DType::kBF16;
      break;
    case storage::v1::DTYPE_FP16:
      layout.dtype = DType::kFP16;
      break;
    case storage::v1::DTYPE_FP32:
      layout.dtype = DType::kFP32;
      break;
    default:
      return absl::DataLossError("a model record has no valid dtype");
  }
  switch (record.rope().style()) {
    case storage::v1::ROPE_STYLE_ROTATE_HALF:
      layout.rope.style = RopeStyle::kRotateHalf;
      break;
    case storage::v1::ROPE_STYLE_INTERLEAVED:
      layout.rope.style = RopeStyle::kInterleaved;
      break;
    default:
      layout.rope.style = RopeStyle::kNone;
  }
  if (layout.rope.style != RopeStyle::kNone) {
    layout.rope.theta = record.rope().theta();
    layout.rope.rotary_dim = record.rope().rotary_dim();
  }
  if (auto status = layout.Validate(); !status.ok()) return status;
  return layout;
}

storage::v1::Layout LayoutToRecord(const KvLayout& layout) {
  storage::v1::Layout record;
  record.set_num_layers(layout.num_layers);
  record.set_num_kv_heads(layout.num_kv_heads);
  record.set_head_dim(layout.head_dim);
  record.set_latent(layout.latent);
  switch (layout.dtype) {
    case DType::kBF16:
      record.set_dtype(storage::v1::DTYPE_BF16);
      break;
    case DType::kFP16:
      record.set_dtype(storage::v1::DTYPE_FP16);
      break;
    case DType::kFP32:
      record.set_dtype(storage::v1::DTYPE_FP32);
      break;
  }
  if (layout.rope.style != RopeStyle::kNone) {
    record.mutable_rope()->set_style(layout.rope.style == RopeStyle::kRotateHalf
                                         ? storage::v1::ROPE_STYLE_ROTATE_HALF
                                         : storage::v1::ROPE_STYLE_INTERLEAVED);
    record.mutable_rope()->set_theta(layout.rope.theta);
    record.mutable_rope()->set_rotary_dim(layout.rope.rotary_dim);
  }
  return record;
}

// Builds a Model from a record stored under `key` (`record_bytes` with its
// value), moving its codec state into the context.
std::shared_ptr<const Model> FromRecord(ModelRecord record, KvLayout layout,
                                        std::string key,
                                        uint64_t record_bytes) {
  auto model = std::make_shared<Model>();
  model->context.name = record.name();
  model->context.layout = layout;
  for (auto& [state_key, blob] : *record.mutable_codec_state())
    model->context.codec_state[state_key] = std::move(blob);
  record.clear_codec_state();
  model->chunk_tokens = record.chunk_tokens();
  // Records from before owners keep their fingerprint, so their chunks
  // keep their root keys. 0xff never occurs in UTF-8, so an owner's
  // fingerprint cannot equal an old one.
  model->fingerprint =
      record.owner().empty()
          ? absl::StrCat(record.name(), "|", layout.DebugString(), "|",
                         record.chunk_tokens())
          : absl::StrCat("\xff", record.owner(), "\xff", record.name(), "|",
                         layout.DebugString(), "|", record.chunk_tokens());
  model->key = std::move(key);
  model->record_bytes = record_bytes;
  model->record = std::move(record);
  return model;
}

absl::StatusOr<std::shared_ptr<const Model>> FromRecord(ModelRecord record,
                                                        std::string key,
                                                        uint64_t record_bytes) {
  auto layout = LayoutFromRecord(record.layout());
  if (!layout.ok()) return layout.status();
  return FromRecord(std::move(record), *layout, std::move(key), record_bytes);
}

ModelRecord ToRecord(const std::string& owner, ModelSpec spec,
                     int64_t created_unix_micros) {
  ModelRecord record;
  record.set_name(std::move(spec.name));
  *record.mutable_layout() = LayoutToRecord(spec.layout);
  record.set_chunk_tokens(spec.chunk_tokens);
  record.set_default_codec(std::move(spec.default_codec));
  for (auto& [key, blob] : spec.codec_state)
    (*record.mutable_codec_state())[key] = std::move(blob);
  record.set_created_unix_micros(created_unix_micros);
  record.set_owner(owner);
  return record;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Model>> ModelRegistry::FromSpec(
    const std::string& owner, ModelSpec spec, int64_t created_unix_micros) {
  if (auto status = spec.layout.Validate(); !status.ok()) return status;
  std::string key = ModelKey({owner, spec.name});
  ModelRecord record = ToRecord(owner, std::move(spec), created_unix_micros);
  const uint64_t bytes = key.size() + record.ByteSizeLong();
  return FromRecord(std::move(record), std::move(key), bytes);
}

absl::StatusOr<std::shared_ptr<const Model>> ModelRegistry::Find(
    const ModelId& id) {
  return Load(ModelKey(id));
}

absl::StatusOr<std::shared_ptr<const Model>> ModelRegistry::Load(
    const std::string& key) {
  {
    absl::MutexLock lock(&mutex_);
    if (auto it = cache_.find(key); it != cache_.end()) return it->second;
    if (missing_.contains(key)) return absl::NotFoundError("unknown model");
  }
  auto value = store_->Get(Column::kMeta, key);
  if (!value.ok()) return value.status();
  if (!value->has_value()) {
    absl::MutexLock lock(&mutex_);
    // Bounded: names probed at random must not grow it without end.
    if (missing_.size() >= kMaxMissingKeys) missing_.clear();
    missing_.insert(key);
    return absl::NotFoundError("unknown model");
  }
  ModelRecord record;
  if (!record.ParseFromString(**value))
    return absl::DataLossError(absl::StrCat("model record ", key, " is corrupt"));
  auto model = FromRecord(std::move(record), key, key.size() + (*value)->size());
  if (!model.ok()) return model.status();
  Remember(*model);
  return *model;
}

absl::StatusOr<std::shared_ptr<const Model>> ModelRegistry::AtStateVersion(
    const std::shared_ptr<const Model>& model, uint64_t version) {
  if (version == model->codec_state_version()) return model;
  const std::string key = StateKey(model->key, version);
  {
    absl::MutexLock lock(&mutex_);
    if (auto it = versions_.find(key); it != versions_.end()) return it->second;
  }
  auto value = store_->Get(Column::kMeta, key);
  if (!value.ok()) return value.status();
  storage::v1::CodecStateRecord state;
  if (!value->has_value() || !state.ParseFromString(**value))
    return absl::DataLossError(absl::StrCat(
        "codec state version ", version, " of model '", model->record.name(),
        "' is ", value->has_value() ? "corrupt" : "missing"));
  // Field by field: copying `*model` would copy its current state too.
  auto at = std::make_shared<Model>();
  at->record = model->record;
  at->context.name = model->context.name;
  at->context.layout = model->context.layout;
  at->chunk_tokens = model->chunk_tokens;
  at->fingerprint = model->fingerprint;
  at->key = model->key;
  at->record_bytes = model->record_bytes;
  for (auto& [state_key, blob] : *state.mutable_codec_state())
    at->context.codec_state[state_key] = std::move(blob);
  at->record.set_codec_state_version(version);
  absl::MutexLock lock(&mutex_);
  auto [it, inserted] = versions_.emplace(key, std::move(at));
  return it->second;
}

void ModelRegistry::Remember(std::shared_ptr<const Model> model) {
  absl::MutexLock lock(&mutex_);
  missing_.erase(model->key);
  cache_[model->key] = std::move(model);
}

uint64_t ModelRegistry::AddToBatch(const Model& model, WriteBatch& batch) {
  std::string value = model.record.SerializeAsString();
  const uint64_t bytes = model.key.size() + value.size();
  batch.Put(Column::kMeta, model.key, value);
  return bytes;
}

absl::StatusOr<bool> ModelRegistry::Register(
    const ModelId& id, ModelSpec spec,
    const std::function<absl::Status(const Model&)>& check,
    const std::function<absl::Status(int64_t added_bytes)>& charge) {
  if (auto status = spec.layout.Validate(); !status.ok()) return status;
  const KvLayout layout = spec.layout;
  const std::string key = ModelKey(id);
  ModelRecord record =
      ToRecord(id.owner, std::move(spec), absl::ToUnixMicros(absl::Now()));
  auto existing = Load(key);
  if (!existing.ok() && existing.status().code() != absl::StatusCode::kNotFound)
    return existing.status();
  const bool created = !existing.ok();
  WriteBatch batch(*store_);
  int64_t added_bytes = 0;
  if (!created) {
    const Model& old = **existing;
    if (!(old.context.layout == layout) ||
        old.chunk_tokens != record.chunk_tokens())
      return absl::FailedPreconditionError(
          absl::StrCat("model '", record.name(), "' is registered with layout ",
                       old.context.layout.DebugString(), " and chunk_tokens ",
                       old.chunk_tokens, "; got ", layout.DebugString(),
                       " and chunk_tokens ", record.chunk_tokens()));
    bool state_changed = false;
    for (const auto& [state_key, blob] : record.codec_state()) {
      auto it = old.context.codec_state.find(state_key);
      state_changed |= it == old.context.codec_state.end() || it->second != blob;
    }
    const bool codec_changed = !record.default_codec().empty() &&
                               record.default_codec() != old.record.default_codec();
    if (!state_changed && !codec_changed) return false;
    // The old state's other entries stay; entries given replace theirs.
    ModelRecord merged = old.record;
    merged.set_owner(id.owner);
    auto& state = *merged.mutable_codec_state();
    for (const auto& [state_key, blob] : old.context.codec_state)
      if (!record.codec_state().contains(state_key)) state[state_key] = blob;
    for (auto& [state_key, blob] : *record.mutable_codec_state())
      state[state_key] = std::move(blob);
    if (codec_changed) merged.set_default_codec(record.default_codec());
    if (state_changed) {
      // Chunks encoded with the old state name its version: keep it.
      storage::v1::CodecStateRecord kept;
      for (const auto& [state_key, blob] : old.context.codec_state)
        (*kept.mutable_codec_state())[state_key] = blob;
      const std::string kept_key =
          StateKey(old.key, old.codec_state_version());
      std::string kept_value = kept.SerializeAsString();
      added_bytes += kept_key.size() + kept_value.size();
      batch.Put(Column::kMeta, kept_key, kept_value);
      merged.set_codec_state_version(old.codec_state_version() + 1);
    }
    added_bytes -= static_cast<int64_t>(old.record_bytes);
    record = std::move(merged);
  }
  const std::string value = record.SerializeAsString();
  added_bytes += key.size() + value.size();
  auto model = FromRecord(std::move(record), key, key.size() + value.size());
  if (!model.ok()) return model.status();
  if (auto status = check(**model); !status.ok()) return status;
  // Records from before owners belong to no tenant: nobody is charged.
  const Usage delta{.bytes_models = added_bytes};
  if (!id.owner.empty()) {
    if (auto status = charge(added_bytes); !status.ok()) return status;
    usage_->Stage(id.owner, delta, batch);
  }
  batch.Put(Column::kMeta, key, value);
  if (auto status = store_->Write(batch, /*durable=*/true); !status.ok())
    return status;
  if (!id.owner.empty()) usage_->Apply(id.owner, delta);
  Remember(*model);
  return created;
}

}  // namespace seqkv
