// The Get stream assembler on messages built here, with data split
// anywhere: every byte must land where the worker's layout puts it.
#include "client/get_stream.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "proto/layout_convert.h"

namespace seqkv {
namespace {

KvCache RandomCache(const KvLayout& layout, uint32_t tokens, uint64_t seed) {
  KvCache cache;
  cache.layout = layout;
  for (uint32_t t = 0; t < tokens; ++t)
    cache.tokens.push_back(static_cast<int32_t>(t * 7 + 1));
  cache.AllocateTensors();
  std::mt19937_64 rng(seed);
  for (std::byte& b : cache.k) b = static_cast<std::byte>(rng());
  for (std::byte& b : cache.v) b = static_cast<std::byte>(rng());
  return cache;
}

std::string HeaderMessage(const KvCache& cache) {
  v1::GetResponse message;
  v1::GetHeader* header = message.mutable_header();
  *header->mutable_layout() = LayoutToProto(cache.layout);
  header->set_matched_tokens(cache.num_tokens());
  header->set_end_token(cache.num_tokens());
  header->set_data_bytes(uint64_t{cache.layout.bytes_per_token()} *
                         cache.num_tokens());
  return message.SerializeAsString();
}

std::string DataMessage(std::string data) {
  v1::GetResponse message;
  message.set_data(std::move(data));
  return message.SerializeAsString();
}

v1::GetResponse Parse(const std::string& bytes) {
  v1::GetResponse message;
  EXPECT_TRUE(message.ParseFromString(bytes));
  return message;
}

TEST(GetStreamAssembler, AnySplitOfAnyLayoutRebuildsTheCache) {
  std::mt19937 rng(5);
  for (const KvLayout& layout :
       {KvLayout{2, 2, 8, DType::kBF16}, KvLayout{3, 1, 4, DType::kFP32},
        KvLayout{2, 1, 16, DType::kFP16, /*latent=*/true}}) {
    const KvCache want = RandomCache(layout, 9, rng());
    std::string wire;
    want.AppendTokenMajor(0, want.num_tokens(), wire);
    KvCache got = RandomCache(layout, 2, rng());  // memory to reuse
    GetStreamAssembler assembler(want.tokens, got);
    const std::string header = HeaderMessage(want);
    ASSERT_TRUE(assembler.Add(Parse(header)).ok());
    for (size_t at = 0; at < wire.size();) {
      // Splits anywhere: inside a token, inside a head's row.
      const size_t take = std::min<size_t>(wire.size() - at, 1 + rng() % 700);
      ASSERT_TRUE(
          assembler.Add(Parse(DataMessage(wire.substr(at, take)))).ok());
      at += take;
    }
    ASSERT_TRUE(assembler.Finish().ok());
    EXPECT_EQ(got.tokens, want.tokens);
    EXPECT_TRUE(got.k == want.k);
    EXPECT_TRUE(got.v == want.v);
  }
}

TEST(GetStreamAssembler, BrokenStreamsAreDataLoss) {
  const KvCache want = RandomCache({1, 1, 4, DType::kFP32}, 2, 1);
  std::string wire;
  want.AppendTokenMajor(0, 2, wire);
  const std::string header = HeaderMessage(want);
  const std::string data = DataMessage(wire);
  auto code = [&](std::vector<std::string> messages) {
    KvCache got;
    GetStreamAssembler assembler(want.tokens, got);
    for (const std::string& message : messages)
      if (auto status = assembler.Add(Parse(message)); !status.ok())
        return status.code();
    return assembler.Finish().code();
  };
  EXPECT_EQ(code({header, data}), absl::StatusCode::kOk);
  EXPECT_EQ(code({data}), absl::StatusCode::kDataLoss);  // no header first
  EXPECT_EQ(code({header, header}), absl::StatusCode::kDataLoss);
  EXPECT_EQ(code({header, data, DataMessage("x")}),
            absl::StatusCode::kDataLoss);  // more than announced
  EXPECT_EQ(code({header, DataMessage(wire.substr(1))}),
            absl::StatusCode::kDataLoss);                      // ended early
  EXPECT_EQ(code({header, ""}), absl::StatusCode::kDataLoss);  // empty
  EXPECT_EQ(code({}), absl::StatusCode::kDataLoss);
  // A header whose range or size does not fit the request.
  v1::GetResponse bad;
  bad.ParseFromString(header);
  bad.mutable_header()->set_end_token(3);
  EXPECT_EQ(code({bad.SerializeAsString()}), absl::StatusCode::kDataLoss);
  bad.ParseFromString(header);
  bad.mutable_header()->set_data_bytes(1);
  EXPECT_EQ(code({bad.SerializeAsString()}), absl::StatusCode::kDataLoss);
  bad.ParseFromString(header);
  bad.mutable_header()->mutable_layout()->set_head_dim(0);
  EXPECT_EQ(code({bad.SerializeAsString()}), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace seqkv
