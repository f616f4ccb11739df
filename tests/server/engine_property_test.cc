// Property test of the data path: random sequences with shared prefixes go in
// through CacheEngine on a real RocksDB; every lookup must equal the longest
// common prefix with what was stored, and every Get must return exactly the
// bytes that were put.
#include <atomic>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "gtest/gtest.h"
#include "proto/layout_convert.h"
#include "server/cache_engine.h"
#include "server/chunk_layout.h"
#include "tests/engine_wire.h"
#include "tests/scoped_temp_dir.h"
#include "xxhash.h"

namespace seqkv {
namespace {

// KV bytes of token `i` of `tokens`: a function of the prefix up to i, as a
// real model's would be, so deduplicated chunks hold the right values.
std::string TokenBytes(const std::vector<int32_t>& tokens, size_t i,
                       size_t bytes_per_token) {
  const uint64_t seed = XXH3_64bits(tokens.data(), (i + 1) * sizeof(int32_t));
  std::mt19937_64 rng(seed);
  std::string out(bytes_per_token, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

// Stores `tokens` through one Put of their token-major bytes `data`.
absl::Status PutAll(CacheEngine& engine, const std::string& name_space,
                    const KvLayout& layout, std::span<const int32_t> tokens,
                    const std::string& codec, std::string_view data) {
  v1::PutHeader header;
  header.set_model("m");
  *header.mutable_layout() = LayoutToProto(layout);
  header.mutable_tokens()->Add(tokens.begin(), tokens.end());
  header.set_codec(codec);
  auto session = testing::WireBeginPut(engine, name_space, header);
  if (!session.ok()) return session.status();
  if (auto status = (*session)->Append(data); !status.ok()) return status;
  return testing::WireFinishPut(engine, **session).status();
}

// The bytes a Get in namespace "ns" streams, in `message_bytes` messages.
absl::StatusOr<std::string> GetAll(CacheEngine& engine,
                                   const v1::GetRequest& get,
                                   size_t message_bytes) {
  std::string got;
  const absl::Status status = testing::WireGet(
      engine, {{"ns"}}, get, message_bytes,
      [](const v1::GetHeader&) { return true; },
      [&](std::string& piece) {
        got += piece;
        return true;
      });
  if (!status.ok()) return status;
  return got;
}

class EngineProperty
    : public ::testing::TestWithParam<std::tuple<int, std::string>> {
 protected:
  void SetUp() override {
    // 16-token chunks (1 KiB raw) are stored as payload files.
    auto store = KvStore::Open(
        {.path = dir_.string(),
         .sync_commits = false,
         .payload_file_min_bytes = std::get<0>(GetParam()) == 16 ? 256u : 0u});
    ASSERT_TRUE(store.ok());
    store_ = std::move(*store);
    engine_ = std::make_unique<CacheEngine>(store_.get(), EngineOptions{});
    ASSERT_TRUE(engine_->Start().ok());
  }
  void TearDown() override {
    engine_.reset();
    store_.reset();
  }

  testing::ScopedTempDir temp_dir_;
  const std::filesystem::path dir_ = temp_dir_.path();
  std::unique_ptr<KvStore> store_;
  std::unique_ptr<CacheEngine> engine_;
};

TEST_P(EngineProperty, LookupAndGetMatchAReferenceModel) {
  const auto [chunk_tokens, codec] = GetParam();
  KvLayout layout{2, 1, 4, DType::kFP32};
  v1::RegisterModelRequest reg;
  reg.set_model("m");
  *reg.mutable_layout() = LayoutToProto(layout);
  reg.set_chunk_tokens(chunk_tokens);
  ASSERT_TRUE(testing::WireRegisterModel(*engine_, reg).ok());
  const size_t per_token = layout.bytes_per_token();

  std::mt19937 rng(chunk_tokens * 7919);
  std::vector<std::vector<int32_t>> stored;
  auto random_sequence = [&] {
    std::vector<int32_t> seq;
    if (!stored.empty() && rng() % 3 != 0) {
      // Extend or branch off a stored sequence.
      const auto& base = stored[rng() % stored.size()];
      seq.assign(base.begin(), base.begin() + rng() % (base.size() + 1));
    }
    const size_t extra = 1 + rng() % 40;
    for (size_t i = 0; i < extra; ++i) seq.push_back(rng() % 5);
    return seq;
  };
  auto reference_match = [&](const std::vector<int32_t>& query) {
    size_t best = 0;
    for (const auto& seq : stored)
      best = std::max<size_t>(best, std::mismatch(seq.begin(), seq.end(),
                                                  query.begin(), query.end())
                                            .first -
                                        seq.begin());
    return best;
  };

  for (int round = 0; round < 40; ++round) {
    const std::vector<int32_t> seq = random_sequence();
    v1::PutHeader header;
    header.set_model("m");
    header.mutable_tokens()->Add(seq.begin(), seq.end());
    header.set_codec(codec);
    auto session = testing::WireBeginPut(*engine_, "ns", header);
    ASSERT_TRUE(session.ok()) << session.status();
    std::string data;
    for (size_t i = 0; i < seq.size(); ++i)
      data += TokenBytes(seq, i, per_token);
    // Random splits of the stream.
    for (size_t offset = 0; offset < data.size();) {
      const size_t take =
          std::min(data.size() - offset, size_t{1} + rng() % 97);
      ASSERT_TRUE(
          (*session)->Append(std::string_view(data).substr(offset, take)).ok());
      offset += take;
    }
    ASSERT_TRUE(testing::WireFinishPut(*engine_, **session).ok());
    stored.push_back(seq);

    for (int q = 0; q < 5; ++q) {
      const std::vector<int32_t> query = random_sequence();
      v1::LookupRequest lookup;
      lookup.set_model("m");
      lookup.mutable_tokens()->Add(query.begin(), query.end());
      auto outcome = testing::WireLookup(*engine_, {{"ns"}}, lookup);
      ASSERT_TRUE(outcome.ok());
      const size_t expected = reference_match(query);
      ASSERT_EQ(outcome->matched_tokens, expected) << "round " << round;

      v1::GetRequest get;
      get.set_model("m");
      get.mutable_tokens()->Add(query.begin(), query.end());
      // Messages of less than a token, one, and more.
      auto got = GetAll(*engine_, get, 24 + 40 * (q % 3));
      ASSERT_TRUE(got.ok()) << got.status();
      std::string want;
      for (size_t i = 0; i < expected; ++i)
        want += TokenBytes(query, i, per_token);
      ASSERT_TRUE(*got == want) << "round " << round;

      // A random range of the match: chunks are cut at both ends. An end of
      // 0 means the end of the match.
      const uint32_t begin = rng() % (expected + 1);
      uint32_t end = begin + rng() % (expected - begin + 1);
      if (end == 0) end = expected;
      get.set_begin_token(begin);
      get.set_end_token(end);
      auto ranged = GetAll(*engine_, get, 64 + 40 * (q % 3));
      ASSERT_TRUE(ranged.ok()) << ranged.status();
      ASSERT_TRUE(*ranged ==
                  want.substr(begin * per_token, (end - begin) * per_token))
          << "round " << round << " range [" << begin << ", " << end << ")";
    }
  }
  // Another namespace sees none of it.
  v1::LookupRequest lookup;
  lookup.set_model("m");
  lookup.mutable_tokens()->Add(stored[0].begin(), stored[0].end());
  EXPECT_EQ(testing::WireLookup(*engine_, {{"other"}}, lookup)->matched_tokens,
            0u);
}

// Chunks of codecs that store them verbatim are kept in wire order, so Gets
// read them straight into messages; chunks stored before that, in the
// codecs' chunk layout, must still read back the same.
TEST(EngineStorageOrderTest, VerbatimChunksOfEitherOrderReadBackTheSame) {
  for (const uint64_t file_min_bytes : {uint64_t{0}, uint64_t{1}}) {
    const testing::ScopedTempDir dir("seqkv-order");
    auto store = KvStore::Open({.path = dir.string(),
                                .sync_commits = false,
                                .payload_file_min_bytes = file_min_bytes});
    ASSERT_TRUE(store.ok());
    const KvLayout layout{2, 2, 8, DType::kBF16};
    const size_t per_token = layout.bytes_per_token();
    std::vector<int32_t> tokens(10);
    for (int i = 0; i < 10; ++i) tokens[i] = 100 + i;
    std::string data;
    for (size_t i = 0; i < tokens.size(); ++i)
      data += TokenBytes(tokens, i, per_token);
    auto get_all = [&](CacheEngine& engine) {
      v1::GetRequest get;
      get.set_model("m");
      get.mutable_tokens()->Add(tokens.begin(), tokens.end());
      get.set_begin_token(1);  // cut the first chunk
      return GetAll(engine, get, 1 << 20).value_or("Get failed");
    };
    {
      EngineOptions options;
      options.default_chunk_tokens = 4;
      CacheEngine engine(store->get(), options);
      ASSERT_TRUE(engine.Start().ok());
      ASSERT_TRUE(PutAll(engine, "ns", layout, tokens, "raw", data).ok());
      ASSERT_TRUE(
          PutAll(engine, "other", layout, tokens, "lossless", data).ok());
      EXPECT_EQ(get_all(engine), data.substr(per_token));
    }
    // Rewrite every chunk the way an older server stored it.
    Trie trie(store->get());
    int raw_chunks = 0, other_chunks = 0;
    auto it = (*store)->NewIterator(Column::kNodes);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      NodeRecord record;
      ASSERT_TRUE(record.ParseFromString(it->value().ToString()));
      if (record.codec() != "raw") {
        EXPECT_FALSE(record.payload_token_major());
        ++other_chunks;
        continue;
      }
      ++raw_chunks;
      ASSERT_TRUE(record.payload_token_major());
      auto payload = trie.ReadPayload(record);
      ASSERT_TRUE(payload.ok()) << payload.status();
      const std::string_view wire = payload->view();
      std::string chunk(wire.size(), '\0');
      TokenMajorToChunk(layout, record.tokens_size(),
                        std::as_bytes(std::span(wire)),
                        std::as_writable_bytes(std::span(chunk)));
      ASSERT_NE(chunk, wire);
      ASSERT_TRUE(trie.StagePayload(chunk, record).ok());
      record.clear_payload_token_major();
      ASSERT_TRUE((*store)
                      ->Put(Column::kNodes, it->key().ToString(),
                            record.SerializeAsString())
                      .ok());
    }
    EXPECT_EQ(raw_chunks, 3);
    EXPECT_EQ(other_chunks, 3);
    EngineOptions options;
    CacheEngine engine(store->get(), options);
    ASSERT_TRUE(engine.Start().ok());
    EXPECT_EQ(get_all(engine), data.substr(per_token));
  }
}

// Gets racing Deletes of what they read: a chunk removed under a Get is a
// retryable ABORTED, never DATA_LOSS, whether its payload is a RocksDB
// value or a file.
TEST(EngineRaceTest, ChunksRemovedUnderAGetAreAbortedNotDataLoss) {
  for (const uint64_t file_min_bytes : {uint64_t{0}, uint64_t{1}}) {
    const testing::ScopedTempDir dir("seqkv-race");
    auto store = KvStore::Open({.path = dir.string(),
                                .sync_commits = false,
                                .payload_file_min_bytes = file_min_bytes});
    ASSERT_TRUE(store.ok());
    {
      EngineOptions options;
      options.default_chunk_tokens = 2;
      CacheEngine engine(store->get(), options);
      ASSERT_TRUE(engine.Start().ok());
      const KvLayout layout{2, 1, 64, DType::kBF16};
      std::vector<int32_t> tokens(64);
      for (int i = 0; i < 64; ++i) tokens[i] = i;
      // Stores the sequence and deletes it again.
      auto put_and_delete = [&]() -> absl::Status {
        if (auto status = PutAll(
                engine, "ns", layout, tokens, "raw",
                std::string(tokens.size() * layout.bytes_per_token(), '\7'));
            !status.ok())
          return status;
        v1::DeleteRequest remove;
        remove.set_model("m");
        return testing::WireDelete(engine, "ns", remove).status();
      };
      std::atomic<bool> stop = false, writer_failed = false;
      std::atomic<int> rounds = 0;
      std::thread writer([&] {
        while (!stop) {
          if (auto status = put_and_delete(); !status.ok()) {
            ADD_FAILURE() << status;
            writer_failed = true;
            return;
          }
          ++rounds;
        }
      });
      while (rounds == 0 && !writer_failed) std::this_thread::yield();
      int aborted = 0, nonempty = 0;
      // Until enough Gets found something to read (or the writer is done).
      for (int i = 0; i < 20000 && nonempty < 300; ++i) {
        v1::GetRequest get;
        get.set_model("m");
        get.mutable_tokens()->Add(tokens.begin(), tokens.end());
        const absl::Status status = testing::WireGet(
            engine, {{"ns"}}, get, 1 << 20,
            [&](const v1::GetHeader& h) {
              if (h.matched_tokens() > 0) ++nonempty;
              return true;
            },
            [](std::string&) { return true; });
        if (status.code() == absl::StatusCode::kAborted) {
          ++aborted;
          continue;
        }
        ASSERT_TRUE(status.ok()) << status;
      }
      stop = true;
      writer.join();
      RecordProperty("aborted", aborted);
      RecordProperty("nonempty", nonempty);
    }
    store->reset();
  }
}

// Named "chunk3_lossless" and so on, the same in every build.
INSTANTIATE_TEST_SUITE_P(
    ChunkSizesAndCodecs, EngineProperty,
    ::testing::Combine(::testing::Values(1, 3, 16),
                       ::testing::Values(std::string("raw"),
                                         std::string("lossless"))),
    [](const ::testing::TestParamInfo<EngineProperty::ParamType>& info) {
      return "chunk" + std::to_string(std::get<0>(info.param)) + "_" +
             std::get<1>(info.param);
    });

}  // namespace
}  // namespace seqkv
