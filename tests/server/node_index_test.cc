// The in-memory node index, loaded from a real trie on RocksDB.
#include "server/node_index.h"

#include <xxhash.h>

#include <cstring>
#include <filesystem>
#include <numeric>

#include "gtest/gtest.h"
#include "proto/chunk_digest.h"
#include "server/retention.h"
#include "server/stats.h"
#include "storage/kv_store.h"
#include "storage/node_key.h"
#include "tests/scoped_temp_dir.h"
#include "tests/storage/chunk_chain.h"

namespace seqkv {
namespace {

std::vector<int32_t> Iota(int n, int32_t first = 1) {
  std::vector<int32_t> tokens(n);
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

TEST(ChunkDigestTest, IsTheWireDefinitionExactly) {
  // The wire API's chunk digest (the node index's token hash).
  const std::vector<int32_t> chunk = {1, 2, 3};
  EXPECT_EQ(ChunkDigest(chunk),
            XXH3_64bits_withSeed(chunk.data(), 12, 0x73657170746f6b73));
  const std::vector<int32_t> ten = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::string packed = PackChunkDigests(ten, 4);
  ASSERT_EQ(packed.size(), 16u);  // two whole chunks; the tail is not sent
  uint64_t second = 0;
  std::memcpy(&second, packed.data() + 8, 8);
  EXPECT_EQ(second, ChunkDigest(std::span(ten).subspan(4, 4)));
}

class NodeIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = KvStore::Open({dir_.string(), false});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    trie_ = std::make_unique<Trie>(store_.get());
  }
  void TearDown() override {
    trie_.reset();
    store_.reset();
  }

  // Commits `tokens` in chunks of `chunk` below root; returns the keys.
  std::vector<NodeKey> Insert(const std::vector<int32_t>& tokens,
                              uint32_t chunk, const std::string& ns = "a") {
    std::vector<PendingNode> nodes = ChunkChain(root_, tokens, chunk);
    for (PendingNode& node : nodes) node.record.set_namespace_(ns);
    EXPECT_TRUE(trie_->Commit(nodes, {.name_space = ns}).ok());
    std::vector<NodeKey> keys;
    for (const PendingNode& node : nodes) keys.push_back(node.key);
    return keys;
  }

