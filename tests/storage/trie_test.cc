// The trie on a real RocksDB in a temporary directory.
#include "storage/trie.h"

#include <xxhash.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <span>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "storage/kv_store.h"
#include "storage/node_key.h"
#include "storage/store_repair.h"
#include "tests/scoped_temp_dir.h"
#include "tests/storage/chunk_chain.h"

namespace seqkv {
namespace {

std::vector<int32_t> Iota(int n, int start = 0) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

class TrieTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void TearDown() override {
    trie_.reset();
    store_.reset();
  }
  // Payloads of at least `payload_file_min_bytes` go to files.
  void Open(uint64_t payload_file_min_bytes = 0) {
    auto store =
        KvStore::Open({.path = dir_.string(),
                       .sync_commits = false,
                       .payload_file_min_bytes = payload_file_min_bytes});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    trie_ = std::make_unique<Trie>(store_.get());
  }

  // Inserts `tokens` in chunks of `chunk` below root, as a Put would.
  CommitResult Insert(const std::vector<int32_t>& tokens, uint32_t chunk) {
    std::vector<PendingNode> nodes = ChunkChain(root_, tokens, chunk);
    for (PendingNode& node : nodes) {
      node.record.set_bytes_logical(100);
      node.record.set_namespace_("ns");
      EXPECT_TRUE(trie_->StagePayload("payload", node.record).ok());
    }
    auto result = trie_->Commit(nodes, {.name_space = "ns"});
    EXPECT_TRUE(result.ok()) << result.status();
    return *result;
  }

  // Commits one chunk of tokens 0..3 under root ("t", `root_name`) in
  // namespace "ns", with `bytes` as its payload, coded against `against`
  // when that is given (a reference to it).
  PendingNode CommitChunk(const std::string& root_name,
                          const std::string& bytes,
                          const PendingNode* against) {
    std::vector<PendingNode> nodes =
        ChunkChain(RootKey("t", root_name), Iota(4), 4);
    NodeRecord& record = nodes[0].record;
    record.set_namespace_("ns");
    if (against != nullptr) {
      auto* reference = record.add_references();
      reference->set_node_key(against->key.Bytes());
      *reference->mutable_record() = against->record;
    }
    EXPECT_TRUE(trie_->StagePayload(bytes, record).ok());
    EXPECT_TRUE(trie_->Commit(nodes, {.name_space = "ns"}).ok());
    return nodes[0];
  }

  uint32_t Match(const std::vector<int32_t>& tokens, uint32_t chunk) {
    auto match = trie_->Match(root_, tokens, chunk);
    EXPECT_TRUE(match.ok()) << match.status();
    return match->matched_tokens;
  }

