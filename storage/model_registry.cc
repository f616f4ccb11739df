#include "storage/model_registry.h"

#include "absl/strings/str_cat.h"
#include "proto/layout_convert.h"

namespace seqkv {

std::string ModelMetaKey(const std::string& name) {
  return absl::StrCat("model/", name);
}

absl::StatusOr<std::shared_ptr<const Model>> ModelRegistry::FromRecord(
    ModelRecord record) {
  auto layout = LayoutFromProto(record.layout());
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

void ModelRegistry::AddToBatch(const ModelRecord& record,
                               rocksdb::WriteBatch& batch) const {
  batch.Put(store_->handle(Column::kMeta), ModelMetaKey(record.name()),
            record.SerializeAsString());
}

absl::StatusOr<bool> ModelRegistry::Register(
    ModelRecord record,
    const std::function<absl::Status(const Model&)>& check) {
  auto existing = Find(record.name());
  if (!existing.ok() && existing.status().code() != absl::StatusCode::kNotFound)
    return existing.status();
  const bool created = !existing.ok();
  if (!created) {
    const Model& old = **existing;
    auto layout = LayoutFromProto(record.layout());
    if (!layout.ok()) return layout.status();
    if (!(old.context.layout == *layout) ||
        old.chunk_tokens != record.chunk_tokens())
      return absl::FailedPreconditionError(
          absl::StrCat("model '", record.name(), "' is registered with layout ",
                       old.context.layout.DebugString(), " and chunk_tokens ",
                       old.chunk_tokens, "; got ", layout->DebugString(),
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
