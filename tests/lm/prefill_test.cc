// `seqkv prefill`, run as a user runs it (seqkv-lm through the seqkv
// dispatcher, the real model): the file it writes holds the cache that the
// reference forward pass stored in shared/data/kv.
#include <unistd.h>

#include <filesystem>
#include <span>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "model/kv_cache.h"
#include "nlohmann/json.hpp"
#include "tests/run_command.h"
#include "tests/test_data.h"
#include "tools/lm/bpe_tokenizer.h"
#include "tools/lm/fidelity.h"

namespace seqkv {
namespace {

const std::string kDataDir = SEQKV_DATA_DIR;
const std::string kSeqkv = std::string(SEQKV_BIN_DIR) + "/seqkv";
constexpr uint32_t kTokens = 64;

// The runtime's tolerances against the reference (tests/lm/runtime_test.cc,
// docs/RUNTIME.md).
constexpr double kMaxRelMseK = 5e-5;
constexpr double kMaxRelMseV = 1.5e-4;

using testing::CommandResult;
using testing::RunCommand;

class PrefillCommandTest : public ::testing::Test {
 protected:
  void TearDown() override {
    std::error_code error;
    std::filesystem::remove(out_, error);
  }
  const std::string out_ =
      (std::filesystem::temp_directory_path() /
       absl::StrCat("seqkv_prefill_test_", getpid(), ".safetensors"))
          .string();
};

TEST_F(PrefillCommandTest, TokenIdsGiveTheStoredCache) {
  SEQKV_NEEDS_TEST_DATA("lm", "kv/a_dev_00.safetensors");
  auto stored = ReadKvCacheFile(kDataDir + "/kv/a_dev_00.safetensors");
  ASSERT_TRUE(stored.ok()) << stored.status();
  const KvCache reference = lm::PrefixCache(*stored, kTokens);

  const CommandResult result = RunCommand(
      absl::StrCat(kSeqkv, " prefill --model_dir ", kDataDir, "/lm --tokens ",
                   absl::StrJoin(reference.tokens, ","), " --out ", out_));
  ASSERT_EQ(result.exit_code, 0) << result.out;
  const auto json = nlohmann::json::parse(result.out, nullptr, false);
  ASSERT_FALSE(json.is_discarded()) << result.out;
  EXPECT_EQ(json["file"], out_);
  EXPECT_EQ(json["tokens"].get<int>(), int(kTokens));
  EXPECT_EQ(json["layout"], "6x2x128:bf16");
  EXPECT_GE(json["prefill_ms"].get<double>(), 0.0);

  auto written = ReadKvCacheFile(out_);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written->tokens, reference.tokens);
  ASSERT_EQ(written->k.size(), reference.k.size());
  ASSERT_EQ(written->v.size(), reference.v.size());
  EXPECT_LT(lm::CompareTensor(reference, *written, false).relative(),
            kMaxRelMseK);
  EXPECT_LT(lm::CompareTensor(reference, *written, true).relative(),
            kMaxRelMseV);
}

// Single-quoted for /bin/sh.
std::string ShellQuote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text)
    quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// --text is tokenized after the BOS, as the stored caches were made: the
