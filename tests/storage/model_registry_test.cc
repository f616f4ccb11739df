// The model registry on a real RocksDB: owners, versions of codec state,
// records from before owners, and the usage the records are charged.
#include "storage/model_registry.h"

#include <memory>

#include "gtest/gtest.h"
#include "storage/kv_store.h"
#include "storage/namespace_records.h"
#include "storage/trie.h"
#include "tests/scoped_temp_dir.h"

namespace seqkv {
namespace {

KvLayout Layout() {
  KvLayout layout;
  layout.num_layers = 2;
  layout.num_kv_heads = 1;
  layout.head_dim = 64;
  return layout;
}

ModelSpec Spec(const std::string& name,
               std::map<std::string, std::string, std::less<>> state = {},
               const std::string& default_codec = "") {
  return ModelSpec{.name = name,
                   .layout = Layout(),
                   .chunk_tokens = 256,
                   .default_codec = default_codec,
                   .codec_state = std::move(state)};
}

absl::Status Accept(const Model&) { return absl::OkStatus(); }
absl::Status AcceptBytes(int64_t) { return absl::OkStatus(); }

class ModelRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    registry_.reset();
    trie_.reset();
    store_.reset();
    auto store = KvStore::Open({.path = (temp_dir_.path() / "db").string(),
                                .sync_commits = false});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    trie_ = std::make_unique<Trie>(store_.get());
    ASSERT_TRUE(trie_->Load().ok());
    registry_ = std::make_unique<ModelRegistry>(store_.get(),
                                                &trie_->mutable_usage());
  }

  absl::StatusOr<bool> Register(const ModelId& id, ModelSpec spec) {
    return registry_->Register(id, std::move(spec), Accept, AcceptBytes);
  }

  testing::ScopedTempDir temp_dir_;
  std::unique_ptr<KvStore> store_;
  std::unique_ptr<Trie> trie_;
  std::unique_ptr<ModelRegistry> registry_;
};