  testing::ScopedTempDir temp_dir_;
  const std::filesystem::path dir_ = temp_dir_.path();
  std::unique_ptr<KvStore> store_;
  std::unique_ptr<Trie> trie_;
  NodeKey root_ = RootKey("a", "model");
};

TEST_F(NodeIndexTest, MatchesWholeChunksItWasLoadedWith) {
  const auto keys = Insert(Iota(10), 4);  // chunks of 4, 4 and 2 tokens
  NodeIndex index;
  ASSERT_TRUE(index.Load(*trie_).ok());
  EXPECT_EQ(index.MatchWholeChunks(root_, Iota(10), 4),
            (std::vector<NodeKey>{keys[0], keys[1]}));
  // The partial chunk is the trie's business; so is a prompt shorter than
  // a chunk.
  EXPECT_TRUE(index.MatchWholeChunks(root_, Iota(3), 4).empty());
  auto other = Iota(12);
  other[5] = 99;
  EXPECT_EQ(index.MatchWholeChunks(root_, other, 4),
            (std::vector<NodeKey>{keys[0]}));
  EXPECT_TRUE(
      index.MatchWholeChunks(RootKey("b", "model"), Iota(8), 4).empty());
  EXPECT_TRUE(index.MatchWholeChunks(root_, Iota(8), 0).empty());
}

// The digests a client sends (PackChunkDigests) find the same nodes.
std::vector<uint64_t> Digests(const std::vector<int32_t>& tokens,
                              uint32_t chunk_tokens) {
  const std::string packed = PackChunkDigests(tokens, chunk_tokens);
  std::vector<uint64_t> digests(packed.size() / 8);
  std::memcpy(digests.data(), packed.data(), packed.size());
  return digests;
}

TEST_F(NodeIndexTest, ChunkDigestsMatchWholeChunksAndFollowRemovals) {
  const auto keys = Insert(Iota(10), 4);
  NodeIndex index;
  ASSERT_TRUE(index.Load(*trie_).ok());
  EXPECT_EQ(Digests(Iota(10), 4).size(), 2u);  // the tail is not digested
  EXPECT_EQ(index.MatchChunkDigests(root_, Digests(Iota(10), 4)),
            (std::vector<NodeKey>{keys[0], keys[1]}));
  auto other = Iota(12);
  other[5] = 99;
  EXPECT_EQ(index.MatchChunkDigests(root_, Digests(other, 4)),
            (std::vector<NodeKey>{keys[0]}));
  EXPECT_TRUE(
      index.MatchChunkDigests(RootKey("b", "model"), Digests(Iota(8), 4))
          .empty());
  // Chunk size matters: digests of 2-token chunks name no stored chunk.
  EXPECT_TRUE(index.MatchChunkDigests(root_, Digests(Iota(8), 2)).empty());
  index.Remove(keys[2]);
  index.Remove(keys[1]);
  EXPECT_EQ(index.MatchChunkDigests(root_, Digests(Iota(8), 4)),
            (std::vector<NodeKey>{keys[0]}));
}

TEST_F(NodeIndexTest, ChunkDigestsFindLongChainsLoadedInAnyOrder) {
  // Load sees nodes in key (hash) order, so children before parents.
  const auto keys = Insert(Iota(160), 4);
  NodeIndex index;
  ASSERT_TRUE(index.Load(*trie_).ok());
  EXPECT_EQ(index.MatchChunkDigests(root_, Digests(Iota(160), 4)), keys);
  // Nodes added later extend the loaded chains.
  const auto more = Insert(Iota(168), 4);
  for (size_t i = keys.size(); i < more.size(); ++i) {
    auto record = trie_->ReadNode(more[i]);
    ASSERT_TRUE(record.ok() && record->has_value());
    index.Add(more[i], **record, 1);
  }
  EXPECT_EQ(index.MatchChunkDigests(root_, Digests(Iota(168), 4)), more);
}

TEST_F(NodeIndexTest, AddAndRemoveKeepMatchesAndLeavesRight) {
  NodeIndex index;
  ASSERT_TRUE(index.Load(*trie_).ok());
  const auto keys = Insert(Iota(12), 4);
  for (size_t i = 0; i < keys.size(); ++i) {
    auto record = trie_->ReadNode(keys[i]);
    ASSERT_TRUE(record.ok() && record->has_value());
    index.Add(keys[i], **record, 100 + static_cast<int64_t>(i));
  }
  EXPECT_EQ(index.MatchWholeChunks(root_, Iota(12), 4).size(), 3u);
  EXPECT_EQ(index.NextVictim("a"), keys[2]);
  // Removing an inner node (as a subtree removal does, top first) cuts the
  // match there, and its children still find their way out.
  index.Remove(keys[1]);
  EXPECT_EQ(index.MatchWholeChunks(root_, Iota(12), 4),
            (std::vector<NodeKey>{keys[0]}));
  EXPECT_EQ(index.NextVictim("a"), keys[0]);  // a leaf again, and older
  index.Remove(keys[2]);
  EXPECT_EQ(index.NextVictim("a"), keys[0]);
  index.Remove(keys[0]);
  EXPECT_FALSE(index.NextVictim("a").has_value());
  EXPECT_EQ(index.size(), 0u);
}

TEST_F(NodeIndexTest, TiersKeepLeavesDemotionsAndTokensOnlyInStep) {
  NodeIndex index;
  ASSERT_TRUE(index.Load(*trie_).ok());
  const auto keys = Insert(Iota(12), 4);
  std::vector<NodeRecord> records;
  for (size_t i = 0; i < keys.size(); ++i) {
    auto record = trie_->ReadNode(keys[i]);
    ASSERT_TRUE(record.ok() && record->has_value());
    records.push_back(**record);
    index.Add(keys[i], **record, 100 + static_cast<int64_t>(i));
  }
  EXPECT_EQ(index.Tiers(keys), (std::vector<uint32_t>{0, 0, 0}));
  EXPECT_EQ(index.Stats()["a"].tiers[0].chunks, 3u);
  // An exact chunk goes once no child of it is exact: the last first.
  EXPECT_EQ(index.NextDemotion("a", 0), keys[2]);
  EXPECT_FALSE(index.NextDemotion("a", 1).has_value());
  NodeRecord lossy = records[0];
  lossy.set_lossy_tier(1);
  lossy.set_bytes_stored(1);
  EXPECT_TRUE(index.ChangeTier(keys[0], lossy));
  EXPECT_EQ(index.Stats()["a"].demotions, 1u);
  EXPECT_EQ(index.Stats()["a"].tiers[1].chunks, 1u);
  EXPECT_EQ(index.Stats()["a"].tiers[1].bytes, 1u);
  EXPECT_EQ(index.NextDemotion("a", 1), keys[0]);
  // The leaf kept as tokens only: its parent is the leaf eviction takes.
  NodeRecord tokens_only = records[2];
  tokens_only.set_tokens_only(true);
  tokens_only.set_bytes_stored(0);
  EXPECT_TRUE(index.ChangeTier(keys[2], tokens_only));
  EXPECT_EQ(index.NextVictim("a"), keys[1]);
  EXPECT_EQ(index.NextDemotion("a", 0), keys[1]);
  EXPECT_TRUE(index.HasTokensOnlyChildren(keys[1]));
  EXPECT_EQ(index.Tiers(keys), (std::vector<uint32_t>{1, 0, kTokensOnlyTier}));
  // Stored again at full fidelity: a leaf again, and a readmission.
  EXPECT_TRUE(index.ChangeTier(keys[2], records[2]));
  EXPECT_EQ(index.NextVictim("a"), keys[2]);
  EXPECT_EQ(index.NextDemotion("a", 0), keys[2]);
  EXPECT_EQ(index.Stats()["a"].readmissions, 1u);
  // A chunk left at its tier is not offered again.
  for (const NodeKey& key : keys) index.KeepTier(key);
  EXPECT_FALSE(index.NextDemotion("a", 0).has_value());
  EXPECT_FALSE(index.NextDemotion("a", 1).has_value());
  // Removal (the subtree, top first) leaves nothing behind.
  for (const NodeKey& key : keys) index.Remove(key);
  EXPECT_EQ(index.size(), 0u);
  EXPECT_EQ(index.Stats()["a"].tiers[0].chunks, 0u);
}

TEST_F(NodeIndexTest, DemotionsAreDueWhereATierHoldsMoreThanItsShare) {
  NodeIndex index;
  ASSERT_TRUE(index.Load(*trie_).ok());
  const auto keys = Insert(Iota(12), 4);
  std::vector<NodeRecord> records;
  for (size_t i = 0; i < keys.size(); ++i) {
    auto record = trie_->ReadNode(keys[i]);
    ASSERT_TRUE(record.ok() && record->has_value());
    records.push_back(**record);
    records.back().set_bytes_stored(1000);
    index.Add(keys[i], records.back(), 100 + static_cast<int64_t>(i));
  }
  StatsRegistry stats(store_.get(), &trie_->usage());
  Retention retention(trie_.get(), &index, &stats);
  retention.SetDefaultTiers({.lossy = true, .tokens_only = true});
  // 3000 bytes exact, 600 over 80% of a capacity of 3000.
  retention.SetLimits({}, 3000);
  auto steps = retention.DemotionsDue({.exact = 0.8, .lossy_1 = 0.1});
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].name_space, "a");
  EXPECT_EQ(steps[0].from, 0u);
  EXPECT_EQ(steps[0].to, 1u);
  // No room at tier 1: straight to tier 2.
  steps = retention.DemotionsDue({.exact = 0.8, .lossy_1 = 0});
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].to, 2u);
  // Within its share, or no limit: nothing due.
  EXPECT_TRUE(retention.DemotionsDue({.exact = 1, .lossy_1 = 0}).empty());
  retention.SetLimits({}, 0);
  EXPECT_TRUE(retention.DemotionsDue({}).empty());
  // An evicting quota; a tier-1 chunk over its share goes on to tier 2,
  // and the tier most over its share comes first.
  retention.SetLimits({{"a", NamespaceLimit{.quota_bytes = 2000}}}, 0);
  NodeRecord lossy = records[2];
  lossy.set_lossy_tier(1);
  ASSERT_TRUE(index.ChangeTier(keys[2], lossy));
  steps = retention.DemotionsDue({.exact = 0.8, .lossy_1 = 0.1});
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].from, 1u);  // 1000 against 200
  EXPECT_EQ(steps[0].to, 2u);
  EXPECT_EQ(steps[1].from, 0u);  // 2000 against 1600; tier 1 is full
  EXPECT_EQ(steps[1].to, 2u);
  // A refusing quota never demotes, nor a namespace without lossy tiers.
  retention.SetLimits(
      {{"a", NamespaceLimit{.quota_bytes = 2000, .reject = true}}}, 0);
  EXPECT_TRUE(retention.DemotionsDue({}).empty());
  retention.SetLimits({}, 1000);
  retention.SetDefaultTiers({.lossy = false, .tokens_only = true});
  EXPECT_TRUE(retention.DemotionsDue({}).empty());
}

