#include "storage/model_registry.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace seqkv {
namespace {

std::string ModelMetaKey(const std::string& name) {
  return absl::StrCat("model/", name);
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

// Builds a Model from a record, moving its codec state into the context.
absl::StatusOr<std::shared_ptr<const Model>> FromRecord(ModelRecord record) {
  auto layout = LayoutFromRecord(record.layout());
  if (!layout.ok()) return layout.status();
  auto model = std::make_shared<Model>();
  model->context.name = record.name();
  model->context.layout = *layout;
  for (auto& [key, blob] : *record.mutable_codec_state())
    model->context.codec_state[key] = std::move(blob);
  record.clear_codec_state();
  model->chunk_tokens = record.chunk_tokens();
  model->fingerprint = absl::StrCat(record.name(), "|", layout->DebugString(),
                                    "|", record.chunk_tokens());
  model->record = std::move(record);
  return std::shared_ptr<const Model>(std::move(model));
}

ModelRecord ToRecord(ModelSpec spec, int64_t created_unix_micros) {
  ModelRecord record;
  record.set_name(std::move(spec.name));
  *record.mutable_layout() = LayoutToRecord(spec.layout);
  record.set_chunk_tokens(spec.chunk_tokens);
  record.set_default_codec(std::move(spec.default_codec));
  for (auto& [key, blob] : spec.codec_state)
    (*record.mutable_codec_state())[key] = std::move(blob);
  record.set_created_unix_micros(created_unix_micros);
  return record;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Model>> ModelRegistry::FromSpec(
    ModelSpec spec, int64_t created_unix_micros) {
  if (auto status = spec.layout.Validate(); !status.ok()) return status;
  return FromRecord(ToRecord(std::move(spec), created_unix_micros));
}

absl::StatusOr<std::shared_ptr<const Model>> ModelRegistry::Find(
    const std::string& name) {
  {
    absl::MutexLock lock(&mutex_);
    if (auto it = cache_.find(name); it != cache_.end()) return it->second;
  }
  auto value = store_->Get(Column::kMeta, ModelMetaKey(name));
  if (!value.ok()) return value.status();
  if (!value->has_value())
    return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
  ModelRecord record;
  if (!record.ParseFromString(**value))
    return absl::DataLossError(
        absl::StrCat("the record of model '", name, "' is corrupt"));
  auto model = FromRecord(std::move(record));
  if (!model.ok()) return model.status();
  Remember(*model);
  return *model;
}

void ModelRegistry::Remember(std::shared_ptr<const Model> model) {
  absl::MutexLock lock(&mutex_);
  cache_[model->record.name()] = std::move(model);
}

void ModelRegistry::AddToBatch(const Model& model, WriteBatch& batch) {
  batch.Put(Column::kMeta, ModelMetaKey(model.record.name()),
            model.record.SerializeAsString());
}

absl::StatusOr<bool> ModelRegistry::Register(
    ModelSpec spec, const std::function<absl::Status(const Model&)>& check) {
  if (auto status = spec.layout.Validate(); !status.ok()) return status;
  const KvLayout layout = spec.layout;
  ModelRecord record =
      ToRecord(std::move(spec), absl::ToUnixMicros(absl::Now()));
  auto existing = Find(record.name());
  if (!existing.ok() && existing.status().code() != absl::StatusCode::kNotFound)
    return existing.status();
  const bool created = !existing.ok();
  if (!created) {
    const Model& old = **existing;
    if (!(old.context.layout == layout) ||
        old.chunk_tokens != record.chunk_tokens())
      return absl::FailedPreconditionError(
          absl::StrCat("model '", record.name(), "' is registered with layout ",
                       old.context.layout.DebugString(), " and chunk_tokens ",
                       old.chunk_tokens, "; got ", layout.DebugString(),
                       " and chunk_tokens ", record.chunk_tokens()));
    if (record.codec_state().empty() && record.default_codec().empty())
      return false;
    // The old state's other entries stay; entries given replace theirs.
    ModelRecord merged = old.record;
    auto& state = *merged.mutable_codec_state();
    for (const auto& [key, blob] : old.context.codec_state)
      if (!record.codec_state().contains(key)) state[key] = blob;
    for (auto& [key, blob] : *record.mutable_codec_state())
      state[key] = std::move(blob);
    if (!record.default_codec().empty())
      merged.set_default_codec(record.default_codec());
    record = std::move(merged);
  }
  const std::string value = record.SerializeAsString();
  auto model = FromRecord(std::move(record));
  if (!model.ok()) return model.status();
  if (auto status = check(**model); !status.ok()) return status;
  if (auto status = store_->Put(Column::kMeta,
                                ModelMetaKey((*model)->context.name), value);
      !status.ok())
    return status;
  Remember(*model);
  return created;
}

}  // namespace seqkv
