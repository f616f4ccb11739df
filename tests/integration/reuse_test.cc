// End to end: a live seqkv-server coding new chunks against stored ones
// (split dedup and cross-prefix residuals, server/reference_planner.h).
// Against a server with both turned off it must store less, every Get must
// still be bit-exact (lossless) or within the codec's target (predictive),
// and a referenced chunk's payload must outlive its node (Delete, restart,
// kill -9) exactly until its last referrer goes.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <random>
#include <span>
#include <thread>

#include "absl/strings/str_cat.h"
#include "codec/float_bits.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"
#include "tests/test_data.h"

namespace seqkv::testing {
namespace {

constexpr char kNoSplitDedup[] = "--split_dedup=false";
constexpr char kNoCrossPrefix[] = "--cross_prefix=false";

// A server and a client connected to it.
struct Live {
  std::unique_ptr<ServerProcess> server;
  std::unique_ptr<Client> client;

  // Stops the server (with no client connected, which it would wait for)
  // and starts it again on the same data, or starts it after Kill().
  absl::Status Restart() {
    client.reset();
    if (auto status = server->Restart(); !status.ok()) return status;
    return Reconnect();
  }
  absl::Status Reconnect() {
    auto client_or = server->Connect();
    if (!client_or.ok()) return client_or.status();
    client = std::move(*client_or);
    return absl::OkStatus();
  }
  // The /v1/stats "global" object.
  nlohmann::json Global() const {
    auto body = server->AdminGet("/v1/stats");
    EXPECT_TRUE(body.ok()) << body.status();
    return nlohmann::json::parse(body.value_or("{}"))["global"];
  }
  uint64_t BytesStored() const {
    return Global().value("bytes_stored", uint64_t{0});
  }
  uint64_t ChunksStored() const {
    return Global().value("chunks_stored", uint64_t{0});
  }
  // Regular files under the payload directory, subdirectories included.
  size_t PayloadFiles() const {
    const std::filesystem::path dir =
        std::filesystem::path(server->data_dir()) / "db" / "payloads";
    size_t files = 0;
    std::error_code error;
    if (!std::filesystem::exists(dir, error)) return 0;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir))
      files += entry.is_regular_file();
    return files;
  }
};

absl::StatusOr<Live> StartLive(std::vector<std::string> flags = {}) {
  auto server = ServerProcess::Start(std::move(flags));
  if (!server.ok()) return server.status();
  Live live{std::move(*server), nullptr};
  if (auto status = live.Reconnect(); !status.ok()) return status;
  return live;
}

std::vector<int32_t> Head(const std::vector<int32_t>& tokens, size_t n) {
  return {tokens.begin(), tokens.begin() + std::min(n, tokens.size())};
}

uint32_t CommonPrefix(const std::vector<int32_t>& a,
                      const std::vector<int32_t>& b) {
  return static_cast<uint32_t>(
      std::mismatch(a.begin(), a.end(), b.begin(), b.end()).first - a.begin());
}

// The first `n` tokens of `cache`, with their K and V.
KvCache Truncated(const KvCache& cache, uint32_t n) {
  KvCache out;
  out.layout = cache.layout;
  out.tokens = Head(cache.tokens, n);
  out.AllocateTensors();
  const size_t row = cache.layout.head_dim * DTypeSize(cache.layout.dtype);
  const uint32_t t = cache.num_tokens();
  const uint32_t rows = cache.layout.num_layers * cache.layout.num_kv_heads;
  for (uint32_t lh = 0; lh < rows; ++lh) {
    std::copy_n(cache.k.begin() + lh * t * row, n * row,
                out.k.begin() + lh * n * row);
    std::copy_n(cache.v.begin() + lh * t * row, n * row,
                out.v.begin() + lh * n * row);
  }
  return out;
}

// Gets `want.tokens` and checks that exactly `want` comes back; an empty
// string when it does, else what differs.
std::string CheckBitExact(Client& client, const std::string& model,
                          const KvCache& want) {
  auto got = client.Get({model}, want.tokens);
  if (!got.ok()) return absl::StrCat("Get failed: ", got.status().ToString());
  if (got->tokens != want.tokens)
    return absl::StrCat("Get returned ", got->tokens.size(), " tokens of ",
                        want.tokens.size());
  if (got->k != want.k) return "K differs";
  if (got->v != want.v) return "V differs";
  return "";
}