TEST_F(NodeIndexTest, EveryNamespaceHoldingATierIsOfferedAgainstTheCapacity) {
  // Against the capacity the namespace holding the most goes first, the
  // others after it: one whose chunks all stay at their tier must not
  // hold up the demotion of the rest.
  NodeIndex index;
  ASSERT_TRUE(index.Load(*trie_).ok());
  for (const auto& [ns, tokens] :
       std::vector<std::pair<std::string, int>>{{"a", 12}, {"b", 8}}) {
    for (const NodeKey& key :
         Insert(Iota(tokens, ns == "a" ? 1 : 100), 4, ns)) {
      auto record = trie_->ReadNode(key);
      ASSERT_TRUE(record.ok() && record->has_value());
      NodeRecord sized = **record;
      sized.set_bytes_stored(1000);
      index.Add(key, sized, 100);
      if (ns == "a") index.KeepTier(key);
    }
  }
  StatsRegistry stats(store_.get(), &trie_->usage());
  Retention retention(trie_.get(), &index, &stats);
  retention.SetDefaultTiers({.lossy = true, .tokens_only = true});
  retention.SetLimits({}, 4000);
  const auto steps = retention.DemotionsDue({.exact = 0.8, .lossy_1 = 0.1});
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].name_space, "a");
  EXPECT_EQ(steps[1].name_space, "b");
  EXPECT_FALSE(index.NextDemotion("a", 0).has_value());
  EXPECT_TRUE(index.NextDemotion("b", 0).has_value());
}

