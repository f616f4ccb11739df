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
  for (const auto& [key, blob] : record.codec_state())
    model->context.codec_state[key] = blob;
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

absl::StatusOr<bool> ModelRegistry::Register(const ModelRecord& record) {
  auto fresh = FromRecord(record);
  if (!fresh.ok()) return fresh.status();
  auto existing = Find(record.name());
  if (existing.ok()) {
    const Model& old = **existing;
    if (!(old.context.layout == (*fresh)->context.layout) ||
        old.chunk_tokens != record.chunk_tokens())
      return absl::FailedPreconditionError(absl::StrCat(
          "model '", record.name(), "' is registered with layout ",
          old.context.layout.DebugString(), " and chunk_tokens ",
          old.chunk_tokens, "; got ", (*fresh)->context.layout.DebugString(),
          " and chunk_tokens ", record.chunk_tokens()));
    if (record.codec_state().empty() && record.default_codec().empty())
      return false;
    ModelRecord merged = old.record;
    for (const auto& [key, blob] : record.codec_state())
      (*merged.mutable_codec_state())[key] = blob;
    if (!record.default_codec().empty())
      merged.set_default_codec(record.default_codec());
    auto updated = FromRecord(merged);
    if (!updated.ok()) return updated.status();
    if (auto status = store_->Put(Column::kMeta, ModelMetaKey(record.name()),
                                  merged.SerializeAsString());
        !status.ok())
      return status;
    Remember(*updated);
    return false;
  }
  if (existing.status().code() != absl::StatusCode::kNotFound)
    return existing.status();
  if (auto status = store_->Put(Column::kMeta, ModelMetaKey(record.name()),
                                record.SerializeAsString());
      !status.ok())
    return status;
  Remember(*fresh);
  return true;
}

}  // namespace seqkv
