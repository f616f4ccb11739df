// The content index and the reference planner on a real trie (RocksDB in a
// temporary directory): which stored chunks a new chunk is coded against.
#include "server/reference_planner.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/chunk_layout.h"
#include "server/content_index.h"
#include "server/decoded_chunk_cache.h"
#include "storage/kv_store.h"
#include "storage/trie.h"
#include "tests/scoped_temp_dir.h"

namespace seqkv {
namespace {

constexpr uint64_t kBytesPerToken = 8;

std::vector<int32_t> Range(int32_t first, int n) {
  std::vector<int32_t> tokens(n);
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

std::vector<int32_t> Concat(std::vector<int32_t> a,
                            const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

class ReferencePlannerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store =
        KvStore::Open({.path = dir_.path().string(), .sync_commits = false});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    trie_ = std::make_unique<Trie>(store_.get());
  }

  // Stores one chunk of `tokens` below `parent`, indexed by content.
  NodeKey Store(const NodeKey& parent, const std::vector<int32_t>& tokens,
                uint32_t depth = 0, const std::string& codec = "lossless") {
    PendingNode node =
        NewPendingNode({.parent = parent,
                        .tokens = tokens,
                        .codec = codec,
                        .bytes_logical = tokens.size() * kBytesPerToken,
                        .name_space = "ns",
                        .model = "m",
                        .put_id = next_id_++},
                       0);
    node.record.set_reference_depth(depth);
    EXPECT_TRUE(trie_->StagePayload("payload", node.record).ok());
    EXPECT_TRUE(trie_->Commit({&node, 1}, {.name_space = "ns"}).ok());
    content_.Add(node.key, node.record);
    return node.key;
  }

  NodeRecord Plan(const NodeKey& parent, const std::vector<int32_t>& tokens,
                  ReferenceOptions options = {}) {
    ReferencePlanner planner(trie_.get(), &content_, options);
    NodeRecord record;
    EXPECT_TRUE(planner
                    .Plan({.parent = parent,
                           .name_space = "ns",
                           .model = "m",
                           .codec = "lossless",
                           .tokens = tokens,
                           .bytes_per_token = kBytesPerToken},
                          record)
                    .ok());
    return record;
  }

  testing::ScopedTempDir dir_;
  std::unique_ptr<KvStore> store_;
  std::unique_ptr<Trie> trie_;
  ContentIndex content_;
  const NodeKey root_ = RootKey("ns", "m|layout");
  uint64_t next_id_ = 1;
};

// A document stored after one prefix is found after another, at another
// offset, and the run covers exactly the shared tokens.
TEST_F(ReferencePlannerTest, FindsTokensStoredAfterAnotherPrefix) {
  const auto document = Range(1000, 100);
  const NodeKey source =
      Store(RootKey("ns", "other"), Concat(Range(1, 30), document));
  const NodeRecord record =
      Plan(root_, Concat(Concat(Range(500, 50), document), Range(2000, 20)));
  ASSERT_EQ(record.references_size(), 1);
  EXPECT_EQ(record.references(0).node_key(), source.Bytes());
  ASSERT_EQ(record.reference_runs_size(), 1);
  EXPECT_EQ(record.reference_runs(0).token(), 50u);
  EXPECT_EQ(record.reference_runs(0).num_tokens(), 100u);
  EXPECT_EQ(record.reference_runs(0).source_token(), 30u);
  EXPECT_EQ(record.copied_tokens(), 0u);
  EXPECT_EQ(record.reference_depth(), 1u);

  // Off, nothing is referenced.
  const NodeRecord off =
      Plan(root_, Concat(Concat(Range(500, 50), document), Range(2000, 20)),
           {.split_dedup = true, .cross_prefix = false});
  EXPECT_EQ(off.references_size(), 0);
  EXPECT_EQ(off.reference_runs_size(), 0);
}

// A sibling under the same parent that shares the chunk's head: the head
// is copied from it.
TEST_F(ReferencePlannerTest, CopiesTheHeadASiblingShares) {
  const auto head = Range(1, 40);
  Store(root_, Concat(head, Range(100, 60)));
  const NodeRecord record = Plan(root_, Concat(head, Range(300, 60)));
  ASSERT_EQ(record.references_size(), 1);
  EXPECT_EQ(record.copied_tokens(), 40u);
  EXPECT_EQ(record.reference_runs_size(), 0);

  const NodeRecord off = Plan(root_, Concat(head, Range(300, 60)),
                              {.split_dedup = false, .cross_prefix = true});
  EXPECT_EQ(off.copied_tokens(), 0u);
}

// Shared runs shorter than a window, chunks of another codec or model, and
// sources at the deepest level are not referenced; nor is a chunk only a
// few of whose tokens a source holds.
TEST_F(ReferencePlannerTest, LeavesOutWhatDoesNotPay) {
  const auto document = Range(1000, 100);
  Store(RootKey("ns", "a"), Concat(Range(1, 30), Range(1000, 10)));
  Store(RootKey("ns", "b"), Concat(Range(1, 30), document), 0, "raw");
  Store(RootKey("ns", "c"), Concat(Range(1, 30), document), kMaxReferenceDepth);
  const NodeRecord record = Plan(root_, Concat(Range(500, 50), document));
  EXPECT_EQ(record.references_size(), 0);

  Store(RootKey("ns", "d"), Concat(Range(1, 30), Range(5000, 20)));
  const NodeRecord few = Plan(root_, Concat(Range(5000, 20), Range(7000, 200)));
  EXPECT_EQ(few.references_size(), 0) << "20 of 220 tokens covered";
}

// Of equal runs, the shallower source wins, so that the new chunk can be
// a source itself.
TEST_F(ReferencePlannerTest, PrefersShallowSources) {
  const auto document = Range(1000, 100);
  const NodeKey shallow =
      Store(RootKey("ns", "a"), Concat(Range(1, 30), document), 0);
  Store(RootKey("ns", "b"), Concat(Range(1, 30), document), 1);
  const NodeRecord record = Plan(root_, Concat(Range(500, 50), document));
  ASSERT_EQ(record.references_size(), 1);
  EXPECT_EQ(record.references(0).node_key(), shallow.Bytes());
  EXPECT_EQ(record.reference_depth(), 1u);
}

TEST(ContentIndexTest, FindsAnchorsAndForgetsRemovedChunks) {
  NodeRecord record;
  record.set_namespace_("ns");
  record.set_model("m");
  for (int32_t t = 0; t < 64; ++t) record.add_tokens(t);
  ContentIndex index;
  const NodeKey key = ChildKey(RootKey("ns", "m"), Range(0, 64));
  index.Add(key, record);
  const uint64_t scope = ContentIndex::Scope("ns", "m");
  const auto tokens = Range(0, 64);
  // The first window is always indexed.
  auto found = index.Find(
      ContentIndex::WindowHash(scope, std::span(tokens).first(16)), 4);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].node, key);
  EXPECT_EQ(found[0].token, 0u);
  // Another namespace's windows are others.
  EXPECT_TRUE(index
                  .Find(ContentIndex::WindowHash(ContentIndex::Scope("x", "m"),
                                                 std::span(tokens).first(16)),
                        4)
                  .empty());
  EXPECT_GT(index.windows(), 0u);
  index.Remove(key);
  EXPECT_EQ(index.windows(), 0u);
  EXPECT_TRUE(
      index
          .Find(ContentIndex::WindowHash(scope, std::span(tokens).first(16)), 4)
          .empty());
  // Tokens-only chunks are not sources.
  record.set_tokens_only(true);
  index.Add(key, record);
  EXPECT_EQ(index.windows(), 0u);
}

