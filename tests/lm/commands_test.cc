// The `seqkv eval`, `calibrate` and `generate` commands, run as a user runs
// them: the real binary, the real model, and for generate a real server.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"
#include "tests/run_command.h"
#include "tests/test_data.h"

namespace seqkv {
namespace {

const std::string kDataDir = SEQKV_DATA_DIR;
const std::string kSeqkv = std::string(SEQKV_BIN_DIR) + "/seqkv";

using testing::CommandResult;
using testing::RunCommand;

std::string KvFile(const std::string& name) {
  return kDataDir + "/kv/" + name + ".safetensors";
}

nlohmann::json ParseOrFail(const std::string& text) {
  auto json = nlohmann::json::parse(text, nullptr, false);
  EXPECT_FALSE(json.is_discarded()) << text;
  return json;
}

void ExpectLosslessResults(const nlohmann::json& results) {
  ASSERT_TRUE(results.is_array());
  ASSERT_EQ(results.size(), 2u);
  for (const auto& result : results) {
    SCOPED_TRACE(result.dump());
    // Bit-identical caches give bit-identical predictions: exactly zero.
    EXPECT_EQ(result["delta_nll"].get<double>(), 0.0);
    EXPECT_EQ(result["kl"].get<double>(), 0.0);
    EXPECT_EQ(result["top1_agreement"].get<double>(), 1.0);
    EXPECT_EQ(result["rel_mse_k"].get<double>(), 0.0);
    EXPECT_EQ(result["rel_mse_v"].get<double>(), 0.0);
    // The runtime reproduces the reference's NLL on the same tokens.
    EXPECT_NEAR(result["nll_exact"].get<double>(),
                result["nll_file"].get<double>(), 0.02);
    EXPECT_GT(result["bits_per_element"].get<double>(), 0.0);
    EXPECT_LE(result["bits_per_element"].get<double>(), 16.0);
  }
}

TEST(EvalCommandTest, LosslessCodecsChangeNothing) {
  SEQKV_NEEDS_TEST_DATA("lm", "kv/a_dev_00.safetensors",
                        "kv/b_rag_01_D2_D1.safetensors");
  const CommandResult result = RunCommand(
      absl::StrCat(kSeqkv, " eval --model_dir ", kDataDir,
                   "/lm --codec raw,lossless --max_tokens 384 --json ",
                   KvFile("a_dev_00"), " ", KvFile("b_rag_01_D2_D1")));
  ASSERT_EQ(result.exit_code, 0) << result.out;
  const nlohmann::json results = ParseOrFail(result.out);
  ExpectLosslessResults(results);
  EXPECT_EQ(results[0]["codec"], "raw");
  EXPECT_EQ(results[0]["bits_per_element"].get<double>(), 16.0);
  EXPECT_LT(results[1]["bits_per_element"].get<double>(), 16.0);
  // 2 files x (384 - 288 - 1) predicted tokens.
  EXPECT_EQ(results[0]["tokens"].get<int>(), 2 * 95);
}

// Contexts cut from a token stream: the model computes their exact caches.
TEST(EvalCommandTest, DocumentsFromATokenStream) {
  SEQKV_NEEDS_TEST_DATA("lm", "kv/dev_eval_tokens.safetensors",
                        "kv/a_dev_00.safetensors");
  const CommandResult result = RunCommand(absl::StrCat(
      kSeqkv, " eval --model_dir ", kDataDir,
      "/lm --codec raw,turbo:4 --max_tokens 128 --num_documents 2 --json "
      "--documents ",
      KvFile("dev_eval_tokens")));
  ASSERT_EQ(result.exit_code, 0) << result.out;
  const nlohmann::json results = ParseOrFail(result.out);
  ASSERT_EQ(results.size(), 2u);
  // 2 documents x (128 - 96 - 1) predicted tokens.
  EXPECT_EQ(results[0]["tokens"].get<int>(), 2 * 31);
  EXPECT_EQ(results[0]["kl"].get<double>(), 0.0);
  EXPECT_GT(results[1]["kl"].get<double>(), 0.0);
  // A file that is no token stream is refused.
  EXPECT_NE(RunCommand(absl::StrCat(kSeqkv, " eval --model_dir ", kDataDir,
                                    "/lm --codec raw --documents ",
                                    KvFile("a_dev_00")))
                .exit_code,
            0);
}

TEST(EvalCommandTest, RejectsBadArguments) {
  SEQKV_NEEDS_TEST_DATA("lm", "kv/a_dev_00.safetensors");
  EXPECT_NE(
      RunCommand(absl::StrCat(kSeqkv, " eval --model_dir ", kDataDir,
                              "/lm --codec nosuchcodec ", KvFile("a_dev_00")))
          .exit_code,
      0);
  EXPECT_NE(RunCommand(absl::StrCat(kSeqkv, " eval --model_dir ", kDataDir,
                                    "/lm --codec raw --prefix_tokens 5000 ",
                                    KvFile("a_dev_00")))
                .exit_code,
            0);
  EXPECT_NE(
      RunCommand(absl::StrCat(kSeqkv,
                              " eval --model_dir /nonexistent --codec raw ",
                              KvFile("a_dev_00")))
          .exit_code,
      0);
}

TEST(CalibrateCommandTest, RejectsNoiseLevelsThatGiveNoSlope) {
  SEQKV_NEEDS_TEST_DATA("lm", "kv/a_dev_00.safetensors");
  // The floor's noise level must lie below the measured one.
  for (const char* levels :
       {"--noise_rel_mse 0.01 --floor_rel_mse 0.01",
        "--noise_rel_mse 0 --floor_rel_mse 0", "--floor_rel_mse -0.001"}) {
    const CommandResult result = RunCommand(absl::StrCat(
        kSeqkv, " calibrate --model_dir ", kDataDir, "/lm --out /dev/null ",
        levels, " ", KvFile("a_dev_00"), " 2>&1"));
    EXPECT_NE(result.exit_code, 0) << levels;
    EXPECT_NE(result.out.find("rel_mse must"), std::string::npos)
        << levels << ": " << result.out;
  }
}

nlohmann::json Calibrate(const std::string& a, const std::string& b) {
  const std::string out =
      (std::filesystem::temp_directory_path() /
       absl::StrCat("seqkv_profile_", getpid(), "_", a, ".json"))
          .string();
  const CommandResult result = RunCommand(absl::StrCat(
      kSeqkv, " calibrate --model_dir ", kDataDir, "/lm --out ", out,
      // Two short files give a measurable slope at a noise level above the
      // default one (which suits many full-length caches).
      " --max_tokens 384 --noise_rel_mse 0.05 --model kvlm-23m ", KvFile(a),
      " ", KvFile(b)));
  EXPECT_EQ(result.exit_code, 0);
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  std::filesystem::remove(out);
  return ParseOrFail(text.str());
}

// Groups ordered from the most to the least sensitive, as "3k", "0v", ...
std::vector<std::string> Ranking(const nlohmann::json& profile) {
  std::vector<std::pair<double, std::string>> groups;
  for (const auto& group : profile["groups"])
    groups.emplace_back(-group["sensitivity"].get<double>(),
                        absl::StrCat(group["layer"].get<int>(),
                                     group["tensor"].get<std::string>()));
  std::sort(groups.begin(), groups.end());
  std::vector<std::string> ranking;
  for (const auto& [score, name] : groups) ranking.push_back(name);
  return ranking;
}

// --kl_budgets measures the profile end to end and stores the map; eval
// then says what each kl= asked for against what it measured.
TEST(CalibrateCommandTest, KlBudgetsMapBudgetsToMeasuredKl) {
  SEQKV_NEEDS_TEST_DATA("lm", "kv/a_dev_00.safetensors",
                        "kv/a_dev_01.safetensors", "kv/a_dev_05.safetensors");
  const std::string out =
      (std::filesystem::temp_directory_path() /
       absl::StrCat("seqkv_profile_", getpid(), "_map.json"))
          .string();
  const CommandResult calibrated = RunCommand(absl::StrCat(
      kSeqkv, " calibrate --model_dir ", kDataDir, "/lm --out ", out,
      " --max_tokens 384 --noise_rel_mse 0.05 --kl_budgets 0.001,0.008 ",
      KvFile("a_dev_00"), " ", KvFile("a_dev_01"), " 2>&1"));
  ASSERT_EQ(calibrated.exit_code, 0) << calibrated.out;
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json profile = ParseOrFail(text.str());
  ASSERT_TRUE(profile.contains("kl_map")) << text.str();
  const auto& map = profile["kl_map"];
  ASSERT_EQ(map.size(), 2u);
  EXPECT_EQ(map[0]["budget"].get<double>(), 0.001);
  EXPECT_EQ(map[1]["budget"].get<double>(), 0.008);
  // Eight times the budget measures more KL.
  EXPECT_GT(map[0]["kl"].get<double>(), 0.0);
  EXPECT_GT(map[1]["kl"].get<double>(), map[0]["kl"].get<double>());
  const CommandResult eval = RunCommand(absl::StrCat(
      kSeqkv, " eval --model_dir ", kDataDir, "/lm --profile ", out,
      " --codec predictive:kl=0.002 --max_tokens 384 ", KvFile("a_dev_05")));
  std::filesystem::remove(out);
  ASSERT_EQ(eval.exit_code, 0) << eval.out;
  EXPECT_NE(eval.out.find("predictive:kl=0.002: requested KL 0.002, measured"),
            std::string::npos)
      << eval.out;
  const CommandResult bad = RunCommand(absl::StrCat(
      kSeqkv, " calibrate --model_dir ", kDataDir, "/lm --out /dev/null ",
      "--kl_budgets 0.004,0.001 ", KvFile("a_dev_00"), " 2>&1"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.out.find("--kl_budgets must be increasing"), std::string::npos)
      << bad.out;
}

TEST(CalibrateCommandTest, ProfileIsStableAcrossFilePairs) {
  SEQKV_NEEDS_TEST_DATA("lm", "kv/a_dev_00.safetensors",
                        "kv/a_dev_01.safetensors", "kv/a_dev_02.safetensors",
                        "kv/a_dev_04.safetensors");
  const nlohmann::json first = Calibrate("a_dev_00", "a_dev_01");
  const nlohmann::json second = Calibrate("a_dev_02", "a_dev_04");
  for (const auto* profile : {&first, &second}) {
    ASSERT_TRUE(profile->is_object());
    EXPECT_EQ((*profile)["model"], "kvlm-23m");
    EXPECT_EQ((*profile)["metric"], "kl_per_rel_mse");
    ASSERT_EQ((*profile)["groups"].size(), 12u);  // 6 layers x K, V
    for (const auto& group : (*profile)["groups"]) {
      EXPECT_TRUE(group["tensor"] == "k" || group["tensor"] == "v");
      EXPECT_GT(group["sensitivity"].get<double>(), 0.0);
      // One weight per channel (2 KV heads x 128), positive, mean 1.
      const auto& weights = group["channel_weights"];
      ASSERT_EQ(weights.size(), 256u);
      double sum = 0;
      for (const auto& weight : weights) {
        EXPECT_GT(weight.get<double>(), 0.0);
        sum += weight.get<double>();
      }
      EXPECT_NEAR(sum / 256, 1.0, 1e-9);
    }
  }
  const std::vector<std::string> a = Ranking(first);
  const std::vector<std::string> b = Ranking(second);
  SCOPED_TRACE(absl::StrCat("first: ", absl::StrJoin(a, " "),
                            "\nsecond: ", absl::StrJoin(b, " ")));
  // The most sensitive group is the same, the rankings agree overall
  // (Spearman's rho), and each pair's least sensitive group is among the
  // other pair's less sensitive half. (The small slopes at the bottom are
  // differences of two noisy KLs; their exact order is not stable.)
  EXPECT_EQ(a.front(), b.front());
  double squared_rank_gaps = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double gap =
        double(std::find(b.begin(), b.end(), a[i]) - b.begin()) - double(i);
    squared_rank_gaps += gap * gap;
  }
  const double n = double(a.size());
  EXPECT_GE(1 - 6 * squared_rank_gaps / (n * (n * n - 1)), 0.5);
  EXPECT_NE(std::find(b.end() - 6, b.end(), a.back()), b.end());
  EXPECT_NE(std::find(a.end() - 6, a.end(), b.back()), a.end());
}

class ServerCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SEQKV_NEEDS_TEST_DATA("lm");
    auto server = testing::ServerProcess::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  std::unique_ptr<testing::ServerProcess> server_;
};

TEST_F(ServerCommandTest, EvalThroughServerIsLosslessForLosslessCodecs) {
  const CommandResult result = RunCommand(
      absl::StrCat(kSeqkv, " eval --server ", server_->address(),
                   " --via_server --model_dir ", kDataDir,
                   "/lm --model kvlm-23m --codec raw,lossless --max_tokens 300 "
                   "--json ",
                   KvFile("a_dev_03"), " ", KvFile("c_chat_turn2")));
  ASSERT_EQ(result.exit_code, 0) << result.out;
  ExpectLosslessResults(ParseOrFail(result.out));
}

// A KL budget through a live server: the model registered with its layer-0
// table and the shipped profile (channel weights included), the cache Put
// with predictive:kl and fetched back, decodes to what the local codec gives.
TEST_F(ServerCommandTest, EvalThroughServerWithAKlBudget) {
  const std::string profile = std::string(SEQKV_SOURCE_DIR) +
                              "/tools/lm/profiles/kvlm-23m.profile.json";
  const CommandResult registered = RunCommand(absl::StrCat(
      kSeqkv, " model register --server ", server_->address(),
      " --model kvlm-23m --model_dir ", kDataDir, "/lm --profile ", profile));
  ASSERT_EQ(registered.exit_code, 0) << registered.out;
  const std::string args = absl::StrCat(
      " --model_dir ", kDataDir, "/lm --model kvlm-23m --profile ", profile,
      " --codec predictive:kl=0.0035 --max_tokens 384 --json ",
      KvFile("a_dev_05"));
  const CommandResult remote = RunCommand(absl::StrCat(
      kSeqkv, " eval --server ", server_->address(), " --via_server", args));
  const CommandResult local = RunCommand(absl::StrCat(kSeqkv, " eval", args));
  ASSERT_EQ(remote.exit_code, 0) << remote.out;
  ASSERT_EQ(local.exit_code, 0) << local.out;
  const nlohmann::json a = ParseOrFail(remote.out)[0];
  const nlohmann::json b = ParseOrFail(local.out)[0];
  EXPECT_GT(a["kl"].get<double>(), 0.0);
  EXPECT_LT(a["kl"].get<double>(), 0.01);
  EXPECT_LT(a["bits_per_element"].get<double>(), 3.0);
  // The same bytes decoded the same way: identical predictions.
  EXPECT_EQ(a["kl"].get<double>(), b["kl"].get<double>());
  EXPECT_EQ(a["rel_mse_k"].get<double>(), b["rel_mse_k"].get<double>());
}

constexpr char kPrompt[] =
    "The following is a short description of the ls command.\n\n"
    "NAME\n       ls - list directory contents\n\nSYNOPSIS\n"
    "       ls [OPTION]... [FILE]...\n\nDESCRIPTION\n"
    "       List information about the FILEs (the current directory by "
    "default). Sort entries alphabetically if none of -cftuvSUX nor --sort "
    "is specified.\n\n       Mandatory arguments to long options are "
    "mandatory for short options too.\n\n       -a, --all\n"
    "              do not ignore entries starting with .\n\n"
    "       -A, --almost-all\n              do not list implied . and ..\n\n"
    "       --author\n              with -l, print the author of each file\n\n"
    "       -b, --escape\n              print C-style escapes for nongraphic "
    "characters\n\n       -l     use a long listing format\n\n"
    "       -t     sort by time, newest first\n\n       -r, --reverse\n"
    "              reverse order while sorting\n\n       -S     sort by";

TEST_F(ServerCommandTest, GenerateReusesTheStoredPrefixExactly) {
  const std::string command =
      absl::StrCat(kSeqkv, " generate --server ", server_->address(),
                   " --model_dir ", kDataDir,
                   "/lm --model kvlm-23m --codec lossless --max_new_tokens 12 "
                   "--compare --json --prompt '",
                   kPrompt, "'");
  const CommandResult first = RunCommand(command);
  ASSERT_EQ(first.exit_code, 0) << first.out;
  const nlohmann::json one = ParseOrFail(first.out);
  const CommandResult second = RunCommand(command);
  ASSERT_EQ(second.exit_code, 0) << second.out;
  const nlohmann::json two = ParseOrFail(second.out);

  const int prompt_tokens = one["prompt_tokens"].get<int>();
  EXPECT_GT(prompt_tokens, 150);
  EXPECT_EQ(one["served_tokens"].get<int>(), 0);
  EXPECT_GE(two["served_tokens"].get<int>(), 0.9 * prompt_tokens);
  ASSERT_EQ(one["generated"].size(), 12u);
  // Token for token the same as without seqkv, and as the first run.
  EXPECT_TRUE(one["identical"].get<bool>());
  EXPECT_TRUE(two["identical"].get<bool>());
  EXPECT_EQ(two["generated"], one["generated"]);
  EXPECT_EQ(two["generated_without_seqkv"], one["generated"]);
  EXPECT_EQ(one["stored_tokens"].get<int>(), prompt_tokens + 11);
}

}  // namespace
}  // namespace seqkv