// text of a stored document's start gives its tokens and a close cache.
TEST_F(PrefillCommandTest, TextIsTokenizedAfterTheBos) {
  SEQKV_NEEDS_TEST_DATA("lm/tokenizer.json", "kv/a_dev_00.safetensors");
  auto stored = ReadKvCacheFile(kDataDir + "/kv/a_dev_00.safetensors");
  ASSERT_TRUE(stored.ok()) << stored.status();
  auto tokenizer = lm::BpeTokenizer::Load(kDataDir + "/lm/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  // The document after the BOS, cut at a token boundary.
  auto text = tokenizer->Decode(std::span(stored->tokens).subspan(1, kTokens));
  ASSERT_TRUE(text.ok()) << text.status();

  const CommandResult result = RunCommand(
      absl::StrCat(kSeqkv, " prefill --model_dir ", kDataDir, "/lm --text ",
                   ShellQuote(*text), " --out ", out_));
  ASSERT_EQ(result.exit_code, 0) << result.out;
  auto written = ReadKvCacheFile(out_);
  ASSERT_TRUE(written.ok()) << written.status();
  ASSERT_TRUE(written->Validate().ok());
  // Only the last word, cut where the tokens end, may encode differently.
  constexpr uint32_t kSame = kTokens - 8;
  ASSERT_GE(written->num_tokens(), kSame);
  const KvCache prefix = lm::PrefixCache(*written, kSame);
  const KvCache reference = lm::PrefixCache(*stored, kSame);
  EXPECT_EQ(prefix.tokens, reference.tokens);  // tokens[0]: the BOS
  EXPECT_LT(lm::CompareTensor(reference, prefix, false).relative(),
            kMaxRelMseK);
  EXPECT_LT(lm::CompareTensor(reference, prefix, true).relative(), kMaxRelMseV);

  // Empty text is refused, naming the flag; no file is written.
  std::filesystem::remove(out_);
  EXPECT_EQ(RunCommand(absl::StrCat(kSeqkv, " prefill --model_dir ", kDataDir,
                                    "/lm --text '' --out ", out_, " 2>&1"))
                .exit_code,
            2);
  const CommandResult empty =
      RunCommand(absl::StrCat(kSeqkv, " prefill --model_dir ", kDataDir,
                              "/lm --text ' ' --out ", out_, " 2>&1"));
  EXPECT_EQ(empty.exit_code, 1) << empty.out;
  EXPECT_NE(empty.out.find("--text"), std::string::npos) << empty.out;
  EXPECT_FALSE(std::filesystem::exists(out_));
}

TEST_F(PrefillCommandTest, MissingOutShowsHelpAndWritesNothing) {
  SEQKV_NEEDS_TEST_DATA("lm");
  const CommandResult result = RunCommand(absl::StrCat(
      "cd ", std::filesystem::temp_directory_path().string(), " && ", kSeqkv,
      " prefill --model_dir ", kDataDir, "/lm --tokens 0,1,2 2>&1"));
  EXPECT_EQ(result.exit_code, 2) << result.out;
  EXPECT_NE(result.out.find("usage: seqkv prefill"), std::string::npos)
      << result.out;
  EXPECT_FALSE(std::filesystem::exists(out_));
}

TEST(PrefillHelpTest, ListsItsFlags) {
  const CommandResult help =
      RunCommand(absl::StrCat(kSeqkv, " prefill --help 2>&1"));
  EXPECT_EQ(help.exit_code, 0) << help.out;
  for (const char* flag :
       {"--text", "--tokens", "--model_dir", "--out", "--add_bos"})
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag << help.out;
  EXPECT_EQ(help.out.find("not defined in this binary"), std::string::npos)
      << help.out;
}

TEST_F(PrefillCommandTest, BadInputGivesAClearError) {
  SEQKV_NEEDS_TEST_DATA("lm");
  const CommandResult no_dir =
      RunCommand(absl::StrCat(kSeqkv,
                              " prefill --model_dir /nonexistent/model --text "
                              "hello --out ",
                              out_, " 2>&1"));
  EXPECT_EQ(no_dir.exit_code, 1) << no_dir.out;
  EXPECT_NE(no_dir.out.find("/nonexistent/model"), std::string::npos)
      << no_dir.out;
  const CommandResult bad_ids =
      RunCommand(absl::StrCat(kSeqkv, " prefill --model_dir ", kDataDir,
                              "/lm --tokens 0,99999999 --out ", out_, " 2>&1"));
  EXPECT_NE(bad_ids.exit_code, 0) << bad_ids.out;
  EXPECT_FALSE(std::filesystem::exists(out_));
}

}  // namespace
}  // namespace seqkv