TEST(ChunkLayoutTest, CopyChunkTokensMovesWholeRows) {
  const KvLayout layout{
      .num_layers = 2, .num_kv_heads = 2, .head_dim = 4, .dtype = DType::kBF16};
  const uint32_t source_tokens = 6, target_tokens = 5;
  std::vector<std::byte> source(layout.bytes_per_token() * source_tokens);
  for (size_t i = 0; i < source.size(); ++i)
    source[i] = static_cast<std::byte>(i);
  std::vector<std::byte> target(layout.bytes_per_token() * target_tokens,
                                std::byte{0xEE});
  CopyChunkTokens(layout, source, source_tokens, 2, target, target_tokens, 1,
                  3);
  const ChunkInfo from{&layout, source_tokens, 0, {}};
  const ChunkInfo to{&layout, target_tokens, 0, {}};
  const size_t row_bytes = layout.head_dim * 2;
  for (uint32_t layer = 0; layer < 2; ++layer)
    for (uint32_t tensor = 0; tensor < 2; ++tensor)
      for (uint32_t head = 0; head < 2; ++head)
        for (uint32_t t = 0; t < target_tokens; ++t) {
          const std::byte* got =
              target.data() + to.RowOffset(layer, tensor, head, t) * 2;
          if (t >= 1 && t < 4) {
            const std::byte* want =
                source.data() +
                from.RowOffset(layer, tensor, head, t - 1 + 2) * 2;
            EXPECT_EQ(std::memcmp(got, want, row_bytes), 0);
          } else {
            EXPECT_EQ(got[0], std::byte{0xEE});
          }
        }
}

