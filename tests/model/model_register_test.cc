// `seqkv model register --model_dir` of a model whose config.json says
// rope_theta 500000, against a real server: the registered layout carries
// that theta and the layer-0 table, a `seqkv put` without --rope is accepted,
// and one whose --rope disagrees is refused naming the field that differs.
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"
#include "tests/model/tiny_model.h"
#include "tests/run_command.h"
#include "tests/scoped_temp_dir.h"

namespace seqkv {
namespace {

using testing::CommandResult;
using testing::RunCommand;

const std::string kSeqkv = std::string(SEQKV_BIN_DIR) + "/seqkv";

class ModelRegisterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_.rope_theta = 500000.0;
    ASSERT_TRUE(testing::WriteTinyModel(dir_.string(), model_).ok());
    dump_ = dir_.string() + "/dump.safetensors";
    ASSERT_TRUE(testing::WriteTinyDump(dump_, model_, 300).ok());
    auto server = testing::ServerProcess::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  CommandResult Seqkv(const std::string& args) {
    return RunCommand(absl::StrCat(kSeqkv, " ", args, " --server ",
                                   server_->address(), " 2>&1"));
  }

  testing::ScopedTempDir dir_{"seqkv-model-register"};
  testing::TinyModel model_;
  std::string dump_;
  std::unique_ptr<testing::ServerProcess> server_;
};

TEST_F(ModelRegisterTest, RegisterFromConfigJsonThenPutWithoutRope) {
  const CommandResult registered =
      Seqkv("model register --model tiny --model_dir " + dir_.string());
  ASSERT_EQ(registered.exit_code, 0) << registered.out;
  EXPECT_EQ(registered.out.find("no layer-0 table"), std::string::npos)
      << registered.out;

  auto model = server_->Connect();
  ASSERT_TRUE(model.ok()) << model.status();
  auto shown = (*model)->GetModel("tiny");
  ASSERT_TRUE(shown.ok()) << shown.status();
  EXPECT_EQ(shown->layout.num_layers, model_.num_layers);
  EXPECT_EQ(shown->layout.num_kv_heads, model_.num_kv_heads);
  EXPECT_EQ(shown->layout.head_dim, model_.head_dim);
  EXPECT_EQ(shown->layout.rope.style, RopeStyle::kRotateHalf);
  EXPECT_EQ(shown->layout.rope.theta, 500000.0);
  EXPECT_TRUE(shown->codec_state.contains("layer0"));

  // No --rope: the registered model's RoPE.
  const CommandResult put = Seqkv("put --model tiny " + dump_);
  ASSERT_EQ(put.exit_code, 0) << put.out;
  EXPECT_NE(put.out.find("\"tokens\":300"), std::string::npos) << put.out;

  // A --rope that disagrees is refused, naming the field.
  const CommandResult wrong =
      Seqkv("put --model tiny --rope rotate_half:10000 " + dump_);
  EXPECT_NE(wrong.exit_code, 0) << wrong.out;
  EXPECT_NE(wrong.out.find("rope theta 10000 (expected 500000)"),
            std::string::npos)
      << wrong.out;
}

TEST_F(ModelRegisterTest, RopeFlagOverridesConfigJson) {
  const CommandResult registered = Seqkv(
      "model register --model tiny-interleaved --rope interleaved "
      "--model_dir " +
      dir_.string());
  ASSERT_EQ(registered.exit_code, 0) << registered.out;
  auto client = server_->Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  auto shown = (*client)->GetModel("tiny-interleaved");
  ASSERT_TRUE(shown.ok()) << shown.status();
  EXPECT_EQ(shown->layout.rope.style, RopeStyle::kInterleaved);
  EXPECT_EQ(shown->layout.rope.theta, 500000.0);  // kept from config.json
}

}  // namespace
}  // namespace seqkv