// Sum of squared errors over the sum of squares, of bf16 tensors.
double RelativeMse(const std::vector<std::byte>& want,
                   const std::vector<std::byte>& got) {
  if (want.size() != got.size()) return 1e9;
  double error = 0, energy = 0;
  for (size_t i = 0; i + 1 < want.size(); i += 2) {
    uint16_t a, b;
    std::memcpy(&a, &want[i], 2);
    std::memcpy(&b, &got[i], 2);
    const double x = Bf16ToFloat(a), y = Bf16ToFloat(b);
    error += (x - y) * (x - y);
    energy += x * x;
  }
  return energy > 0 ? error / energy : error;
}

// --- The real RAG set: six contexts BOS + S + Di + Dj + Q. ---

constexpr char kRagModel[] = "kvlm";
const char* const kRagFiles[] = {"b_rag_00_D1_D2", "b_rag_01_D2_D1",
                                 "b_rag_02_D1_D3", "b_rag_03_D3_D1",
                                 "b_rag_04_D2_D4", "b_rag_05_D4_D3"};
constexpr double kRelMseTarget = 0.0095;

#define SEQKV_NEEDS_RAG_SET()                                           \
  SEQKV_NEEDS_TEST_DATA(                                                \
      "kv/b_rag_00_D1_D2.safetensors", "kv/b_rag_01_D2_D1.safetensors", \
      "kv/b_rag_02_D1_D3.safetensors", "kv/b_rag_03_D3_D1.safetensors", \
      "kv/b_rag_04_D2_D4.safetensors", "kv/b_rag_05_D4_D3.safetensors")

// As `seqkv put` reads a file: the layout from it, RoPE as the model's
// (HF rotate_half, theta 10000, the CLI's default).
std::vector<KvCache> LoadRagSet() {
  std::vector<KvCache> caches;
  for (const char* name : kRagFiles) {
    auto cache = ReadKvCacheFile(
        TestDataPath(absl::StrCat("kv/", name, ".safetensors")));
    EXPECT_TRUE(cache.ok()) << cache.status();
    if (!cache.ok()) return {};
    cache->layout.rope = {RopeStyle::kRotateHalf, 10000.0, 0};
    caches.push_back(std::move(*cache));
  }
  return caches;
}

class RealRagSetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SEQKV_NEEDS_RAG_SET();
    caches_ = LoadRagSet();
    ASSERT_EQ(caches_.size(), 6u);
    const KvLayout& layout = caches_[0].layout;
    ASSERT_EQ(layout.num_layers, 6u);
    ASSERT_EQ(layout.num_kv_heads, 2u);
    ASSERT_EQ(layout.head_dim, 128u);
    ASSERT_EQ(layout.dtype, DType::kBF16);
  }

  // Puts the six files in order; the server's global bytes_stored after.
  uint64_t PutAll(Live& live, const std::string& codec) {
    for (const KvCache& cache : caches_) {
      auto put = live.client->Put({kRagModel, codec, ""}, cache);
      EXPECT_TRUE(put.ok()) << put.status();
    }
    return live.BytesStored();
  }

  // Puts the set on a default server and one with reuse off, and returns
  // the servers (reuse first) and the ratio of their bytes_stored.
  double Compare(const std::string& codec, Live& reuse, Live& plain) {
    auto started = StartLive();
    EXPECT_TRUE(started.ok()) << started.status();
    if (!started.ok()) return 0;
    reuse = std::move(*started);
    started = StartLive({kNoSplitDedup, kNoCrossPrefix});
    EXPECT_TRUE(started.ok()) << started.status();
    if (!started.ok()) return 0;
    plain = std::move(*started);
    const uint64_t with = PutAll(reuse, codec);
    const uint64_t without = PutAll(plain, codec);
    EXPECT_GT(without, 0u);
    const double ratio = static_cast<double>(with) /
                         static_cast<double>(std::max<uint64_t>(1, without));
    std::cout << "[ reuse    ] " << codec << ": " << with << " bytes stored, "
              << without << " with --split_dedup=false --cross_prefix=false ("
              << ratio << "x)" << std::endl;
    return ratio;
  }

  std::vector<KvCache> caches_;
};

