// Commands with --model_dir take the RoPE from config.json: `seqkv
// codec-bench --model_dir` of a model whose config.json says rope_theta
// 500000 builds its layer-0 table without a --rope, and --rope still
// overrides it. Runs the built binary on a tiny synthetic model.
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/model/tiny_model.h"
#include "tests/run_command.h"
#include "tests/scoped_temp_dir.h"

namespace seqkv {
namespace {

using testing::RunCommand;

class ModelDirCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_.rope_theta = 500000.0;
    ASSERT_TRUE(testing::WriteTinyModel(dir_.string(), model_).ok());
    dump_ = dir_.string() + "/dump.safetensors";
    ASSERT_TRUE(testing::WriteTinyDump(dump_, model_, 300).ok());
  }

  testing::CommandResult CodecBench(const std::string& flags) {
    const std::string command = std::string(SEQKV_BIN_DIR) +
                                "/seqkv codec-bench --json --chunk_tokens 64 " +
                                flags + " " + dump_ + " 2>&1";
    testing::CommandResult run = RunCommand(command);
    if (run.exit_code != 0) ADD_FAILURE() << command << "\n" << run.out;
    return run;
  }

  testing::ScopedTempDir dir_{"seqkv-model-dir"};
  testing::TinyModel model_;
  std::string dump_;
};

TEST_F(ModelDirCommandTest, CodecBenchTakesRopeThetaFromConfigJson) {
  const testing::CommandResult run =
      CodecBench("--codecs raw,predictive --model_dir " + dir_.string());
  ASSERT_EQ(run.exit_code, 0);
  std::istringstream lines(run.out);
  std::string line;
  int reports = 0;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] != '{') continue;
    const nlohmann::json report = nlohmann::json::parse(line);
    ++reports;
    // The layer-0 table was built: the layout's theta matched config.json.
    EXPECT_GT(report.at("state_bytes").get<size_t>(),
              size_t{model_.vocab_size} * model_.num_kv_heads *
                  model_.head_dim * 2 * 2)
        << line;
    if (report.at("codec") == "raw")
      EXPECT_TRUE(report.at("bit_exact").get<bool>());
  }
  EXPECT_EQ(reports, 2) << run.out;
}

TEST_F(ModelDirCommandTest, RopeFlagOverridesConfigJson) {
  const std::string command =
      std::string(SEQKV_BIN_DIR) +
      "/seqkv codec-bench --json --codecs raw --rope rotate_half:10000 "
      "--model_dir " +
      dir_.string() + " " + dump_ + " 2>&1";
  const testing::CommandResult run = RunCommand(command);
  EXPECT_NE(run.exit_code, 0) << run.out;
  EXPECT_NE(run.out.find("rope_theta is 500000 but the layout says 10000"),
            std::string::npos)
      << run.out;
  // A style alone keeps config.json's theta.
  EXPECT_EQ(
      CodecBench("--codecs raw --rope rotate_half --model_dir " + dir_.string())
          .exit_code,
      0);
}

TEST_F(ModelDirCommandTest, BadConfigJsonIsNamed) {
  testing::ScopedTempDir bad("seqkv-model-dir");
  std::ofstream(bad.string() + "/config.json") << R"({"hidden_size": 64})";
  const std::string command =
      std::string(SEQKV_BIN_DIR) +
      "/seqkv codec-bench --json --codecs raw --model_dir " + bad.string() +
      " " + dump_ + " 2>&1";
  const testing::CommandResult run = RunCommand(command);
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.out.find(bad.string() + "/config.json: missing "
                                        "'num_hidden_layers'"),
            std::string::npos)
      << run.out;
}

}  // namespace
}  // namespace seqkv