TEST_F(ModelRegistryTest, OwnersHaveTheirOwnModelsOfOneName) {
  ASSERT_TRUE(*Register({"a", "m"}, Spec("m", {{"t", "A"}}, "lossless")));
  EXPECT_EQ(registry_->Find({"b", "m"}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(registry_->Find({"", "m"}).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(*Register({"b", "m"}, Spec("m", {{"t", "B"}}, "turbo:2")));
  Open();  // from disk
  auto a = registry_->Find({"a", "m"});
  auto b = registry_->Find({"b", "m"});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)->owner(), "a");
  EXPECT_EQ((*a)->context.codec_state.at("t"), "A");
  EXPECT_EQ((*a)->record.default_codec(), "lossless");
  EXPECT_EQ((*b)->context.codec_state.at("t"), "B");
  EXPECT_EQ((*b)->record.default_codec(), "turbo:2");
  // Different roots, even in a namespace both write.
  EXPECT_NE((*a)->fingerprint, (*b)->fingerprint);
}

TEST_F(ModelRegistryTest, ChangedStateIsANewVersionAndTheOldOneIsKept) {
  ASSERT_TRUE(*Register({"a", "m"}, Spec("m", {{"t", "v0"}, {"p", "x"}})));
  auto v0 = registry_->Find({"a", "m"});
  ASSERT_TRUE(v0.ok());
  EXPECT_EQ((*v0)->codec_state_version(), 0u);
  // Unchanged: no new version, nothing written.
  EXPECT_FALSE(*Register({"a", "m"}, Spec("m", {{"t", "v0"}})));
  EXPECT_EQ((*registry_->Find({"a", "m"}))->codec_state_version(), 0u);
  // A default codec alone: no new version either.
  EXPECT_FALSE(*Register({"a", "m"}, Spec("m", {}, "raw")));
  EXPECT_EQ((*registry_->Find({"a", "m"}))->codec_state_version(), 0u);
  EXPECT_FALSE(*Register({"a", "m"}, Spec("m", {{"t", "v1"}})));
  EXPECT_FALSE(*Register({"a", "m"}, Spec("m", {{"t", "v2"}})));
  Open();
  auto now = registry_->Find({"a", "m"});
  ASSERT_TRUE(now.ok());
  EXPECT_EQ((*now)->codec_state_version(), 2u);
  EXPECT_EQ((*now)->context.codec_state.at("t"), "v2");
  EXPECT_EQ((*now)->record.default_codec(), "raw");
  for (uint64_t version : {0, 1, 2}) {
    auto at = registry_->AtStateVersion(*now, version);
    ASSERT_TRUE(at.ok()) << at.status();
    EXPECT_EQ((*at)->codec_state_version(), version);
    EXPECT_EQ((*at)->context.codec_state.at("t"),
              "v" + std::to_string(version));
    EXPECT_EQ((*at)->context.codec_state.at("p"), "x");  // merged in
    EXPECT_EQ((*at)->fingerprint, (*now)->fingerprint);
  }
  EXPECT_EQ(registry_->AtStateVersion(*now, 3).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(ModelRegistryTest, RecordsAreChargedToTheirOwner) {
  ASSERT_TRUE(*Register({"a", "m"}, Spec("m", {{"t", std::string(1000, 'x')}})));
  const int64_t first = trie_->usage().Get("a").bytes_models;
  EXPECT_GT(first, 1000);
  EXPECT_LT(first, 1200);
  EXPECT_EQ(trie_->usage().Get("a").bytes_stored, 0);
  // A new version: the new record, and the old state kept.
  ASSERT_FALSE(
      *Register({"a", "m"}, Spec("m", {{"t", std::string(3000, 'y')}})));
  const int64_t second = trie_->usage().Get("a").bytes_models;
  EXPECT_GT(second, first + 3000);
  EXPECT_LT(second, first + 3000 + 1200);
  Open();  // the charge is stored with the records
  EXPECT_EQ(trie_->usage().Get("a").bytes_models, second);
  EXPECT_EQ(trie_->usage().Get("b").bytes_models, 0);
  // A refusal stores nothing.
  auto refused = registry_->Register(
      {"a", "m2"}, Spec("m2"), Accept, [](int64_t) {
        return absl::ResourceExhaustedError("quota");
      });
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(registry_->Find({"a", "m2"}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(trie_->usage().Get("a").bytes_models, second);
}

TEST_F(ModelRegistryTest, ARecordFromBeforeOwnersReadsAsBefore) {
  // As the release before owners wrote it: model/<name>, no owner.
  ModelRecord old;
  old.set_name("legacy");
  old.mutable_layout()->set_num_layers(2);
  old.mutable_layout()->set_num_kv_heads(1);
  old.mutable_layout()->set_head_dim(64);
  old.mutable_layout()->set_dtype(storage::v1::DTYPE_BF16);
  old.set_chunk_tokens(256);
  (*old.mutable_codec_state())["t"] = "old";
  ASSERT_TRUE(
      store_->Put(Column::kMeta, "model/legacy", old.SerializeAsString()).ok());
  auto model = registry_->Find({"", "legacy"});
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->owner(), "");
  EXPECT_EQ((*model)->codec_state_version(), 0u);
  // The fingerprint of before, so its chunks keep their root keys.
  EXPECT_EQ((*model)->fingerprint,
            "legacy|" + (*model)->context.layout.DebugString() + "|256");
  EXPECT_EQ(registry_->Find({"a", "legacy"}).status().code(),
            absl::StatusCode::kNotFound);
  // Updated in place, versioned, and charged to nobody.
  EXPECT_FALSE(*Register({"", "legacy"}, Spec("legacy", {{"t", "new"}})));
  Open();
  model = registry_->Find({"", "legacy"});
  ASSERT_TRUE(model.ok());
  EXPECT_EQ((*model)->codec_state_version(), 1u);
  auto at0 = registry_->AtStateVersion(*model, 0);
  ASSERT_TRUE(at0.ok());
  EXPECT_EQ((*at0)->context.codec_state.at("t"), "old");
  EXPECT_TRUE(trie_->usage().GetAll().empty());
}

TEST_F(ModelRegistryTest, ACommitStoresAPutsNewModelCharged) {
  auto model = ModelRegistry::FromSpec("a", Spec("fresh"), 1);
  ASSERT_TRUE(model.ok());
  std::vector<PendingNode> none;
  // The Put went to a shared namespace: the record is still its owner's.
  auto committed = trie_->Commit(
      none, {.name_space = "shared", .new_model = model->get()});
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ(trie_->usage().Get("a").bytes_models,
            static_cast<int64_t>((*model)->record_bytes));
  EXPECT_EQ(trie_->usage().Get("shared").bytes_models, 0);
  // A refusing quota of the owner's namespace counts the record.
  auto other = ModelRegistry::FromSpec("a", Spec("fresh2"), 1);
  committed = trie_->Commit(none, {.name_space = "a",
                                   .quota_bytes = static_cast<uint64_t>(
                                       (*model)->record_bytes + 10),
                                   .new_model = other->get()});
  EXPECT_EQ(committed.status().code(), absl::StatusCode::kResourceExhausted);
  Open();
  EXPECT_TRUE(registry_->Find({"a", "fresh"}).ok());
  EXPECT_EQ(registry_->Find({"a", "fresh2"}).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace seqkv
