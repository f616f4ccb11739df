#include "server/chunk_layout.h"

#include <random>

#include "codec/codec.h"
#include "gtest/gtest.h"

namespace seqkv {
namespace {

TEST(ChunkLayoutTest, TokenMajorRoundTripsThroughChunkLayout) {
  for (bool latent : {false, true}) {
    KvLayout layout{3, latent ? 1u : 2u, 8, DType::kFP32, latent};
    const uint32_t tokens = 5;
    std::vector<std::byte> token_major(layout.bytes_per_token() * tokens);
    std::mt19937 rng(1);
    for (auto& b : token_major) b = static_cast<std::byte>(rng());
    std::vector<std::byte> chunk(token_major.size());
    TokenMajorToChunk(layout, tokens, token_major, chunk);
    // Element (layer 1, tensor last, head 0, token 3, dim 2) lands where the
    // chunk layout says.
    ChunkInfo info{&layout, tokens, 0, {}};
    const uint32_t tensor = layout.tensors_per_layer() - 1;
    const size_t rows = 3 * layout.tensors_per_layer() * layout.num_kv_heads;
    const size_t row =
        (1 * layout.tensors_per_layer() + tensor) * layout.num_kv_heads;
    EXPECT_EQ(0, std::memcmp(&chunk[(info.RowOffset(1, tensor, 0, 3) + 2) * 4],
                             &token_major[((3 * rows + row) * 8 + 2) * 4], 4));
    std::vector<std::byte> back(token_major.size());
    ChunkToTokenMajor(layout, tokens, chunk, 0, tokens, back);
    EXPECT_EQ(0, std::memcmp(back.data(), token_major.data(), back.size()));
    back.assign(2 * layout.bytes_per_token(), std::byte{0});
    ChunkToTokenMajor(layout, tokens, chunk, 2, 4, back);
    EXPECT_EQ(0, std::memcmp(back.data(),
                             token_major.data() + 2 * layout.bytes_per_token(),
                             back.size()));
  }
}

TEST(CodecRegistryTest, RawRoundTripAndErrors) {
  ModelContext model;
  model.layout = {2, 2, 4, DType::kBF16};
  EXPECT_EQ(CreateCodec("nope", model).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateCodec("raw:3", model).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto codec = CreateCodec("raw", model);
  ASSERT_TRUE(codec.ok());
  std::vector<int32_t> tokens = {1, 2, 3};
  ChunkInfo info{&model.layout, 3, 0, tokens};
  std::vector<std::byte> data(info.num_bytes(), std::byte{7});
  std::string encoded;
  ASSERT_TRUE((*codec)->Encode(info, data, encoded).ok());
  std::vector<std::byte> out(data.size());
  ASSERT_TRUE((*codec)->Decode(info, encoded, out).ok());
  EXPECT_EQ(out, data);
  EXPECT_EQ((*codec)->Decode(info, encoded.substr(1), out).code(),
            absl::StatusCode::kDataLoss);
}

TEST(ChunkLayoutTest, ScatteringTokensInPiecesFillsTheSameChunk) {
  KvLayout layout{2, 2, 4, DType::kBF16};
  const uint32_t tokens = 7;
  std::vector<std::byte> token_major(layout.bytes_per_token() * tokens);
  std::mt19937 rng(2);
  for (auto& b : token_major) b = static_cast<std::byte>(rng());
  std::vector<std::byte> whole(token_major.size()), pieces(token_major.size());
  TokenMajorToChunk(layout, tokens, token_major, whole);
  for (uint32_t first : {0u, 1u, 4u}) {
    const uint32_t end = first == 0 ? 1 : first == 1 ? 4 : tokens;
    ScatterTokens(layout, tokens, first, end - first,
                  std::span(token_major)
                      .subspan(first * layout.bytes_per_token(),
                               (end - first) * layout.bytes_per_token()),
                  pieces);
  }
  EXPECT_EQ(pieces, whole);
}

}  // namespace
}  // namespace seqkv