TEST_F(RealRagSetTest, PredictiveStoresLessWithinItsTarget) {
  const std::string codec = "predictive:rel_mse=0.0095";
  Live reuse, plain;
  const double ratio = Compare(codec, reuse, plain);
  ASSERT_NE(reuse.server, nullptr);
  RecordProperty("predictive_ratio", absl::StrCat(ratio));
  EXPECT_LE(ratio, 0.55);
  double worst = 0;
  for (size_t i = 0; i < caches_.size(); ++i) {
    SCOPED_TRACE(kRagFiles[i]);
    const KvCache& want = caches_[i];
    auto got = reuse.client->Get({kRagModel}, want.tokens);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->tokens, want.tokens);
    const double k = RelativeMse(want.k, got->k);
    const double v = RelativeMse(want.v, got->v);
    std::cout << "[ reuse    ] " << kRagFiles[i] << ": rel MSE K " << k
              << ", V " << v << std::endl;
    EXPECT_LE(k, kRelMseTarget * 1.05);
    EXPECT_LE(v, kRelMseTarget * 1.05);
    worst = std::max({worst, k, v});
  }
  RecordProperty("predictive_worst_rel_mse", absl::StrCat(worst));
}

TEST_F(RealRagSetTest, LosslessStoresLessAndGetsAreBitExact) {
  Live reuse, plain;
  const double ratio = Compare("lossless", reuse, plain);
  ASSERT_NE(reuse.server, nullptr);
  RecordProperty("lossless_ratio", absl::StrCat(ratio));
  EXPECT_LE(ratio, 0.8);
  for (size_t i = 0; i < caches_.size(); ++i)
    EXPECT_EQ(CheckBitExact(*reuse.client, kRagModel, caches_[i]), "")
        << kRagFiles[i];
}

