// The three CLI binaries as a user runs them: every --help helps and exits 0,
// `seqkv COMMAND` reaches the binary that holds COMMAND, a missing binary is
// named, commands that write need to be told what to write, and the client
// binary links none of the runtime's or the benchmark peers' libraries.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/load/local_server.h"
#include "nlohmann/json.hpp"
#include "tests/run_command.h"
#include "tests/scoped_temp_dir.h"

namespace seqkv {
namespace {

using testing::CommandResult;
using testing::RunCommand;

const std::string kBin = SEQKV_BIN_DIR;

// Runs `command` with stderr joined to stdout.
CommandResult RunJoined(const std::string& command) {
  return RunCommand(command + " 2>&1");
}

// `command` exits 0 and its help lists --`flag`, and every flag its
// command table entry names exists.
void ExpectHelp(const std::string& command, const std::string& flag) {
  SCOPED_TRACE(command);
  const CommandResult run = RunJoined(command);
  EXPECT_EQ(run.exit_code, 0) << run.out;
  EXPECT_TRUE(absl::StrContains(run.out, "--" + flag)) << run.out;
  EXPECT_FALSE(absl::StrContains(run.out, "not defined in this binary"))
      << run.out;
}

TEST(CliHelpTest, EveryBinaryListsItsOwnFlags) {
  ExpectHelp(kBin + "/seqkv --help", "server");
  ExpectHelp(kBin + "/seqkv help", "api_key");
  ExpectHelp(kBin + "/seqkv put --help", "model");
  ExpectHelp(kBin + "/seqkv lookup --help", "by_chunks");
  ExpectHelp(kBin + "/seqkv get --help", "begin_token");
  ExpectHelp(kBin + "/seqkv model --help", "default_codec");
  ExpectHelp(kBin + "/seqkv stats --help", "admin_token");
  ExpectHelp(kBin + "/seqkv-bench bench --help", "duration_s");
  ExpectHelp(kBin + "/seqkv-bench replay --help", "capacity_blocks");
  ExpectHelp(kBin + "/seqkv-bench codec-bench --help", "codecs");
  ExpectHelp(kBin + "/seqkv-lm eval --help", "via_server");
  ExpectHelp(kBin + "/seqkv-lm calibrate --help", "noise_rel_mse");
  ExpectHelp(kBin + "/seqkv-lm generate --help", "max_new_tokens");
  ExpectHelp(kBin + "/seqkv-server --help", "data_dir");
}

TEST(CliHelpTest, ServerHelpListsOnlyServerFlags) {
  const CommandResult run = RunJoined(kBin + "/seqkv-server --help");
  EXPECT_EQ(run.exit_code, 0) << run.out;
  EXPECT_TRUE(absl::StrContains(run.out, "--listen")) << run.out;
  EXPECT_FALSE(absl::StrContains(run.out, "--flagfile")) << run.out;
}

TEST(CliHelpTest, HelpAsAFlagValueIsAValue) {
  // "-h" is the prompt here, so generate runs (and fails on the model
  // directory) instead of printing its help.
  const CommandResult run = RunJoined(
      kBin + "/seqkv generate --prompt -h --model_dir /nonexistent/model");
  EXPECT_EQ(run.exit_code, 1) << run.out;
  EXPECT_FALSE(absl::StrContains(run.out, "usage:")) << run.out;
  EXPECT_TRUE(absl::StrContains(run.out, "/nonexistent/model")) << run.out;
}

// The commands `seqkv help` lists, from its lines "  NAME  summary".
std::vector<std::string> ListedCommands() {
  const CommandResult run = RunJoined(kBin + "/seqkv help");
  EXPECT_EQ(run.exit_code, 0) << run.out;
  std::vector<std::string> names;
  for (absl::string_view line : absl::StrSplit(run.out, '\n')) {
    if (!absl::ConsumePrefix(&line, "  ") || line.empty() ||
        !absl::ascii_islower(line[0]))
      continue;
    names.emplace_back(line.substr(0, line.find(' ')));
  }
  return names;
}

TEST(CliHelpTest, EveryListedCommandHasHelpThroughTheClientBinary) {
  const std::vector<std::string> names = ListedCommands();
  for (const char* expected :
       {"put", "get", "lookup", "delete", "model", "stats", "bench", "replay",
        "codec-bench", "eval", "calibrate", "generate"})
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end())
        << expected;
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    const CommandResult run = RunJoined(kBin + "/seqkv " + name + " --help");
    EXPECT_EQ(run.exit_code, 0) << run.out;
    EXPECT_TRUE(absl::StrContains(run.out, "usage: seqkv " + name)) << run.out;
    EXPECT_FALSE(absl::StrContains(run.out, "not defined in this binary"))
        << run.out;
    // `seqkv help NAME` says the same.
    EXPECT_EQ(RunJoined(kBin + "/seqkv help " + name).out, run.out);
  }
}

TEST(CliDispatchTest, ClientBinaryHandsCommandsToTheirBinaries) {
  // The client binary does not define these flags; the help that lists them
  // came from the binary that holds the command.
  ExpectHelp(kBin + "/seqkv bench --help", "shared_prefix_ratio");
  ExpectHelp(kBin + "/seqkv codec-bench --help", "threads");
  ExpectHelp(kBin + "/seqkv eval --help", "num_documents");
  // And back: seqkv-bench hands `put` to seqkv.
  ExpectHelp(kBin + "/seqkv-bench put --help", "codec");
  const CommandResult unknown = RunJoined(kBin + "/seqkv nosuch");
  EXPECT_EQ(unknown.exit_code, 2) << unknown.out;
  EXPECT_TRUE(absl::StrContains(unknown.out, "unknown command 'nosuch'"))
      << unknown.out;
}