TEST_F(NodeIndexTest, VisitsAreCountedUntilTaken) {
  const auto keys = Insert(Iota(8), 4);
  NodeIndex index;
  ASSERT_TRUE(index.Load(*trie_).ok());
  index.Visit(keys, 1000);
  index.Visit(std::span(keys).first(1), 2000);
  auto visits = index.TakeVisits();
  ASSERT_EQ(visits.size(), 2u);
  std::sort(visits.begin(), visits.end(),
            [&](const auto& a, const auto& b) { return a.visits > b.visits; });
  EXPECT_EQ(visits[0].key, keys[0]);
  EXPECT_EQ(visits[0].visits, 2u);
  EXPECT_EQ(visits[0].last_used_micros, 2000);
  EXPECT_EQ(visits[1].visits, 1u);
  EXPECT_TRUE(index.TakeVisits().empty());
}

TEST_F(NodeIndexTest, ALookupAndThePutThatReadmitsAreOneOccurrence) {
  // A chunk held as tokens only is matched by a Lookup, whose Put then
  // stores it again: one request, counted once. A Put with no Lookup
  // before it counts as one.
  NodeIndex index;
  ASSERT_TRUE(index.Load(*trie_).ok());
  const NodeKey key = Insert(Iota(4), 4)[0];
  auto stored = trie_->ReadNode(key);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  const NodeRecord record = **stored;
  NodeRecord tokens_only = record;
  tokens_only.set_tokens_only(true);
  tokens_only.set_bytes_stored(0);
  index.Add(key, record, 100);
  ASSERT_TRUE(index.ChangeTier(key, tokens_only));
  const std::vector<NodeKey> path = {key};
  const std::vector<std::string> scope = {"a"};
  // Lookups elsewhere, so that P̂ is below 1.
  for (int i = 0; i < 8; ++i) index.Visit({}, 150 + i, scope);
  index.Visit(path, 200, scope);
  index.TakeVisits();
  const double looked_up = index.Probability(key);
  ASSERT_TRUE(index.Readmit(key, record, 300));
  EXPECT_DOUBLE_EQ(index.Probability(key), looked_up);
  ASSERT_TRUE(index.ChangeTier(key, tokens_only));
  ASSERT_TRUE(index.Readmit(key, record, 400));
  EXPECT_GT(index.Probability(key), looked_up);
}

