// `seqkv stats` against a real server: the table and --json show what the
// admin endpoint reports.
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/admin/admin_test_util.h"
#include "tests/integration/server_process.h"

namespace seqkv::testing {
namespace {

class StatsCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = ServerProcess::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    auto client = server_->Connect();
    ASSERT_TRUE(client.ok()) << client.status();
    const std::vector<int32_t> tokens = RandomTokens(300, 7);
    ASSERT_TRUE((*client)
                    ->Put({"cli-test", "raw", ""}, SyntheticCache(tokens, 8))
                    .ok());
    ASSERT_TRUE((*client)->Lookup("cli-test", tokens).ok());
    ASSERT_TRUE((*client)->Lookup("cli-test", RandomTokens(100, 9)).ok());
  }

  CommandResult Stats(const std::string& flags) {
    return RunCommand(absl::StrCat(SEQKV_BIN_DIR, "/seqkv stats --admin ",
                                   server_->admin_address(), " ", flags));
  }

  std::unique_ptr<ServerProcess> server_;
};

TEST_F(StatsCommandTest, JsonIsTheStatsDocument) {
  const CommandResult result = Stats("--json");
  ASSERT_EQ(result.exit_code, 0) << result.out;
  auto body = server_->AdminGet("/v1/stats");
  ASSERT_TRUE(body.ok());
  nlohmann::json from_cli = nlohmann::json::parse(result.out);
  nlohmann::json from_server = nlohmann::json::parse(*body);
  // The resident size is a live gauge: present in both, but it moves.
  for (nlohmann::json* doc : {&from_cli, &from_server}) {
    ASSERT_TRUE((*doc)["memory"].contains("resident_bytes")) << doc->dump();
    (*doc)["memory"].erase("resident_bytes");
  }
  EXPECT_EQ(from_cli, from_server);

  const CommandResult tenant = Stats("--json --tenant default");
  ASSERT_EQ(tenant.exit_code, 0) << tenant.out;
  const nlohmann::json one = nlohmann::json::parse(tenant.out);
  EXPECT_EQ(one["tenant"], "default");
  EXPECT_EQ(one["lookups"], 2);
  EXPECT_EQ(one["hit_tokens"], 300);
}

TEST_F(StatsCommandTest, TableHasARowPerTenantAndTheTotal) {
  const CommandResult result = Stats("");
  ASSERT_EQ(result.exit_code, 0) << result.out;
  std::vector<std::string> lines =
      absl::StrSplit(result.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << result.out;
  auto columns = [](const std::string& line) {
    return std::vector<std::string>(
        absl::StrSplit(line, "  ", absl::SkipEmpty()));
  };
  const std::vector<std::string> header = columns(lines[0]);
  ASSERT_GE(header.size(), 12u) << lines[0];
  EXPECT_EQ(header[0], "TENANT");
  for (size_t row : {1, 2}) {
    std::vector<std::string> cells = columns(lines[row]);
    for (std::string& cell : cells)
      cell = std::string(absl::StripAsciiWhitespace(cell));
    ASSERT_GE(cells.size(), 11u) << lines[row];
    EXPECT_EQ(cells[0], row == 1 ? "default" : "(all)");
    EXPECT_EQ(cells[1], "2");          // lookups
    EXPECT_EQ(cells[2], "75.0%");      // 300 of 400 tokens
    EXPECT_EQ(cells[3], "1");          // puts
    EXPECT_EQ(cells[4], "2");          // chunks: 256 + 44 tokens
    EXPECT_EQ(cells[5], "0");          // deduped
    EXPECT_EQ(cells[6], "150.0 KiB");  // 300 tokens x 512 bytes
  }
  EXPECT_NE(lines[1].find("none"), std::string::npos);  // no quota
}

TEST_F(StatsCommandTest, ErrorsNameTheCause) {
  const CommandResult unknown = RunCommand(
      absl::StrCat(SEQKV_BIN_DIR, "/seqkv stats --admin ",
                   server_->admin_address(), " --tenant nobody 2>&1"));
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.out.find("unknown tenant 'nobody'"), std::string::npos)
      << unknown.out;
  const CommandResult bad = RunCommand(
      absl::StrCat(SEQKV_BIN_DIR, "/seqkv stats --admin nowhere 2>&1"));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.out.find("--admin must be host:port"), std::string::npos)
      << bad.out;
}

}  // namespace
}  // namespace seqkv::testing