  testing::ScopedTempDir temp_dir_;
  const std::filesystem::path dir_ = temp_dir_.path();
  std::unique_ptr<KvStore> store_;
  std::unique_ptr<Trie> trie_;
  NodeKey root_ = RootKey("tenant", "model|layout");
};

TEST(NodeKeyTest, ChainedHashCommitsToEverythingBefore) {
  const NodeKey root_a = RootKey("a", "m");
  EXPECT_EQ(root_a, RootKey("a", "m"));
  EXPECT_NE(root_a, RootKey("b", "m"));
  EXPECT_NE(root_a, RootKey("a", "n"));
  // Field boundaries count: ("ab","c") is not ("a","bc").
  EXPECT_NE(RootKey("ab", "c"), RootKey("a", "bc"));
  const std::vector<int32_t> chunk = {1, 2, 3};
  EXPECT_EQ(ChildKey(root_a, chunk), ChildKey(root_a, chunk));
  // The definition stored keys depend on: XXH3-128 of the parent's bytes
  // followed by the tokens.
  std::string input = root_a.Bytes();
  input.append(reinterpret_cast<const char*>(chunk.data()),
               chunk.size() * sizeof(int32_t));
  const XXH128_hash_t hash = XXH3_128bits(input.data(), input.size());
  EXPECT_EQ(ChildKey(root_a, chunk), (NodeKey{hash.high64, hash.low64}));
  EXPECT_NE(ChildKey(root_a, chunk), ChildKey(RootKey("b", "m"), chunk));
  EXPECT_NE(ChildKey(root_a, chunk),
            ChildKey(root_a, std::vector<int32_t>{1, 2}));
  const NodeKey key = ChildKey(root_a, chunk);
  EXPECT_EQ(NodeKey::FromBytes(key.Bytes()), key);
  EXPECT_EQ(key.Bytes().size(), NodeKey::kSize);
}

TEST_F(TrieTest, FullAndPartialChunksMatchTokenGranular) {
  const auto seq = Iota(10);  // chunks of 4: [0..3] [4..7] [8,9]
  EXPECT_EQ(Insert(seq, 4).added, 3u);
  EXPECT_EQ(Match(seq, 4), 10u);
  EXPECT_EQ(Match(Iota(12), 4), 10u);  // longer query: the stored part
  EXPECT_EQ(Match(Iota(6), 4), 6u);    // ends inside the second chunk
  EXPECT_EQ(Match(Iota(3), 4), 3u);    // shorter than one chunk
  auto diverging = Iota(10);
  diverging[5] = 99;
  EXPECT_EQ(Match(diverging, 4), 5u);
  EXPECT_EQ(Match({7, 8, 9}, 4), 0u);
}

TEST_F(TrieTest, SharedPrefixesAreStoredOnce) {
  EXPECT_EQ(Insert(Iota(8), 4).added, 2u);
  auto other = Iota(8);
  other[6] = 50;
  const CommitResult result = Insert(other, 4);
  EXPECT_EQ(result.added, 1u);
  EXPECT_EQ(result.raced, 1u);  // the first chunk was there already
  EXPECT_EQ(Match(other, 4), 8u);
  EXPECT_EQ(Match(Iota(8), 4), 8u);
}

TEST_F(TrieTest, UncommittedPayloadsAreInvisibleAndDiscarded) {
  PendingNode node;
  node.key = ChildKey(root_, Iota(4));
  node.record.set_parent_key(root_.Bytes());
  node.record.mutable_tokens()->Add(0);
  node.record.set_payload_key("staged");
  ASSERT_TRUE(trie_->StagePayload("bytes", node.record).ok());
  EXPECT_EQ(Match(Iota(4), 4), 0u);
  trie_->DiscardPayloads(std::span(&node, 1));
  auto value = store_->Get(Column::kPayloads, "staged");
  ASSERT_TRUE(value.ok());
  EXPECT_FALSE(value->has_value());
}

TEST_F(TrieTest, PayloadsAreCheckedAgainstTheirChecksum) {
  Insert(Iota(4), 4);
  auto match = trie_->Match(root_, Iota(4), 4);
  ASSERT_TRUE(match.ok());
  ASSERT_EQ(match->nodes.size(), 1u);
  const NodeRecord record = match->nodes[0].record;
  ASSERT_TRUE(record.has_payload_checksum());
  auto payload = trie_->ReadPayload(record);
  ASSERT_TRUE(payload.ok()) << payload.status();
  EXPECT_EQ(payload->view(), "payload");
  // Bytes that changed under the node (as a bad disk would change them)
  // fail the check; RocksDB's own checksums are not read for them.
  ASSERT_TRUE(
      store_->Put(Column::kPayloads, record.payload_key(), "pAyload").ok());
  EXPECT_EQ(trie_->ReadPayload(record).status().code(),
            absl::StatusCode::kDataLoss);
  // A record written before payload checksums existed reads as before.
  NodeRecord legacy = record;
  legacy.clear_payload_checksum();
  payload = trie_->ReadPayload(legacy);
  ASSERT_TRUE(payload.ok()) << payload.status();
  EXPECT_EQ(payload->view(), "pAyload");
}

TEST_F(TrieTest, ACommitOverItsQuotaWritesNothing) {
  Insert(Iota(4), 4);  // 7 bytes stored in "ns"
  std::vector<PendingNode> nodes = ChunkChain(root_, Iota(8), 4);
  nodes.erase(nodes.begin());
  ASSERT_TRUE(trie_->StagePayload("payload", nodes[0].record).ok());
  auto result = trie_->Commit(
      nodes, {.name_space = "ns", .quota_bytes = 13, .quota_note = " (why)"});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(result.status().message().find("'ns' is over its quota"),
            std::string::npos)
      << result.status();
  // The refusal ends with where the quota comes from.
  EXPECT_TRUE(absl::EndsWith(result.status().message(), " > 13 (why)"))
      << result.status();
  auto node = trie_->ReadNode(nodes[0].key);
  ASSERT_TRUE(node.ok());
  EXPECT_FALSE(node->has_value());
  EXPECT_EQ(trie_->usage().Get("ns").bytes_stored, 7);
  // At the quota exactly, it goes in.
  EXPECT_TRUE(
      trie_->Commit(nodes, {.name_space = "ns", .quota_bytes = 14}).ok());
}

TEST_F(TrieTest, UsageFollowsCommitsAndRemovalsAcrossReopen) {
  Insert(Iota(12), 4);
  EXPECT_EQ(trie_->usage().Get("ns").chunks_stored, 3);
  EXPECT_EQ(trie_->usage().Get("ns").bytes_stored, 21);
  EXPECT_EQ(trie_->usage().Get("ns").bytes_logical, 300);
  NodeRemovals removals = trie_->StartRemovals();
  ASSERT_TRUE(trie_->RemoveSubtree(root_, Iota(8), 4, removals).ok());
  // [4..7] and the chunk below it.
  EXPECT_EQ(removals.usage_deltas().at("ns").chunks_stored, -2);
  EXPECT_EQ(trie_->usage().Get("ns").chunks_stored, 3);  // not committed
  ASSERT_TRUE(trie_->CommitRemovals(removals).ok());
  EXPECT_TRUE(removals.empty());
  trie_.reset();
  store_.reset();
  Open();
  ASSERT_TRUE(trie_->Load().ok());
  const Usage usage = trie_->usage().Get("ns");
  EXPECT_EQ(usage.chunks_stored, 1);
  EXPECT_EQ(usage.bytes_stored, 7);
  EXPECT_EQ(usage.bytes_logical, 100);
  EXPECT_EQ(trie_->usage().Get("elsewhere").chunks_stored, 0);
}

TEST_F(TrieTest, VisitsAreCountedAndEverythingSurvivesReopen) {
  Insert(Iota(8), 4);
  auto match = trie_->Match(root_, Iota(8), 4);
  ASSERT_TRUE(match.ok());
  for (int64_t now : {1000, 2000}) {
    std::vector<NodeVisits> visits;
    for (const TrieNode& node : match->nodes)
      visits.push_back({node.key, 1, now});
    ASSERT_TRUE(trie_->RecordVisits(visits).ok());
  }
  trie_.reset();
  store_.reset();
  Open();
  EXPECT_EQ(Match(Iota(8), 4), 8u);
  uint64_t visits = 0;
  int64_t last = 0;
  ASSERT_TRUE(trie_->ReadVisits(ChildKey(root_, Iota(4)), visits, last).ok());
  EXPECT_EQ(visits, 2u);
  EXPECT_EQ(last, 2000);
}

TEST_F(TrieTest, RemoveSubtree) {
  Insert(Iota(12), 4);
  auto other = Iota(12);
  other[9] = 77;
  Insert(other, 4);
  NodeRemovals removals = trie_->StartRemovals();
  auto removal = trie_->RemoveSubtree(root_, Iota(8), 4, removals);
  ASSERT_TRUE(removal.ok()) << removal.status();
  EXPECT_EQ(removal->chunks, 3u);      // [4..7] and both third chunks
  EXPECT_EQ(Match(Iota(12), 4), 12u);  // nothing changes before the commit
  ASSERT_TRUE(trie_->CommitRemovals(removals).ok());
  EXPECT_EQ(Match(Iota(12), 4), 4u);
  // A prefix that ends inside a chunk names no subtree.
  NodeRemovals none = trie_->StartRemovals();
  removal = trie_->RemoveSubtree(root_, Iota(2), 4, none);
  ASSERT_TRUE(removal.ok());
  EXPECT_EQ(removal->chunks, 0u);
}

class TrieFilesTest : public TrieTest {
 protected:
  void SetUp() override {
    TrieTest::SetUp();
    trie_.reset();
    store_.reset();
    Open(/*payload_file_min_bytes=*/4);
  }
  // The files under the payload directory.
  std::vector<std::filesystem::path> Files() const {
    std::vector<std::filesystem::path> files;
    for (const auto& entry :
         std::filesystem::recursive_directory_iterator(dir_ / "payloads"))
      if (entry.is_regular_file()) files.push_back(entry.path());
    return files;
  }
  NodeRecord RecordOf(const std::vector<int32_t>& tokens) {
    auto match = trie_->Match(root_, tokens, 4);
    EXPECT_TRUE(match.ok());
    EXPECT_FALSE(match->nodes.empty());
    return match->nodes.back().record;
  }
};

TEST_F(TrieFilesTest, LargePayloadsAreFilesCheckedAndRemovedWithTheirNodes) {
  Insert(Iota(8), 4);
  ASSERT_EQ(Files().size(), 2u);
  const NodeRecord record = RecordOf(Iota(8));
  EXPECT_TRUE(record.payload_in_file());
  auto value = store_->Get(Column::kPayloads, record.payload_key());
  ASSERT_TRUE(value.ok());
  EXPECT_FALSE(value->has_value());  // not in RocksDB as well
  auto payload = trie_->ReadPayload(record);
  ASSERT_TRUE(payload.ok()) << payload.status();
  EXPECT_EQ(payload->view(), "payload");
  // Smaller payloads stay in RocksDB.
  PendingNode small;
  small.record.set_payload_key("small");
  ASSERT_TRUE(trie_->StagePayload("abc", small.record).ok());
  EXPECT_FALSE(small.record.payload_in_file());
  EXPECT_EQ(Files().size(), 2u);

  NodeRemovals removals = trie_->StartRemovals();
  auto removal = trie_->RemoveSubtree(root_, Iota(4), 4, removals);
  ASSERT_TRUE(removal.ok()) << removal.status();
  EXPECT_EQ(removal->chunks, 2u);
  EXPECT_EQ(Files().size(), 2u);  // files go only once the batch commits
  ASSERT_TRUE(trie_->CommitRemovals(removals).ok());
  EXPECT_TRUE(Files().empty());
}

TEST_F(TrieFilesTest, DamagedOrMissingPayloadFilesAreDataLoss) {
  Insert(Iota(4), 4);
  const NodeRecord record = RecordOf(Iota(4));
  ASSERT_EQ(Files().size(), 1u);
  const std::filesystem::path file = Files()[0];
  std::filesystem::resize_file(file, 3);  // a torn write
  EXPECT_EQ(trie_->ReadPayload(record).status().code(),
            absl::StatusCode::kDataLoss);
  std::filesystem::remove(file);
  auto missing = trie_->ReadPayload(record);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(missing.status().message().find("missing"), std::string::npos);
}

TEST_F(TrieFilesTest, ReadPayloadIntoChecksFilesAndRocksDbValues) {
  Insert(Iota(4), 4);
  const NodeRecord in_file = RecordOf(Iota(4));
  ASSERT_TRUE(in_file.payload_in_file());
  PendingNode small;
  small.record.set_payload_key("small");
  ASSERT_TRUE(trie_->StagePayload("abc", small.record).ok());
  ASSERT_FALSE(small.record.payload_in_file());
  for (const NodeRecord& record : {in_file, small.record}) {
    const std::string want(trie_->ReadPayload(record)->view());
    std::string head(1, '.'), tail(want.size() - 1, '.');
    ASSERT_TRUE(
        trie_->ReadPayloadInto(record, std::vector<std::span<char>>{head, tail})
            .ok());
    EXPECT_EQ(head + tail, want);
    std::string wrong_size(want.size() + 1, '.');
    EXPECT_EQ(
        trie_->ReadPayloadInto(record, std::vector<std::span<char>>{wrong_size})
            .code(),
        absl::StatusCode::kDataLoss);
  }
  // Same size, other bytes: only the checksum can tell.
  std::string all(trie_->ReadPayload(in_file)->view().size(), '.');
  ASSERT_EQ(Files().size(), 1u);
  {
    std::fstream file(Files()[0], std::ios::in | std::ios::out);
    file.seekp(0);
    file.put('#');
  }
  const absl::Status damaged =
      trie_->ReadPayloadInto(in_file, std::vector<std::span<char>>{all});
  EXPECT_EQ(damaged.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(damaged.message().find("checksum"), std::string::npos) << damaged;
  std::filesystem::remove(Files()[0]);
  const absl::Status missing =
      trie_->ReadPayloadInto(in_file, std::vector<std::span<char>>{all});
  EXPECT_EQ(missing.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(missing.message().find("missing"), std::string::npos) << missing;
}

TEST_F(TrieFilesTest, TheSweepDeletesOnlyFilesNoNodeNames) {
  Insert(Iota(8), 4);
  // A Put that crashed after writing its payload, before its commit.
  PendingNode staged;
  staged.key = ChildKey(root_, Iota(4, 100));
  staged.record.set_payload_key(staged.key.Bytes() + "put-id-1");
  ASSERT_TRUE(trie_->StagePayload("orphaned", staged.record).ok());
  // A file whose node is gone, and one with a key too short to name one.
  const NodeKey gone = ChildKey(root_, Iota(4, 200));
  ASSERT_TRUE(store_->payload_files().Write(gone.Bytes() + "x", "bytes").ok());
  ASSERT_TRUE(store_->payload_files().Write("short", "bytes").ok());
  ASSERT_EQ(Files().size(), 5u);
  trie_.reset();
  store_.reset();
  Open(4);
  auto swept = trie_->SweepOrphanPayloadFiles();
  ASSERT_TRUE(swept.ok()) << swept.status();
  EXPECT_EQ(*swept, 3u);
  EXPECT_EQ(Files().size(), 2u);
  auto payload = trie_->ReadPayload(RecordOf(Iota(8)));
  ASSERT_TRUE(payload.ok()) << payload.status();
  EXPECT_EQ(payload->view(), "payload");
}

TEST_F(TrieTest, TheSweepDeletesStagedPayloadsNoNodeCommitted) {
  Insert(Iota(8), 4);
  // A Put that a crash cut off after staging its payload in RocksDB.
  PendingNode staged;
  staged.key = ChildKey(root_, Iota(4, 100));
  staged.record.set_payload_key(staged.key.Bytes() + "put-id-1");
  ASSERT_TRUE(trie_->StagePayload("orphaned", staged.record).ok());
  ASSERT_FALSE(staged.record.payload_in_file());
  trie_.reset();
  store_.reset();
  Open();
  auto swept = trie_->SweepStagedPayloads();
  ASSERT_TRUE(swept.ok()) << swept.status();
  EXPECT_EQ(*swept, 1u);
  auto value = store_->Get(Column::kPayloads, staged.record.payload_key());
  ASSERT_TRUE(value.ok());
  EXPECT_FALSE(value->has_value());
  // Committed payloads stay, and their marks went with their commit.
  auto match = trie_->Match(root_, Iota(8), 4);
  ASSERT_TRUE(match.ok());
  ASSERT_EQ(match->nodes.size(), 2u);
  for (const TrieNode& node : match->nodes) {
    auto payload = trie_->ReadPayload(node.record);
    ASSERT_TRUE(payload.ok()) << payload.status();
    EXPECT_EQ(payload->view(), "payload");
  }
  swept = trie_->SweepStagedPayloads();
  ASSERT_TRUE(swept.ok());
  EXPECT_EQ(*swept, 0u);
}

TEST_F(TrieTest, CorruptNodeRecordIsDataLoss) {
  const NodeKey key = ChildKey(root_, Iota(4));
  ASSERT_TRUE(
      store_->Put(Column::kNodes, key.Bytes(), "\xff\xff garbage").ok());
  auto match = trie_->Match(root_, Iota(4), 4);
  EXPECT_EQ(match.status().code(), absl::StatusCode::kDataLoss);
}

// A chunk coded against another keeps that one's payload alive: removing
// the source detaches its payload (kept, still charged), and removing the
// last chunk that references it deletes it and gives its bytes back.
TEST_F(TrieTest, ReferencedPayloadsOutliveTheirNodes) {
  trie_.reset();
  store_.reset();
  Open(/*payload_file_min_bytes=*/8);  // the source's payload is a file
  std::vector<PendingNode> source = ChunkChain(root_, Iota(4), 4);
  source[0].record.set_bytes_logical(100);
  source[0].record.set_namespace_("ns");
  ASSERT_TRUE(trie_->StagePayload("source bytes", source[0].record).ok());
  ASSERT_TRUE(trie_->Commit(source, {.name_space = "ns"}).ok());
  const NodeRecord& stored = source[0].record;
  ASSERT_TRUE(stored.payload_in_file());

  // The dependent: same tokens after another prefix.
  const NodeKey other_root = RootKey("tenant", "other");
  std::vector<PendingNode> dependent = ChunkChain(other_root, Iota(4), 4);
  NodeRecord& record = dependent[0].record;
  record.set_bytes_logical(100);
  record.set_namespace_("ns");
  auto* reference = record.add_references();
  reference->set_node_key(source[0].key.Bytes());
  *reference->mutable_record() = stored;
  ASSERT_TRUE(trie_->StagePayload("dep", record).ok());
  ASSERT_TRUE(trie_->Commit(dependent, {.name_space = "ns"}).ok());
  auto referenced = trie_->IsReferenced(stored.payload_key());
  ASSERT_TRUE(referenced.ok());
  EXPECT_TRUE(*referenced);
  const int64_t both = trie_->usage().Get("ns").bytes_stored;
  EXPECT_EQ(both, static_cast<int64_t>(stored.bytes_stored() + 3));

  // The source goes; its payload stays for the dependent, still charged.
  NodeRemovals removals = trie_->StartRemovals();
  ASSERT_TRUE(trie_->RemoveSubtree(root_, {}, 4, removals).ok());
  ASSERT_TRUE(trie_->CommitRemovals(removals).ok());
  EXPECT_FALSE(trie_->ReadNode(source[0].key)->has_value());
  EXPECT_EQ(trie_->usage().Get("ns").bytes_stored, both);
  EXPECT_EQ(trie_->usage().Get("ns").chunks_stored, 1);
  auto kept = trie_->ReadPayload(stored);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->view(), "source bytes");
  // A restart's sweep keeps it too.
  auto swept = trie_->SweepOrphanPayloadFiles();
  ASSERT_TRUE(swept.ok());
  EXPECT_EQ(*swept, 0u);

  // A new chunk may still reference the detached payload.
  std::vector<PendingNode> second =
      ChunkChain(RootKey("t", "third"), Iota(4), 4);
  second[0].record.set_namespace_("ns");
  *second[0].record.add_references() = *reference;
  ASSERT_TRUE(trie_->StagePayload("d2", second[0].record).ok());
  ASSERT_TRUE(trie_->Commit(second, {.name_space = "ns"}).ok());

  // The last referrer goes: the payload with it, and its bytes.
  for (const NodeKey& root : {other_root, RootKey("t", "third")}) {
    NodeRemovals last = trie_->StartRemovals();
    ASSERT_TRUE(trie_->RemoveSubtree(root, {}, 4, last).ok());
    ASSERT_TRUE(trie_->CommitRemovals(last).ok());
  }
  EXPECT_EQ(trie_->usage().Get("ns").bytes_stored, 0);
  EXPECT_FALSE(trie_->ReadPayload(stored).ok());
  EXPECT_FALSE(*trie_->IsReferenced(stored.payload_key()));

  // A chunk coded against a payload that is gone cannot commit.
  std::vector<PendingNode> late = ChunkChain(RootKey("t", "late"), Iota(4), 4);
  late[0].record.set_namespace_("ns");
  *late[0].record.add_references() = *reference;
  ASSERT_TRUE(trie_->StagePayload("d3", late[0].record).ok());
  auto refused = trie_->Commit(late, {.name_space = "ns"});
  EXPECT_TRUE(absl::IsAborted(refused.status())) << refused.status();
  trie_->DiscardPayloads(late);
}

// A chain: B was coded against A, C against B. Removing A, then B, keeps
// both payloads (C decodes through B, B through A) until C goes.
TEST_F(TrieTest, DetachedPayloadsHoldWhatTheyWereCodedAgainst) {
  const PendingNode a = CommitChunk("a", "aaaa", nullptr);
  const PendingNode b = CommitChunk("b", "bbbbbb", &a);
  const PendingNode c = CommitChunk("c", "cc", &b);
  auto remove = [&](const std::string& root_name) {
    NodeRemovals removals = trie_->StartRemovals();
    ASSERT_TRUE(
        trie_->RemoveSubtree(RootKey("t", root_name), {}, 4, removals).ok());
    ASSERT_TRUE(trie_->CommitRemovals(removals).ok());
  };
  remove("a");
  remove("b");
  EXPECT_EQ(trie_->usage().Get("ns").chunks_stored, 1);
  EXPECT_EQ(trie_->usage().Get("ns").bytes_stored, 4 + 6 + 2);
  EXPECT_TRUE(trie_->ReadPayload(a.record).ok());
  EXPECT_TRUE(trie_->ReadPayload(b.record).ok());
  remove("c");
  EXPECT_EQ(trie_->usage().Get("ns").bytes_stored, 0);
  EXPECT_FALSE(trie_->ReadPayload(a.record).ok());
  EXPECT_FALSE(trie_->ReadPayload(b.record).ok());
  EXPECT_FALSE(*trie_->IsReferenced(a.record.payload_key()));
  EXPECT_FALSE(*trie_->IsReferenced(b.record.payload_key()));
}

// The offline repair follows references: it recounts them (here a lost
// reference record), keeps a detached payload while chunks are coded
// against it, and drops those chunks once that payload is damaged, and the
// payload with them.
TEST_F(TrieTest, RepairFollowsReferences) {
  trie_.reset();
  store_.reset();
  Open(/*payload_file_min_bytes=*/8);
  const PendingNode source = CommitChunk("a", "source bytes", nullptr);
  ASSERT_TRUE(source.record.payload_in_file());
  const PendingNode b = CommitChunk("b", "bb", &source);
  const PendingNode c = CommitChunk("c", "cc", &source);
  NodeRemovals removals = trie_->StartRemovals();
  ASSERT_TRUE(trie_->RemoveSubtree(RootKey("t", "a"), {}, 4, removals).ok());
  ASSERT_TRUE(trie_->CommitRemovals(removals).ok());
  const int64_t charged = 12 + 2 + 2;
  ASSERT_EQ(trie_->usage().Get("ns").bytes_stored, charged);
  WriteBatch lose(*store_);
  lose.Delete(Column::kMeta, "payload_refs/" + source.record.payload_key());
  ASSERT_TRUE(store_->Write(lose, /*durable=*/true).ok());
  // The one payload file: the referrers' payloads are too small for files.
  std::filesystem::path source_file;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(
           store_->payload_files().dir()))
    if (entry.is_regular_file()) source_file = entry.path();
  ASSERT_FALSE(source_file.empty());
  trie_.reset();
  store_.reset();

  auto report = RepairStore({.path = dir_.string(), .sync_commits = false});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->nodes_removed, 0u);
  EXPECT_EQ(report->reference_records_rewritten, 1u);
  EXPECT_EQ(report->payloads_removed, 0u);
  Open(8);
  ASSERT_TRUE(trie_->Load().ok());
  EXPECT_TRUE(*trie_->IsReferenced(source.record.payload_key()));
  EXPECT_TRUE(trie_->ReadPayload(source.record).ok());
  EXPECT_EQ(trie_->usage().Get("ns").bytes_stored, charged);
  // Both referrers go as before: the payload with the last.
  removals = trie_->StartRemovals();
  ASSERT_TRUE(trie_->RemoveSubtree(RootKey("t", "b"), {}, 4, removals).ok());
  ASSERT_TRUE(trie_->CommitRemovals(removals).ok());
  EXPECT_TRUE(trie_->ReadPayload(source.record).ok());
  const PendingNode d = CommitChunk("d", "dd", &source);
  trie_.reset();
  store_.reset();

