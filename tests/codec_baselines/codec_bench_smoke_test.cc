// Runs the built `seqkv codec-bench` on one real file and checks its JSON.
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/run_command.h"
#include "tests/test_data.h"

namespace seqkv {
namespace {

using testing::RunCommand;

TEST(CodecBench, JsonOnARealFile) {
  SEQKV_NEEDS_TEST_DATA("kv/a_dev_03.safetensors");
  const std::string command =
      std::string(SEQKV_BIN_DIR) +
      "/seqkv codec-bench --codecs raw,zstd:3,turbo:3 --json " +
      SEQKV_DATA_DIR + "/kv/a_dev_03.safetensors";
  const testing::CommandResult run = RunCommand(command);
  ASSERT_EQ(run.exit_code, 0) << command << "\n" << run.out;
  const std::string& output = run.out;

  std::map<std::string, nlohmann::json> by_codec;
  size_t start = 0;
  while (start < output.size()) {
    size_t end = output.find('\n', start);
    if (end == std::string::npos) end = output.size();
    if (end > start) {
      nlohmann::json object =
          nlohmann::json::parse(output.substr(start, end - start));
      by_codec[object.at("codec").get<std::string>()] = object;
    }
    start = end + 1;
  }
  ASSERT_EQ(by_codec.size(), 3u) << output;
  for (const char* field :
       {"bits_per_element", "rel_mse_k", "rel_mse_v", "cosine", "encode_mbps",
        "decode_mbps", "bit_exact"})
    for (const auto& [codec, object] : by_codec)
      EXPECT_TRUE(object.contains(field)) << codec << " lacks " << field;

  const nlohmann::json& raw = by_codec.at("raw");
  EXPECT_TRUE(raw.at("bit_exact").get<bool>());
  EXPECT_DOUBLE_EQ(raw.at("bits_per_element").get<double>(), 16.0);
  EXPECT_EQ(raw.at("rel_mse_k").get<double>(), 0.0);

  const nlohmann::json& zstd = by_codec.at("zstd:3");
  EXPECT_TRUE(zstd.at("bit_exact").get<bool>());
  EXPECT_LT(zstd.at("bits_per_element").get<double>(), 14.0);

  const nlohmann::json& turbo = by_codec.at("turbo:3");
  EXPECT_FALSE(turbo.at("bit_exact").get<bool>());
  EXPECT_NEAR(turbo.at("bits_per_element").get<double>(), 3.125, 0.001);
  for (const char* field : {"rel_mse_k", "rel_mse_v"}) {
    const double mse = turbo.at(field).get<double>();
    EXPECT_GT(mse, 0.030) << field;  // reference figure: 0.0335
    EXPECT_LT(mse, 0.037) << field;
  }
  EXPECT_GT(turbo.at("cosine").get<double>(), 0.97);
}

}  // namespace
}  // namespace seqkv