TEST_F(NodeIndexTest, LoadTakesLastUseFromTheStoredStats) {
  const auto first = Insert(Iota(4), 4);
  const auto second = Insert(Iota(4, 50), 4);
  const auto third = Insert(Iota(4, 90), 4);
  const std::vector<NodeVisits> visits = {{first[0], 1, 5000},
                                          {third[0], 2, 7000}};
  ASSERT_TRUE(trie_->RecordVisits(visits).ok());
  NodeIndex index;
  ASSERT_TRUE(index.Load(*trie_).ok());
  EXPECT_EQ(index.NextVictim("a"), second[0]);
  index.Remove(second[0]);
  EXPECT_EQ(index.NextVictim("a"), first[0]);
  index.Remove(first[0]);
  EXPECT_EQ(index.NextVictim("a"), third[0]);
}

TEST_F(NodeIndexTest, TouchOrdersEvictionWithoutCountingVisits) {
  const auto first = Insert(Iota(4), 4);
  const auto second = Insert(Iota(4, 50), 4);
  NodeIndex index;
  ASSERT_TRUE(index.Load(*trie_).ok());
  index.Touch(first, 3000);
  EXPECT_TRUE(index.TakeVisits().empty());
  EXPECT_EQ(index.NextVictim("a"), second[0]);
  index.Touch(second, 4000);
  EXPECT_EQ(index.NextVictim("a"), first[0]);
}

TEST_F(NodeIndexTest, ProbabilityIsTheShareOfLookupsThroughANode) {
  const auto shared = Insert(Iota(4), 4);
  const auto other = Insert(Iota(4, 50), 4);
  NodeIndex index({.retention = RetentionPolicy::kPlt});
  ASSERT_TRUE(index.Load(*trie_).ok());
  const std::vector<std::string> scope = {"a"};
  EXPECT_EQ(index.Probability(shared[0]), 0);  // no lookups yet
  for (int i = 0; i < 30; ++i)
    index.Visit(i % 3 == 2 ? other : shared, 1000 + i, scope);
  index.TakeVisits();  // applies the queued visits
  EXPECT_NEAR(index.Probability(shared[0]), 2.0 / 3, 0.02);
  EXPECT_NEAR(index.Probability(other[0]), 1.0 / 3, 0.02);
  // Misses count as lookups too.
  for (int i = 0; i < 30; ++i) index.Visit({}, 2000 + i, scope);
  index.TakeVisits();
  EXPECT_NEAR(index.Probability(shared[0]), 1.0 / 3, 0.02);
  EXPECT_EQ(index.Stats()["a"].lookups, 60u);
}

TEST_F(NodeIndexTest, AChunkStoredAgainComesBackWithItsHistory) {
  NodeIndex index({.retention = RetentionPolicy::kPlt});
  ASSERT_TRUE(index.Load(*trie_).ok());
  const auto keys = Insert(Iota(4), 4);
  auto record = trie_->ReadNode(keys[0]);
  ASSERT_TRUE(record.ok() && record->has_value());
  index.Add(keys[0], **record, 1);
  index.Remove(keys[0]);  // evicted: remembered as a ghost
  EXPECT_EQ(index.ghost_count(), 1u);
  index.Add(keys[0], **record, 2);
  EXPECT_EQ(index.ghost_count(), 0u);
  EXPECT_EQ(index.Stats()["a"].readmissions, 1u);
  EXPECT_EQ(index.Stats()["a"].chunks_inserted, 2u);
}