// The chunks b_rag_00 stored first are the sources the others are coded
// against: deleting them must leave every other file whole, through a
// restart, and deleting the rest must free every byte and file.
TEST_F(RealRagSetTest, DeletedSourcesOutliveTheirNodesUntilTheLastReferrer) {
  auto started = StartLive();
  ASSERT_TRUE(started.ok()) << started.status();
  Live live = std::move(*started);
  PutAll(live, "lossless");
  const uint64_t files_before = live.PayloadFiles();
  ASSERT_GT(files_before, 0u);
  std::cout << "[ reuse    ] six files: " << live.BytesStored() << " bytes, "
            << live.ChunksStored() << " chunks, " << files_before
            << " payload files" << std::endl;

  // b_rag_00's own branch (chunks 1 and 2; chunk 0 it shares with b_rag_02).
  const KvCache& rag0 = caches_[0];
  auto removed = live.client->Delete(kRagModel, Head(rag0.tokens, 512));
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->chunks_deleted, 2u);
  auto matched = live.client->Lookup(kRagModel, rag0.tokens);
  ASSERT_TRUE(matched.ok()) << matched.status();
  EXPECT_EQ(matched->matched_tokens,
            CommonPrefix(rag0.tokens, caches_[2].tokens));
  for (size_t i = 1; i < caches_.size(); ++i)
    EXPECT_EQ(CheckBitExact(*live.client, kRagModel, caches_[i]), "")
        << kRagFiles[i] << " after deleting b_rag_00's branch";

  // Its first chunk too: the head every other file's first chunk copies
  // (split dedup), and b_rag_02 with it.
  removed = live.client->Delete(kRagModel, Head(rag0.tokens, 256));
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->chunks_deleted, 3u);  // chunk 0, b_rag_02's 1 and tail
  matched = live.client->Lookup(kRagModel, caches_[2].tokens);
  ASSERT_TRUE(matched.ok()) << matched.status();
  EXPECT_LT(matched->matched_tokens, 256u);
  const std::vector<size_t> left = {1, 3, 4, 5};
  for (size_t i : left)
    EXPECT_EQ(CheckBitExact(*live.client, kRagModel, caches_[i]), "")
        << kRagFiles[i] << " after deleting b_rag_00's first chunk";
  const uint64_t bytes = live.BytesStored();
  const uint64_t chunks = live.ChunksStored();
  const size_t files = live.PayloadFiles();
  EXPECT_GT(bytes, 0u);

  // The detached payloads come back from disk.
  ASSERT_TRUE(live.Restart().ok());
  EXPECT_EQ(live.BytesStored(), bytes);
  EXPECT_EQ(live.ChunksStored(), chunks);
  EXPECT_EQ(live.PayloadFiles(), files);
  for (size_t i : left)
    EXPECT_EQ(CheckBitExact(*live.client, kRagModel, caches_[i]), "")
        << kRagFiles[i] << " after the restart";

  // One file after the other, each by its own branch (b_rag_01 and b_rag_04
  // share BOS + S + D2, so their first chunk): each that stays is whole.
  for (size_t n = 0; n < left.size(); ++n) {
    const std::vector<int32_t>& tokens = caches_[left[n]].tokens;
    uint32_t shared = 0;
    for (size_t m = n + 1; m < left.size(); ++m)
      shared = std::max(shared, CommonPrefix(tokens, caches_[left[m]].tokens));
    removed =
        live.client->Delete(kRagModel, Head(tokens, shared / 256 * 256 + 256));
    ASSERT_TRUE(removed.ok()) << removed.status();
    EXPECT_GT(removed->chunks_deleted, 0u) << kRagFiles[left[n]];
    matched = live.client->Lookup(kRagModel, tokens);
    ASSERT_TRUE(matched.ok()) << matched.status();
    EXPECT_EQ(matched->matched_tokens, shared) << kRagFiles[left[n]];
    for (size_t m = n + 1; m < left.size(); ++m)
      EXPECT_EQ(CheckBitExact(*live.client, kRagModel, caches_[left[m]]), "")
          << kRagFiles[left[m]] << " after deleting " << kRagFiles[left[n]];
  }
  removed = live.client->Delete(kRagModel, {});
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->chunks_deleted, 0u);
  EXPECT_EQ(live.BytesStored(), 0u);
  EXPECT_EQ(live.ChunksStored(), 0u);
  EXPECT_EQ(live.PayloadFiles(), 0u);
  // And nothing comes back at the next start.
  ASSERT_TRUE(live.Restart().ok());
  EXPECT_EQ(live.BytesStored(), 0u);
  EXPECT_EQ(live.ChunksStored(), 0u);
  EXPECT_EQ(live.PayloadFiles(), 0u);
}

// --- Synthetic: runs without the shared data. ---

// 512 bytes a token, 64-token chunks. No RoPE, so that a document's rows
// after another prefix can equal its rows where it was first stored.
const KvLayout kLayout{2, 1, 64, DType::kBF16};
constexpr uint32_t kChunkTokens = 64;
constexpr char kModel[] = "synthetic";

// Token ids and the rows of KV they stand for.
struct Segment {
  std::vector<int32_t> tokens;
  uint32_t seed = 0;
};

Segment NewSegment(uint32_t tokens, uint32_t seed) {
  Segment segment{{}, seed};
  std::mt19937 rng(seed);
  for (uint32_t i = 0; i < tokens; ++i)
    segment.tokens.push_back(static_cast<int32_t>(1000 + rng() % 60000));
  return segment;
}

// A segment as it appears in a sequence: its rows exactly (noise 0) or
// with about one element in 16 one bf16 step off, from seed `noise`.
struct Part {
  const Segment* segment;
  uint32_t noise = 0;
};

