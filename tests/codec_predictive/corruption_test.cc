// Decoding corrupted or truncated predictive payloads fails with DATA_LOSS
// and never crashes or reads outside its buffers.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "codec/model_state.h"
#include "tests/codec_predictive/test_util.h"
#include "xxhash.h"

namespace seqkv {
namespace {

struct Fixture {
  ModelContext model;
  std::vector<int32_t> tokens;
  ChunkInfo chunk;
  std::vector<std::byte> data;
  std::unique_ptr<Codec> codec;
  std::string encoded;

  Fixture() {
    model.name = "m";
    model.layout.num_layers = 2;
    model.layout.num_kv_heads = 2;
    model.layout.head_dim = 16;
    model.layout.rope = RopeConfig{RopeStyle::kRotateHalf, 10000.0, 0};
    // A small layer-0 table so predicted groups are covered too.
    std::vector<uint16_t> k(8 * 2 * 16), v(8 * 2 * 16);
    for (size_t i = 0; i < k.size(); ++i) {
      k[i] = FloatToBf16(0.01f * static_cast<float>(i % 17));
      v[i] = FloatToBf16(-0.02f * static_cast<float>(i % 13));
    }
    model.codec_state[std::string(kLayer0TableKey)] =
        Layer0Table::Serialize(8, 2, 16, k, v);
    tokens.resize(24);
    for (size_t i = 0; i < tokens.size(); ++i)
      tokens[i] = static_cast<int32_t>(i % 8);
    chunk = ChunkInfo{&model.layout, 24, 40, tokens};
    data = testing::MakeChunkData(chunk, 5);
    codec = *CreateCodec("predictive:rel_mse=0.001", model);
    EXPECT_TRUE(codec->Encode(chunk, data, encoded).ok());
  }
};

TEST(PredictiveCorruptionTest, EveryTruncationIsDataLoss) {
  Fixture f;
  std::vector<std::byte> out(f.data.size());
  ASSERT_TRUE(f.codec->Decode(f.chunk, f.encoded, out).ok());
  for (size_t n = 0; n < f.encoded.size(); ++n)
    EXPECT_EQ(f.codec->Decode(f.chunk, f.encoded.substr(0, n), out).code(),
              absl::StatusCode::kDataLoss)
        << "length " << n;
  EXPECT_EQ(f.codec->Decode(f.chunk, f.encoded + "x", out).code(),
            absl::StatusCode::kDataLoss);
}

TEST(PredictiveCorruptionTest, EveryBitFlipIsDataLoss) {
  Fixture f;
  std::vector<std::byte> out(f.data.size());
  for (size_t i = 0; i < f.encoded.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = f.encoded;
      bad[i] ^= static_cast<char>(1 << bit);
      EXPECT_EQ(f.codec->Decode(f.chunk, bad, out).code(),
                absl::StatusCode::kDataLoss)
          << "byte " << i << " bit " << bit;
    }
  }
}

// Corruptions behind a valid checksum reach the parser and the entropy
// decoder: they must fail cleanly or decode to something, never crash.
TEST(PredictiveCorruptionTest, CorruptBodiesWithValidChecksum) {
  Fixture f;
  std::vector<std::byte> out(f.data.size());
  std::mt19937_64 rng(9);
  const size_t body = f.encoded.size() - 4;
  int rejected = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string bad = f.encoded.substr(0, body);
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 3) {
        case 0:
          bad[rng() % bad.size()] = static_cast<char>(rng());
          break;
        case 1:
          bad.resize(rng() % bad.size());
          break;
        default:
          bad.insert(rng() % (bad.size() + 1), 1, static_cast<char>(rng()));
      }
      if (bad.empty()) break;
    }
    const uint32_t checksum = XXH32(bad.data(), bad.size(), 0);
    bad.append(reinterpret_cast<const char*>(&checksum), 4);
    absl::Status status = f.codec->Decode(f.chunk, bad, out);
    if (!status.ok()) {
      EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
      ++rejected;
    }
  }
  // The structure checks (rANS end state, sizes) catch nearly all of them.
  EXPECT_GT(rejected, 2700);
}

}  // namespace
}  // namespace seqkv