TEST_F(NodeIndexTest, PltEvictsWhatIsLeastLikelyToBeUsedAgain) {
  // Trailing partial chunks are never looked up again here (as in a
  // conversation, whose next turn fills the last chunk with other tokens);
  // whole chunks are. PLT learns it and evicts a newer partial chunk where
  // LRU evicts the oldest whole one.
  NodeIndex plt({.retention = RetentionPolicy::kPlt});
  NodeIndex lru({.retention = RetentionPolicy::kLru});
  ASSERT_TRUE(plt.Load(*trie_).ok());
  ASSERT_TRUE(lru.Load(*trie_).ok());
  const std::vector<std::string> scope = {"a"};
  auto add = [&](const std::vector<NodeKey>& keys, int64_t now) {
    for (const NodeKey& key : keys) {
      auto record = trie_->ReadNode(key);
      ASSERT_TRUE(record.ok() && record->has_value());
      plt.Add(key, **record, now);
      lru.Add(key, **record, now);
    }
  };
  auto look_up = [&](std::span<const NodeKey> keys, int64_t now) {
    plt.Visit(keys, now, scope);
    lru.Visit(keys, now, scope);
  };
  std::vector<NodeKey> whole, partial;
  for (int i = 0; i < 10; ++i) {
    whole.push_back(Insert(Iota(4, 1000 + 10 * i), 4)[0]);
    add({whole.back()}, i);
  }
  for (int i = 0; i < 10; ++i) look_up(std::span(whole).subspan(i, 1), 10 + i);
  for (int i = 0; i < 5; ++i) look_up(std::span(whole).subspan(i, 1), 20 + i);
  for (int i = 0; i < 50; ++i) {
    // A whole chunk and a trailing partial one of 2 tokens.
    const auto keys = Insert(Iota(6, 5000 + 10 * i), 4);
    ASSERT_EQ(keys.size(), 2u);
    add(keys, 100 + i);
    look_up(std::span(keys).first(1), 200 + i);
    partial.push_back(keys[1]);
  }
  plt.TakeVisits();
  lru.TakeVisits();
  const auto lru_victim = lru.NextVictim("a");
  const auto plt_victim = plt.NextVictim("a");
  ASSERT_TRUE(lru_victim.has_value() && plt_victim.has_value());
  EXPECT_TRUE(std::find(whole.begin(), whole.end(), *lru_victim) !=
              whole.end());
  EXPECT_TRUE(std::find(partial.begin(), partial.end(), *plt_victim) !=
              partial.end());
}

TEST_F(NodeIndexTest, AFreshChunkOutranksOlderOnesOnceTheEstimatorHasLearned) {
  // Chunks stored and never looked up teach the estimator that a chunk
  // seen once is rarely seen again. A leaf ranked early, before it knew,
  // must not outrank the chunk a Put stores now: the least valued leaf is
  // still the oldest of the class (a fresh Put's last chunk was evicted at
  // once when leaves kept the rank they were given).
  NodeIndex plt({.retention = RetentionPolicy::kPlt});
  ASSERT_TRUE(plt.Load(*trie_).ok());
  std::vector<NodeKey> keys;
  for (int i = 0; i < 200; ++i) {
    keys.push_back(Insert(Iota(4, 1000 + 10 * i), 4)[0]);
    auto record = trie_->ReadNode(keys.back());
    ASSERT_TRUE(record.ok() && record->has_value());
    plt.Add(keys.back(), **record, i);
  }
  for (int i = 0; i < 3; ++i) {
    auto victim = plt.NextVictim("a");
    ASSERT_TRUE(victim.has_value());
    EXPECT_EQ(*victim, keys[i]);
    plt.Remove(*victim);
  }
}

}  // namespace
}  // namespace seqkv