TEST(DecodedChunkCacheTest, KeepsTheLatestWithinItsCapacity) {
  ChunkBufferPool pool(0);
  auto chunk = [&](char fill) {
    auto buffer = pool.Acquire(100);
    EXPECT_TRUE(buffer.ok());
    std::fill(buffer->str().begin(), buffer->str().end(), fill);
    return std::make_shared<ChunkBuffer>(*std::move(buffer));
  };
  auto record = [](const std::string& key) {
    NodeRecord r;
    r.set_payload_key(key);
    r.set_payload_checksum(7);
    return r;
  };
  DecodedChunkCache cache(250);
  cache.Insert(record("a"), chunk('a'));
  cache.Insert(record("b"), chunk('b'));
  ASSERT_NE(cache.Find(record("a")), nullptr);  // a is now the latest
  cache.Insert(record("c"), chunk('c'));        // b goes
  EXPECT_EQ(cache.Find(record("b")), nullptr);
  ASSERT_NE(cache.Find(record("a")), nullptr);
  EXPECT_EQ(cache.Find(record("a"))->str()[0], 'a');
  EXPECT_EQ(cache.counts().bytes, 200u);
  // Another checksum is another payload.
  NodeRecord other = record("a");
  other.set_payload_checksum(8);
  EXPECT_EQ(cache.Find(other), nullptr);
  cache.Clear();
  EXPECT_EQ(cache.Find(record("a")), nullptr);
  EXPECT_EQ(cache.counts().bytes, 0u);

  DecodedChunkCache none(0);
  none.Insert(record("a"), chunk('a'));
  EXPECT_EQ(none.Find(record("a")), nullptr);
}

// Winnowing: every run of kWindowTokens + kWinnow - 1 tokens of a stored
// chunk has a window in the index, whatever the tokens and the scope.
TEST(ContentIndexTest, EveryLongEnoughRunIsFound) {
  std::mt19937 random(7);
  constexpr uint32_t kRun =
      ContentIndex::kWindowTokens + ContentIndex::kWinnow - 1;
  for (int trial = 0; trial < 200; ++trial) {
    NodeRecord record;
    record.set_namespace_("ns");
    record.set_model("model-" + std::to_string(trial));
    for (int t = 0; t < 256; ++t) record.add_tokens(random() % 8192);
    ContentIndex index;
    const NodeKey key = ChildKey(RootKey("ns", "m"), {&trial, 1});
    index.Add(key, record);
    const uint64_t scope = ContentIndex::Scope("ns", record.model());
    const std::span<const int32_t> tokens(record.tokens().data(), 256);
    const uint32_t begin = random() % (256 - kRun + 1);
    bool found = false;
    for (uint32_t t = begin; t + ContentIndex::kWindowTokens <= begin + kRun;
         ++t)
      for (const auto& place : index.Find(
               ContentIndex::WindowHash(
                   scope, tokens.subspan(t, ContentIndex::kWindowTokens)),
               4))
        found |= place.node == key && place.token == t;
    EXPECT_TRUE(found) << "trial " << trial << ", run at " << begin;
  }
}

}  // namespace
}  // namespace seqkv
