// A store written by release 0.1 (testdata/, made by make_store.sh with
// that release's binaries) opens and serves bit-exact today: the disk
// format is storage's alone and moves with neither the wire API nor the
// code that writes it.
#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "model/kv_cache.h"
#include "tests/integration/server_process.h"
#include "tests/scoped_temp_dir.h"

namespace seqkv {
namespace {

const std::string kTestData = SEQKV_SOURCE_DIR "/tests/compat/testdata";

class CompatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The server writes to its store: work on a copy, where ServerProcess
    // keeps the RocksDB directory.
    std::filesystem::create_directories(store_);
    std::filesystem::copy(kTestData + "/store", store_ / "db",
                          std::filesystem::copy_options::recursive);
    auto server = testing::ServerProcess::Start({}, store_.string());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    auto client = server_->Connect();
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
    for (const char* name : {"a", "b"}) {
      auto cache = ReadKvCacheFile(kTestData + "/" + name + ".safetensors");
      ASSERT_TRUE(cache.ok()) << cache.status();
      inputs_.push_back(std::move(*cache));
    }
  }

  void ExpectServedExactly(const std::string& model, const KvCache& input) {
    auto got = client_->Get({.model = model}, input.tokens);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->num_tokens(), input.num_tokens()) << model;
    EXPECT_TRUE(got->k == input.k) << model;
    EXPECT_TRUE(got->v == input.v) << model;
  }

  testing::ScopedTempDir temp_dir_;
  const std::filesystem::path store_ = temp_dir_.path() / "store";
  std::unique_ptr<testing::ServerProcess> server_;
  std::unique_ptr<Client> client_;
  std::vector<KvCache> inputs_;
};

TEST_F(CompatTest, ServesWhatTheOldReleaseStoredBitExact) {
  ExpectServedExactly("compat-raw", inputs_[0]);
  ExpectServedExactly("compat-raw", inputs_[1]);
  ExpectServedExactly("compat-lossless", inputs_[0]);
  auto model = client_->GetModel("compat-raw");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->layout.num_layers, 2u);
  EXPECT_EQ(model->layout.num_kv_heads, 1u);
  EXPECT_EQ(model->layout.head_dim, 64u);
  EXPECT_EQ(model->layout.rope.style, RopeStyle::kRotateHalf);
  EXPECT_EQ(model->layout.rope.theta, 10000.0);
  EXPECT_EQ(model->chunk_tokens, 256u);
}

TEST_F(CompatTest, OldRecordsDeduplicateAndCountAsBefore) {
  // a and b share their first chunk: 3 raw chunks and 2 lossless ones.
  auto lookup = client_->Lookup("compat-raw", inputs_[1].tokens);
  ASSERT_TRUE(lookup.ok()) << lookup.status();
  EXPECT_EQ(lookup->matched_tokens, 300u);
  auto stats = server_->AdminGet("/v1/stats");
  ASSERT_TRUE(stats.ok()) << stats.status();
  const auto global = nlohmann::json::parse(*stats)["global"];
  EXPECT_EQ(global["chunks_stored"], 5) << *stats;
  EXPECT_EQ(global["bytes_stored"], 283074) << *stats;
  KvCache input = inputs_[0];
  input.layout.rope = {RopeStyle::kRotateHalf, 10000.0};
  auto put = client_->Put({.model = "compat-raw", .codec = "raw"}, input);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->chunks_new, 0u);
  EXPECT_EQ(put->chunks_deduped, 2u);
  // A Delete of the old records frees exactly what they took.
  auto deleted = client_->Delete("compat-lossless", {});
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->chunks_deleted, 2u);
  ASSERT_TRUE(server_->Restart().ok());
  auto client = server_->Connect();
  ASSERT_TRUE(client.ok());
  EXPECT_EQ((*client)->Lookup("compat-lossless", inputs_[0].tokens)
                ->matched_tokens,
            0u);
}

}  // namespace
}  // namespace seqkv
