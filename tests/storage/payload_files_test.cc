// Payload files on a real file system in a temporary directory.
#include "storage/payload_files.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/scoped_temp_dir.h"

namespace seqkv {
namespace {

class PayloadFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto files = PayloadFiles::Open(dir_, /*sync=*/true);
    ASSERT_TRUE(files.ok()) << files.status();
    files_ = std::move(*files);
  }

  std::vector<std::string> Keys() const {
    std::vector<std::string> keys;
    EXPECT_TRUE(
        files_->ForEach([&](std::string_view key) { keys.emplace_back(key); })
            .ok());
    std::sort(keys.begin(), keys.end());
    return keys;
  }

  testing::ScopedTempDir temp_dir_;
  const std::filesystem::path dir_ = temp_dir_.path();
  std::unique_ptr<PayloadFiles> files_;
};

TEST_F(PayloadFilesTest, WriteReadReplaceRemove) {
  const std::string key("\x00\xffkey\x01", 6);  // any bytes name a payload
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131);
  ASSERT_TRUE(files_->Write(key, big).ok());
  auto read = files_->Read(key);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->view(), big);
  ASSERT_TRUE(files_->Write(key, "short").ok());  // replaces, not appends
  EXPECT_EQ(files_->Read(key)->view(), "short");
  ASSERT_TRUE(files_->Write("e", "").ok());
  EXPECT_EQ(files_->Read("e")->view(), "");
  EXPECT_EQ(files_->Write("", "x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Keys(), (std::vector<std::string>{key, "e"}));
  ASSERT_TRUE(files_->Remove(key).ok());
  EXPECT_EQ(files_->Read(key).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(files_->Remove(key).ok());  // already gone is fine
}

TEST_F(PayloadFilesTest, ReadIntoFillsPiecesInOrder) {
  ASSERT_TRUE(files_->Write("k", "0123456789").ok());
  std::string a(3, '.'), b(0, '.'), c(7, '.');
  const std::vector<std::span<char>> pieces{a, b, c};
  std::string seen;
  ASSERT_TRUE(files_
                  ->ReadInto("k", pieces,
                             [&](std::span<const char> piece) {
                               seen.append(piece.data(), piece.size());
                             })
                  .ok());
  EXPECT_EQ(a, "012");
  EXPECT_EQ(c, "3456789");
  EXPECT_EQ(seen, "0123456789");  // every piece, once, in order

  auto ignore = [](std::span<const char>) {};
  std::string too_short(9, '.'), too_long(11, '.');
  const absl::Status shorter =
      files_->ReadInto("k", std::vector<std::span<char>>{too_short}, ignore);
  EXPECT_EQ(shorter.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(shorter.message().find("has 10 bytes, expected 9"),
            std::string::npos)
      << shorter;
  EXPECT_EQ(
      files_->ReadInto("k", std::vector<std::span<char>>{too_long}, ignore)
          .code(),
      absl::StatusCode::kDataLoss);
  EXPECT_EQ(files_->ReadInto("gone", pieces, ignore).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(PayloadFilesTest, ForEachSkipsFilesThatAreNotPayloads) {
  ASSERT_TRUE(files_->Write("ab", "x").ok());
  const std::filesystem::path shard = dir_ / "61";  // 'a' is 0x61
  ASSERT_TRUE(std::filesystem::exists(shard / "6162"));
  std::ofstream(shard / "6162.tmp") << "x";
  std::ofstream(shard / "ffff") << "x";  // in the wrong shard
  std::ofstream(dir_ / "README") << "x";
  EXPECT_EQ(Keys(), (std::vector<std::string>{"ab"}));
}

TEST_F(PayloadFilesTest, ReopeningKeepsThePayloads) {
  ASSERT_TRUE(files_->Write("kept", "bytes").ok());
  files_.reset();
  auto files = PayloadFiles::Open(dir_, /*sync=*/false);
  ASSERT_TRUE(files.ok());
  EXPECT_EQ((*files)->Read("kept")->view(), "bytes");
}

TEST_F(PayloadFilesTest, UnwritableDirectoryIsAnError) {
  const std::filesystem::path blocker = dir_ / "blocker";
  std::ofstream(blocker) << "a file where a directory should be";
  auto files = PayloadFiles::Open(blocker, false);
  EXPECT_FALSE(files.ok());
}

}  // namespace
}  // namespace seqkv