KvCache Compose(std::initializer_list<Part> parts) {
  KvCache cache;
  cache.layout = kLayout;
  for (const Part& part : parts)
    cache.tokens.insert(cache.tokens.end(), part.segment->tokens.begin(),
                        part.segment->tokens.end());
  cache.AllocateTensors();
  const uint32_t n = cache.num_tokens(), dim = kLayout.head_dim;
  const uint32_t heads = kLayout.num_layers * kLayout.num_kv_heads;
  uint32_t t = 0;
  for (const Part& part : parts) {
    for (uint32_t i = 0; i < part.segment->tokens.size(); ++i, ++t) {
      std::mt19937 rng(part.segment->seed * 7919u + i);
      std::mt19937 noise(part.noise * 104729u + i);
      std::normal_distribution<float> normal(0.f, 1.f);
      for (auto* tensor : {&cache.k, &cache.v}) {
        for (uint32_t lh = 0; lh < heads; ++lh) {
          for (uint32_t d = 0; d < dim; ++d) {
            uint16_t bits = FloatToBf16(normal(rng) * (1.f + lh));
            if (part.noise != 0 && noise() % 16 == 0)
              bits = static_cast<uint16_t>(bits + (noise() % 2 ? 1 : -1));
            std::memcpy(&(*tensor)[((size_t{lh} * n + t) * dim + d) * 2], &bits,
                        2);
          }
        }
      }
    }
  }
  return cache;
}

absl::Status Register(Client& client) {
  ModelRegistration registration;
  registration.model = kModel;
  registration.layout = kLayout;
  registration.chunk_tokens = kChunkTokens;
  return client.RegisterModel(registration).status();
}