  // The detached payload is damaged: its referrers cannot decode.
  {
    std::ofstream damage(source_file, std::ios::binary | std::ios::trunc);
    damage << "damaged bytes";
  }
  report = RepairStore({.path = dir_.string(), .sync_commits = false});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->nodes_removed, 2u);  // c and d, and with d the payload
  Open(8);
  ASSERT_TRUE(trie_->Load().ok());
  EXPECT_FALSE(trie_->ReadNode(c.key)->has_value());
  EXPECT_FALSE(trie_->ReadNode(d.key)->has_value());
  EXPECT_FALSE(*trie_->IsReferenced(source.record.payload_key()));
  EXPECT_FALSE(std::filesystem::exists(source_file));
  EXPECT_EQ(trie_->usage().Get("ns").bytes_stored, 0);
  EXPECT_EQ(trie_->usage().Get("ns").chunks_stored, 0);
}

// A chunk the repair removes (its parent was lost) keeps its payload for
// the chunks coded against it, even when the payload's reference record
// was lost too: the repair counts references before it removes anything.
TEST_F(TrieTest, RepairKeepsThePayloadOfARemovedSourceForItsReferrers) {
  std::vector<PendingNode> chain = ChunkChain(RootKey("t", "a"), Iota(8), 4);
  for (PendingNode& node : chain) {
    node.record.set_namespace_("ns");
    ASSERT_TRUE(trie_->StagePayload("chain payload", node.record).ok());
  }
  ASSERT_TRUE(trie_->Commit(chain, {.name_space = "ns"}).ok());
  const PendingNode& source = chain[1];
  std::vector<PendingNode> referrer =
      ChunkChain(RootKey("t", "b"), Iota(4, 4), 4);
  referrer[0].record.set_namespace_("ns");
  auto* reference = referrer[0].record.add_references();
  reference->set_node_key(source.key.Bytes());
  *reference->mutable_record() = source.record;
  ASSERT_TRUE(trie_->StagePayload("referrer", referrer[0].record).ok());
  ASSERT_TRUE(trie_->Commit(referrer, {.name_space = "ns"}).ok());
  WriteBatch lose(*store_);
  lose.Delete(Column::kNodes, chain[0].key.Bytes());
  lose.Delete(Column::kMeta, "payload_refs/" + source.record.payload_key());
  ASSERT_TRUE(store_->Write(lose, /*durable=*/true).ok());
  trie_.reset();
  store_.reset();

  auto report = RepairStore({.path = dir_.string(), .sync_commits = false});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->nodes_removed, 1u);  // the source, whose parent is gone
  Open();
  ASSERT_TRUE(trie_->Load().ok());
  EXPECT_FALSE(trie_->ReadNode(source.key)->has_value());
  EXPECT_TRUE(trie_->ReadNode(referrer[0].key)->has_value());
  EXPECT_TRUE(trie_->ReadPayload(source.record).ok());
  EXPECT_TRUE(*trie_->IsReferenced(source.record.payload_key()));
  EXPECT_EQ(trie_->usage().Get("ns").chunks_stored, 1);
  EXPECT_EQ(trie_->usage().Get("ns").bytes_stored,
            static_cast<int64_t>(source.record.bytes_stored() +
                                 referrer[0].record.bytes_stored()));
}

}  // namespace
}  // namespace seqkv