TEST(CliDispatchTest, MissingBinaryIsNamed) {
  testing::ScopedTempDir dir("seqkv-cli-test");
  const std::filesystem::path lone = dir.path() / "seqkv";
  std::filesystem::copy_file(kBin + "/seqkv", lone);
  const std::string env = "PATH=" + (dir.path() / "empty").string() + " ";

  CommandResult run = RunJoined(env + lone.string() + " bench --ops 1");
  EXPECT_EQ(run.exit_code, 127) << run.out;
  EXPECT_TRUE(absl::StrContains(run.out, "'bench' is a command of seqkv-bench"))
      << run.out;
  EXPECT_TRUE(absl::StrContains(run.out, "not found next to " + lone.string()))
      << run.out;

  run = RunJoined(env + lone.string() + " eval --help");
  EXPECT_EQ(run.exit_code, 127) << run.out;
  EXPECT_TRUE(absl::StrContains(run.out, "seqkv-lm")) << run.out;

  // `seqkv help` still lists every command and says which are unavailable.
  run = RunJoined(env + lone.string() + " help");
  EXPECT_EQ(run.exit_code, 0) << run.out;
  EXPECT_TRUE(absl::StrContains(run.out, "codec-bench")) << run.out;
  EXPECT_TRUE(absl::StrContains(run.out,
                                "missing: seqkv-bench (bench, "
                                "codec-bench, replay); seqkv-lm"))
      << run.out;

  // With the other binaries on PATH it finds them there.
  run = RunJoined("PATH=" + kBin + " " + lone.string() + " bench --help");
  EXPECT_EQ(run.exit_code, 0) << run.out;
  EXPECT_TRUE(absl::StrContains(run.out, "--duration_s")) << run.out;
}

TEST(CliLinkTest, ClientBinaryLinksNoRuntimeOrPeerLibraries) {
  const CommandResult ldd = RunCommand("ldd " + kBin + "/seqkv");
  ASSERT_EQ(ldd.exit_code, 0) << ldd.out;
  ASSERT_TRUE(absl::StrContains(ldd.out, "libstdc++")) << ldd.out;
  for (const char* library :
       {"libopenblas", "libicu", "liblz4", "libblosc", "libzfp", "libfpzip"})
    EXPECT_FALSE(absl::StrContains(ldd.out, library)) << library << "\n"
                                                      << ldd.out;
  // The check can fail: the binaries that need these libraries link them.
  EXPECT_TRUE(absl::StrContains(RunCommand("ldd " + kBin + "/seqkv-lm").out,
                                "libopenblas"));
  EXPECT_TRUE(absl::StrContains(RunCommand("ldd " + kBin + "/seqkv-bench").out,
                                "liblz4"));
}

// The global counters of the server whose admin port is `admin_port`.
nlohmann::json GlobalStats(int admin_port) {
  const CommandResult run = RunCommand(
      absl::StrCat(kBin, "/seqkv stats --json --admin 127.0.0.1:", admin_port));
  EXPECT_EQ(run.exit_code, 0) << run.out;
  nlohmann::json stats = nlohmann::json::parse(run.out, nullptr, false);
  EXPECT_TRUE(stats.is_object()) << run.out;
  return stats.is_object() ? stats["global"] : nlohmann::json();
}

TEST(CliUsageTest, CommandsThatWriteNeedToBeToldWhat) {
  bench::LocalServerOptions options;
  options.binary = kBin + "/seqkv-server";
  options.flags = {"--sync_writes=false"};
  auto server = bench::LocalServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string flags = " --server " + (*server)->address();

  // No duration and no count: the help, exit 2, nothing written.
  CommandResult run = RunJoined(kBin + "/seqkv bench" + flags);
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_TRUE(absl::StrContains(run.out, "--duration_s S or --ops N"))
      << run.out;
  EXPECT_TRUE(absl::StrContains(run.out, "usage: seqkv bench")) << run.out;
  EXPECT_TRUE(absl::StrContains(run.out, "--shared_prefix_ratio")) << run.out;
  run = RunJoined(kBin + "/seqkv put --model m" + flags);
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_TRUE(absl::StrContains(run.out, "usage: seqkv put")) << run.out;
  run = RunJoined(kBin + "/seqkv model register" + flags);
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_TRUE(absl::StrContains(run.out, "--default_codec")) << run.out;
  run = RunJoined(kBin + "/seqkv generate" + flags);
  EXPECT_EQ(run.exit_code, 2) << run.out;
  EXPECT_TRUE(absl::StrContains(run.out, "--max_new_tokens")) << run.out;
  EXPECT_EQ(GlobalStats((*server)->admin_port()).value("chunks_stored", -1), 0);

  // Told how much, it runs and writes (through the client binary).
  run = RunCommand(kBin + "/seqkv bench" + flags +
                   " --op put --layout tiny --chunk_tokens 32 "
                   "--tokens_per_request 64 --codec raw --ops 3 --clients 1 "
                   "--warmup_ops 0 "
                   "--progress=false --json");
  EXPECT_EQ(run.exit_code, 0) << run.out;
  EXPECT_EQ(GlobalStats((*server)->admin_port()).value("chunks_stored", -1), 6);
}

}  // namespace
}  // namespace seqkv
