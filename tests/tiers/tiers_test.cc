// Fidelity tiers on a live server: a small capacity filled with lossless
// chunks demotes the least valued ones to the lossy tiers (each served
// within its error target, and as that tier), then keeps only the tokens
// of evicted ones (recognised as ghosts, readmitted at full fidelity by a
// Put); exact-only Lookups and Gets never count lossy chunks; a kill
// during demotion loses nothing; --tiers=none evicts at once.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/float_bits.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "seqkv/v1/kvcache.grpc.pb.h"
#include "tests/integration/server_process.h"

namespace seqkv {
namespace {

using testing::ServerProcess;

constexpr char kModel[] = "tiered";
constexpr uint32_t kChunkTokens = 16;
constexpr uint32_t kSequenceTokens = 4 * kChunkTokens;
// What turbo:3 reaches (tier 2's target), with room for the estimate of
// a relative MSE over a few tokens.
constexpr double kLossyTolerance = 0.0345 * 1.5;

KvLayout Layout() {
  return {.num_layers = 2,
          .num_kv_heads = 2,
          .head_dim = 64,
          .dtype = DType::kBF16,
          .rope = {RopeStyle::kRotateHalf, 10000.0, 0}};
}

// Gaussian values with a per-channel offset, as K and V have; sequence
// `id` has tokens of its own from the first on.
KvCache Sequence(uint32_t id) {
  KvCache cache;
  cache.layout = Layout();
  std::mt19937 rng(id + 1);
  for (uint32_t i = 0; i < kSequenceTokens; ++i)
    cache.tokens.push_back(static_cast<int32_t>(id * 1000 + i));
  cache.AllocateTensors();
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto* tensor : {&cache.k, &cache.v}) {
    auto* bf16 = reinterpret_cast<uint16_t*>(tensor->data());
    const size_t count = tensor->size() / 2;
    for (size_t i = 0; i < count; ++i)
      bf16[i] =
          FloatToBf16(normal(rng) + 0.5f * static_cast<float>(i % 64) / 64);
  }
  return cache;
}

struct Served {
  v1::GetHeader header;
  std::string data;  // token-major
};

absl::StatusOr<Served> RawGet(const ServerProcess& server,
                              const std::vector<int32_t>& tokens,
                              bool exact_only) {
  auto stub = v1::KvCacheService::NewStub(grpc::CreateChannel(
      server.address(), grpc::InsecureChannelCredentials()));
  v1::GetRequest request;
  request.set_model(kModel);
  for (int32_t token : tokens) request.add_tokens(token);
  if (exact_only) request.set_min_fidelity(v1::FIDELITY_EXACT);
  grpc::ClientContext context;
  auto reader = stub->Get(&context, request);
  Served served;
  v1::GetResponse message;
  while (reader->Read(&message)) {
    if (message.has_header())
      served.header = message.header();
    else
      served.data += message.data();
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok())
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  return served;
}

// Relative MSE (error energy over the variance) of the worst (layer,
// tensor) group of tokens [begin, end) of `got` against `want`, both
// token-major.
double WorstRelativeMse(const KvLayout& layout, const std::string& want,
                        const std::string& got, uint32_t begin, uint32_t end) {
  const size_t row = layout.num_kv_heads * layout.head_dim;
  const size_t token_elements = layout.elements_per_token();
  auto value = [](const std::string& bytes, size_t element) {
    uint16_t bits;
    std::memcpy(&bits, bytes.data() + 2 * element, 2);
    return static_cast<double>(Bf16ToFloat(bits));
  };
  double worst = 0;
  for (size_t group = 0; group < 2 * layout.num_layers; ++group) {
    double sum = 0, square = 0, error = 0, count = 0;
    for (uint32_t t = begin; t < end; ++t)
      for (size_t i = 0; i < row; ++i) {
        const size_t element = t * token_elements + group * row + i;
        const double w = value(want, element), g = value(got, element);
        sum += w, square += w * w, error += (w - g) * (w - g), ++count;
      }
    const double variance = square / count - (sum / count) * (sum / count);
    worst = std::max(worst, error / count / variance);
  }
  return worst;
}

class TiersTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> flags) {
    flags.push_back(absl::StrCat("--chunk_tokens=", kChunkTokens));
    flags.push_back("--default_codec=lossless");
    auto server = ServerProcess::Start(flags);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    Connect();
  }
  void Connect() {
    auto client = server_->Connect();
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  nlohmann::json Stats() {
    auto body = server_->AdminGet("/v1/stats");
    EXPECT_TRUE(body.ok()) << body.status();
    return body.ok() ? nlohmann::json::parse(*body) : nlohmann::json{};
  }
  int64_t Stored() { return Stats()["global"].value("bytes_stored", 0); }

  void Put(const KvCache& cache) {
    auto put = client_->Put({kModel, "", ""}, cache);
    ASSERT_TRUE(put.ok()) << put.status();
  }

  int64_t TierBytes(const char* tier) {
    return Stats()["retention"]["tiers"][tier].value("bytes", int64_t{0});
  }

  // Puts sequences [first, last), each time waiting a while for the
  // demoter to bring the exact chunks under `exact_share` of `capacity`.
  void Fill(uint32_t first, uint32_t last, int64_t capacity,
            double exact_share = 0.8) {
    for (uint32_t id = first; id < last; ++id) {
      Put(Sequence(id));
      for (int i = 0; i < 25 && TierBytes("exact") >
                                    exact_share * static_cast<double>(capacity);
           ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  // Every stored sequence serves what it says: exact ranges bit-exact,
  // lossy ones within tier 2's target; an exact-only Lookup and Get stop
  // at the first lossy chunk. Returns the tokens served lossy.
  uint32_t CheckServed(uint32_t sequences) {
    uint32_t lossy_tokens = 0;
    for (uint32_t id = 0; id < sequences; ++id) {
      const KvCache cache = Sequence(id);
      auto any = client_->Lookup(kModel, cache.tokens);
      EXPECT_TRUE(any.ok()) << any.status();
      if (!any.ok()) continue;
      EXPECT_LE(any->matched_tokens_exact, any->matched_tokens);
      auto served = RawGet(*server_, cache.tokens, false);
      EXPECT_TRUE(served.ok()) << served.status();
      if (!served.ok()) continue;
      std::string want;
      cache.AppendTokenMajor(0, served->header.end_token(), want);
      EXPECT_EQ(served->data.size(), want.size());
      if (served->data.size() != want.size()) continue;
      uint32_t covered = 0, exact_prefix = 0;
      bool lossy_seen = false;
      for (const v1::FidelityRange& range : served->header.fidelity()) {
        EXPECT_EQ(range.begin_token(), covered);
        covered = range.end_token();
        if (range.fidelity() == v1::FIDELITY_EXACT) {
          const size_t token_bytes = cache.layout.bytes_per_token();
          const size_t at = range.begin_token() * token_bytes;
          const size_t size =
              (range.end_token() - range.begin_token()) * token_bytes;
          EXPECT_TRUE(served->data.compare(at, size, want, at, size) == 0)
              << "sequence " << id << " range " << range.begin_token();
          if (!lossy_seen) exact_prefix = range.end_token();
        } else {
          EXPECT_EQ(range.fidelity(), v1::FIDELITY_LOSSY);
          EXPECT_NE(range.codec().find("predictive"), std::string::npos);
          lossy_seen = true;
          lossy_tokens += range.end_token() - range.begin_token();
          EXPECT_LE(WorstRelativeMse(cache.layout, want, served->data,
                                     range.begin_token(), range.end_token()),
                    kLossyTolerance)
              << "sequence " << id << " range " << range.begin_token();
        }
      }
      EXPECT_EQ(covered, served->header.end_token());
      EXPECT_EQ(served->header.matched_tokens(), any->matched_tokens);
      EXPECT_EQ(exact_prefix, any->matched_tokens_exact) << "sequence " << id;
      // Exact only: the Lookup and the Get stop at the first lossy chunk.
      auto exact = RawGet(*server_, cache.tokens, true);
      EXPECT_TRUE(exact.ok()) << exact.status();
      if (exact.ok()) {
        EXPECT_EQ(exact->header.matched_tokens(), any->matched_tokens_exact);
        EXPECT_TRUE(exact->data == want.substr(0, exact->data.size()))
            << "sequence " << id;
      }
    }
    return lossy_tokens;
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(TiersTest, DemotesThenKeepsTokensThenReadmits) {
  // Room for about half of the sequences stored losslessly.
  const int64_t capacity = 320 << 10;
  Start({absl::StrCat("--capacity_bytes=", capacity)});
  Fill(0, 12, capacity);
  nlohmann::json stats = Stats();
  EXPECT_GT(stats["retention"].value("demotions", 0), 0) << stats.dump();
  EXPECT_LE(Stored(), capacity);
  EXPECT_GT(CheckServed(12), 0u);
  EXPECT_GT(stats["retention"]["tiers"]["lossy_1"].value("chunks", 0) +
                stats["retention"]["tiers"]["lossy_2"].value("chunks", 0),
            0)
      << stats.dump();

  // Far more than fits even at tier 2: the least valued keep only tokens.
  Fill(12, 40, capacity);
  stats = Stats();
  EXPECT_GT(stats["retention"]["tiers"]["tokens_only"].value("chunks", 0), 0)
      << stats.dump();
  EXPECT_GT(stats["global"].value("evictions", 0), 0);
  CheckServed(40);
  // A sequence whose chunks hold tokens only: a ghost hit, then a Put
  // brings it back at full fidelity.
  uint32_t ghost = 40;
  for (uint32_t id = 0; id < 40 && ghost == 40; ++id) {
    auto found = client_->Lookup(kModel, Sequence(id).tokens);
    ASSERT_TRUE(found.ok()) << found.status();
    if (found->matched_tokens < kSequenceTokens) ghost = id;
  }
  ASSERT_LT(ghost, 40u) << "no sequence lost its KV";
  EXPECT_GT(Stats()["retention"].value("ghost_hits", 0), 0);
  const int64_t readmitted_before =
      Stats()["retention"].value("readmissions", 0);
  // Stored anew as sent (the store being full, it may be demoted or
  // dropped again at once: exact chunks cost the most bytes per hit).
  auto put = client_->Put({kModel, "", ""}, Sequence(ghost));
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_GT(put->chunks_new, 0u);
  EXPECT_EQ(put->codec, "lossless");
  EXPECT_GT(Stats()["retention"].value("readmissions", 0), readmitted_before);
  // Served the same after a restart (tiers and tokens-only records are
  // durable; the index is rebuilt from them).
  ASSERT_TRUE(server_->Restart().ok());
  Connect();
  CheckServed(40);
}

TEST_F(TiersTest, KillDuringDemotionLosesNothing) {
  const int64_t capacity = 320 << 10;
  Start({absl::StrCat("--capacity_bytes=", capacity)});
  for (int round = 0; round < 3; ++round) {
    // Puts as fast as they go, so that the demoter is busy when killed.
    for (uint32_t id = 0; id < 16; ++id) Put(Sequence(id));
    std::this_thread::sleep_for(std::chrono::milliseconds(30 * round));
    ASSERT_TRUE(server_->Kill().ok());
    ASSERT_TRUE(server_->Restart().ok());
    Connect();
    CheckServed(16);
  }
}

TEST_F(TiersTest, NoneEvictsAtOnce) {
  const int64_t capacity = 320 << 10;
  Start({absl::StrCat("--capacity_bytes=", capacity), "--tiers=none"});
  Fill(0, 12, capacity);
  const nlohmann::json stats = Stats();
  EXPECT_EQ(stats["retention"].value("demotions", -1), 0);
  EXPECT_EQ(stats["retention"]["tiers"]["tokens_only"].value("chunks", -1), 0);
  EXPECT_GT(stats["global"].value("evictions", 0), 0);
  EXPECT_EQ(CheckServed(12), 0u);
}

TEST_F(TiersTest, SharesSetWhatEachTierHolds) {
  // No room at tier 1: chunks leave the exact tier straight for tier 2,
  // and the exact tier keeps to its half of the capacity.
  const int64_t capacity = 320 << 10;
  Start({absl::StrCat("--capacity_bytes=", capacity), "--tier_shares=0.5,0"});
  Fill(0, 12, capacity, 0.5);
  const nlohmann::json stats = Stats();
  EXPECT_EQ(stats["retention"]["tier_shares"].value("exact", -1.0), 0.5);
  EXPECT_EQ(stats["retention"]["tier_shares"].value("lossy_1", -1.0), 0.0);
  const nlohmann::json& tiers = stats["retention"]["tiers"];
  EXPECT_GT(tiers["lossy_2"].value("chunks", 0), 0) << stats.dump();
  EXPECT_EQ(tiers["lossy_1"].value("chunks", -1), 0) << stats.dump();
  // Within a chunk or two of its share (the demoter works a few at a time).
  EXPECT_LE(tiers["exact"].value("bytes", int64_t{0}),
            capacity / 2 + 2 * 32 * 1024)
      << stats.dump();
  EXPECT_GT(CheckServed(12), 0u);
  // Shares that do not fit in a limit keep the server from starting.
  for (const char* bad : {"--tier_shares=0.9,0.2", "--tier_shares=0.8",
                          "--tier_shares=-0.1,0", "--tier_shares=a,b"})
    EXPECT_FALSE(ServerProcess::Start({bad}).ok()) << bad;
}

TEST_F(TiersTest, RejectsUnknownFidelityAndTiers) {
  Start({});
  Put(Sequence(0));
  auto stub = v1::KvCacheService::NewStub(grpc::CreateChannel(
      server_->address(), grpc::InsecureChannelCredentials()));
  v1::LookupRequest request;
  request.set_model(kModel);
  request.add_tokens(0);
  request.set_min_fidelity(v1::FIDELITY_TOKENS_ONLY);
  v1::LookupResponse response;
  grpc::ClientContext context;
  const grpc::Status status = stub->Lookup(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("min_fidelity"), std::string::npos);
  // A server with an unknown --tiers does not start.
  auto bad = ServerProcess::Start({"--tiers=lossless"});
  EXPECT_FALSE(bad.ok());
}

}  // namespace
}  // namespace seqkv