TEST(SyntheticReuseTest, SplitAndCrossPrefixChunksSurviveDeleteAndKill) {
  // A = P1 + D + Q, B = P1 + X + D + Q: B's chunk 1 shares its first 26
  // tokens with A's (split dedup), and D + Q follow another prefix at
  // another position (cross-prefix), their rows a little off A's.
  const Segment p1 = NewSegment(90, 1), x = NewSegment(10, 2),
                d = NewSegment(150, 3), q = NewSegment(40, 4);
  const KvCache a = Compose({{&p1}, {&d}, {&q}});
  const KvCache b = Compose({{&p1}, {&x}, {&d, 11}, {&q, 12}});

  // Payload files from 1 KiB: most chunks are files. The other two
  // servers measure what each way of reuse saves: split dedup alone, none.
  auto started = StartLive({"--payload_file_min_bytes=1024"});
  ASSERT_TRUE(started.ok()) << started.status();
  Live reuse = std::move(*started);
  std::vector<Live> others;
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{kNoCrossPrefix},
        std::vector<std::string>{kNoSplitDedup, kNoCrossPrefix}}) {
    started = StartLive(flags);
    ASSERT_TRUE(started.ok()) << started.status();
    others.push_back(std::move(*started));
  }
  uint64_t stored[3];
  int n = 0;
  for (Live* live : {&reuse, &others[0], &others[1]}) {
    ASSERT_TRUE(Register(*live->client).ok());
    for (const KvCache* cache : {&a, &b}) {
      auto put = live->client->Put({kModel, "lossless", ""}, *cache);
      ASSERT_TRUE(put.ok()) << put.status();
    }
    EXPECT_EQ(CheckBitExact(*live->client, kModel, a), "") << n;
    EXPECT_EQ(CheckBitExact(*live->client, kModel, b), "") << n;
    stored[n++] = live->BytesStored();
  }
  for (Live& live : others) live.client.reset();
  others.clear();
  std::cout << "[ reuse    ] synthetic A + B, lossless: " << stored[0]
            << " bytes stored, " << stored[1] << " with split dedup alone, "
            << stored[2] << " with neither" << std::endl;
  RecordProperty("synthetic_ratio",
                 absl::StrCat(double(stored[0]) / double(stored[2])));
  EXPECT_LT(stored[0], stored[1]);
  EXPECT_LT(stored[1], stored[2]);
  ASSERT_GT(reuse.PayloadFiles(), 0u);

  // A's own branch (chunk 1 on): the chunks B was coded against.
  auto removed = reuse.client->Delete(kModel, Head(a.tokens, kChunkTokens * 2));
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->chunks_deleted, 4u);  // 280 tokens: chunks 1-3 and a tail
  EXPECT_EQ(CheckBitExact(*reuse.client, kModel, b), "") << "after deleting A";
  const uint32_t common = CommonPrefix(a.tokens, b.tokens);
  EXPECT_EQ(CheckBitExact(*reuse.client, kModel, Truncated(a, common)), "");
  // A's chunks are detached now, and read back at a start.
  ASSERT_TRUE(reuse.Restart().ok());
  EXPECT_EQ(CheckBitExact(*reuse.client, kModel, b), "") << "after a restart";

  // Kill -9 while C = P3 + D + Q + R is put, or just after: first after a
  // whole Put on a fresh server (which times it), then at fractions of that
  // time. After each
  // restart B is whole, A's branch gone, and every C absent or whole, never
  // in part or wrong; an acknowledged C is there.
  const Segment r = NewSegment(400, 5);
  const double kill_at[] = {-1, 0, 0.25, 0.5, 0.75, 1.0, 1.25};
  constexpr int kRounds = sizeof(kill_at) / sizeof(kill_at[0]);
  std::vector<Segment> prefixes;
  for (int round = 0; round < kRounds; ++round)
    prefixes.push_back(NewSegment(50, 100 + round));
  std::vector<KvCache> cs;
  std::vector<bool> acknowledged;
  std::chrono::microseconds put_time{0};
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    cs.push_back(Compose({{&prefixes[round]},
                          {&d, 20u + round},
                          {&q, 30u + round},
                          {&r, 40u + round}}));
    const KvCache& c = cs.back();
    absl::Status put_status;
    const auto start = std::chrono::steady_clock::now();
    std::thread put([&] {
      put_status = reuse.client->Put({kModel, "lossless", ""}, c).status();
    });
    std::chrono::microseconds delay{0};
    if (kill_at[round] < 0) {
      put.join();
      put_time = std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::steady_clock::now() - start);
    } else {
      delay = std::chrono::microseconds(
          static_cast<int64_t>(kill_at[round] * put_time.count()));
      std::this_thread::sleep_until(start + delay);
    }
    ASSERT_TRUE(reuse.server->Kill().ok());
    if (put.joinable()) put.join();
    acknowledged.push_back(put_status.ok());
    std::cout << "[ reuse    ] round " << round << ": killed "
              << (kill_at[round] < 0
                      ? absl::StrCat("after the Put (", put_time.count(),
                                     " us)")
                      : absl::StrCat(delay.count(), " us into it"))
              << ", Put " << put_status.ToString() << std::endl;
    if (kill_at[round] < 0) {
      ASSERT_TRUE(put_status.ok()) << put_status;
    }
    ASSERT_TRUE(reuse.Restart().ok());

    EXPECT_EQ(CheckBitExact(*reuse.client, kModel, b), "") << "B";
    auto matched = reuse.client->Lookup(kModel, a.tokens);
    ASSERT_TRUE(matched.ok()) << matched.status();
    EXPECT_EQ(matched->matched_tokens, common) << "A";
    for (int i = 0; i <= round; ++i) {
      auto got = reuse.client->Get({kModel}, cs[i].tokens);
      ASSERT_TRUE(got.ok()) << "C" << i << ": " << got.status();
      if (got->tokens.empty()) {
        EXPECT_FALSE(acknowledged[i]) << "C" << i << " was acknowledged";
        continue;
      }
      EXPECT_EQ(got->tokens.size(), cs[i].tokens.size()) << "C" << i;
      EXPECT_EQ(CheckBitExact(*reuse.client, kModel, cs[i]), "") << "C" << i;
    }
  }

  // Everything goes, detached payloads with their last referrer.
  removed = reuse.client->Delete(kModel, {});
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(reuse.BytesStored(), 0u);
  EXPECT_EQ(reuse.ChunksStored(), 0u);
  EXPECT_EQ(reuse.PayloadFiles(), 0u);
  ASSERT_TRUE(reuse.Restart().ok());
  EXPECT_EQ(reuse.BytesStored(), 0u);
  EXPECT_EQ(reuse.PayloadFiles(), 0u);
}

}  // namespace
}  // namespace seqkv::testing
