// Hostile payloads: every truncation, extension and single-bit flip of a
// valid turbo / kivi payload must give DATA_LOSS, never a crash.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/codec.h"
#include "gtest/gtest.h"
#include "tests/codec_baselines/test_chunks.h"

namespace seqkv {
namespace {

using baseline_test::GaussianChunk;
using baseline_test::MakeLayout;
using baseline_test::OwnedChunk;

class Corruption : public ::testing::TestWithParam<const char*> {};

TEST_P(Corruption, EveryDamageIsDataLoss) {
  const KvLayout layout = MakeLayout(2, 2, 64, DType::kBF16);
  const OwnedChunk chunk = GaussianChunk(layout, 9, 4, 1.0f, 1.0f);
  ModelContext model;
  model.layout = layout;
  auto codec = CreateCodec(GetParam(), model);
  ASSERT_TRUE(codec.ok()) << codec.status();
  std::string good;
  ASSERT_TRUE((*codec)->Encode(chunk.info(), chunk.data, good).ok());
  std::vector<std::byte> out(chunk.data.size());
  ASSERT_TRUE((*codec)->Decode(chunk.info(), good, out).ok());

  auto expect_loss = [&](std::string_view bad, const std::string& what) {
    absl::Status s = (*codec)->Decode(chunk.info(), bad, out);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << what << ": " << s;
  };
  for (size_t n = 0; n < good.size(); n += 1 + n / 3)
    expect_loss(std::string_view(good).substr(0, n), absl::StrCat("cut ", n));
  expect_loss(good + '\0', "extra byte");
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ (1 << (i % 8)));
    expect_loss(bad, absl::StrCat("flip at ", i));
  }
  expect_loss(std::string(good.size(), '\xff'), "all ones");

  // The same payload read as a chunk of another shape.
  OwnedChunk longer = GaussianChunk(layout, 10, 4);
  std::vector<std::byte> longer_out(longer.data.size());
  EXPECT_EQ((*codec)->Decode(longer.info(), good, longer_out).code(),
            absl::StatusCode::kDataLoss);
}

INSTANTIATE_TEST_SUITE_P(Baselines, Corruption,
                         ::testing::Values("turbo:2", "turbo:2.5", "turbo:3",
                                           "turbo:3.5", "turbo:4", "kivi:2",
                                           "kivi:3", "kivi:4"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (!isalnum(static_cast<unsigned char>(c)))
                               c = '_';
                           return name;
                         });

}  // namespace
}  // namespace seqkv
