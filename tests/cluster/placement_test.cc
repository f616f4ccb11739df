// Rendezvous ranking, placement keys, member records and cluster targets.
#include "cluster/placement.h"

#include <map>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cluster/member.h"
#include "cluster/member_watcher.h"
#include "cluster/rendezvous.h"
#include "gtest/gtest.h"

namespace seqkv::cluster {
namespace {

std::vector<Member> Members(int n, uint64_t capacity = 0) {
  std::vector<Member> members;
  for (int i = 0; i < n; ++i) {
    Member member;
    member.id = absl::StrCat("node-", i);
    member.address = absl::StrCat("127.0.0.1:", 5000 + i);
    member.capacity_bytes = capacity;
    members.push_back(member);
  }
  return members;
}

TEST(RendezvousTest, SpreadsKeysEvenly) {
  const std::vector<Member> members = Members(5);
  std::vector<int> owned(members.size());
  constexpr int kKeys = 100000;
  for (uint64_t key = 0; key < kKeys; ++key)
    ++owned[RankMembers(key * 0x9e3779b97f4a7c15ULL, members).front()];
  for (int count : owned) EXPECT_NEAR(count, kKeys / 5, kKeys / 5 * 0.03);
}

TEST(RendezvousTest, LeavingMovesOnlyTheLeaversKeys) {
  std::vector<Member> members = Members(4);
  std::vector<Member> without = members;
  without.erase(without.begin() + 2);
  int moved = 0;
  for (uint64_t key = 0; key < 20000; ++key) {
    const std::string before = members[RankMembers(key, members).front()].id;
    const std::string after = without[RankMembers(key, without).front()].id;
    if (before != "node-2") {
      EXPECT_EQ(before, after) << key;
    } else {
      ++moved;
      // The leaver's keys go to their second choice.
      EXPECT_EQ(after, members[RankMembers(key, members)[1]].id);
    }
  }
  EXPECT_NEAR(moved, 5000, 400);
}

TEST(RendezvousTest, WeighsByCapacity) {
  std::vector<Member> members = Members(2, 1000);
  members[1].capacity_bytes = 3000;
  int big = 0;
  for (uint64_t key = 0; key < 40000; ++key)
    big += RankMembers(key * 7919, members).front() == 1;
  EXPECT_NEAR(big, 30000, 600);
}

TEST(RendezvousTest, RankIsAPermutation) {
  const std::vector<Member> members = Members(7);
  std::vector<size_t> order = RankMembers(42, members);
  std::sort(order.begin(), order.end());
  std::vector<size_t> expected(7);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(order, expected);
  EXPECT_TRUE(RankMembers(42, {}).empty());
  // The best few are the head of the full ranking.
  for (uint64_t key = 0; key < 100; ++key) {
    const std::vector<size_t> all = RankMembers(key, members);
    EXPECT_EQ(RankMembers(key, members, 3),
              std::vector<size_t>(all.begin(), all.begin() + 3));
    EXPECT_EQ(RankMembers(key, members, 50), all);
  }
}

TEST(PlacementTest, KeyDependsOnlyOnTheHead) {
  PlacementOptions options;
  options.prefix_chunks = 2;
  std::vector<int32_t> a(40), b(40);
  std::iota(a.begin(), a.end(), 0);
  std::iota(b.begin(), b.end(), 0);
  b[30] = 999;  // differs after the first two 8-token chunks
  EXPECT_EQ(PlacementKey("m", "", a, 8, options),
            PlacementKey("m", "", b, 8, options));
  b[9] = 999;  // differs in the second chunk
  EXPECT_NE(PlacementKey("m", "", a, 8, options),
            PlacementKey("m", "", b, 8, options));
  // A prompt and its extension land together once the head is whole.
  EXPECT_EQ(PlacementKey("m", "", std::span(a).first(16), 8, options),
            PlacementKey("m", "", a, 8, options));
  // Partial chunks do not count.
  EXPECT_EQ(PlacementKey("m", "", std::span(a).first(7), 8, options),
            PlacementKey("m", "", std::span<const int32_t>(), 8, options));
  EXPECT_NE(PlacementKey("m", "", a, 8, options),
            PlacementKey("other", "", a, 8, options));
  EXPECT_NE(PlacementKey("m", "", a, 8, options),
            PlacementKey("m", "tenant", a, 8, options));
}

TEST(PlacementTest, ParsesConfig) {
  auto parsed = ParsePlacementConfig(R"({"placement_chunks": 3})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->prefix_chunks, 3u);
  EXPECT_EQ(ParsePlacementConfig("{}")->prefix_chunks,
            PlacementOptions().prefix_chunks);
  auto hot = ParsePlacementConfig(
      R"({"replicas_hot": 2, "hot_lookups": 5, "hot_window": 100})");
  ASSERT_TRUE(hot.ok()) << hot.status();
  EXPECT_EQ(hot->replicas_hot, 2u);
  EXPECT_EQ(hot->hot_lookups, 5u);
  EXPECT_EQ(hot->hot_window, 100u);
  for (const char* bad :
       {"", "[]", R"({"placement_chunks": 0})", R"({"placement_chunks": -1})",
        R"({"placement_chunks": 65})", R"({"placement_chunks": "2"})",
        R"({"replicas_hot": 0})", R"({"replicas_hot": 17})",
        R"({"hot_lookups": 0})", R"({"hot_window": -3})"})
    EXPECT_EQ(ParsePlacementConfig(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
}

TEST(MemberTest, RecordRoundTrips) {
  Member member = Members(1, 123).front();
  member.admin_address = "127.0.0.1:6000";
  member.state = MemberState::kDraining;
  member.bytes_stored = 77;
  member.hit_tokens = 5;
  member.started_unix_ms = 1234567;
  member.replicas_hot = 3;
  member.namespace_bytes = {{"acme", 123456}, {"globex", 0}};
  auto parsed = ParseMember(MemberToJson(member));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, member);
}

TEST(MemberTest, RejectsMalformedRecords) {
  for (const char* bad :
       {"", "null", "[]", R"({"address": "a:1"})", R"({"id": "x"})",
        R"({"id": "", "address": "a:1"})", R"({"id": "a/b", "address": "a:1"})",
        R"({"id": "x", "address": "a:1", "state": "gone"})",
        R"({"id": "x", "address": "a:1", "bytes_stored": -1})",
        R"({"id": "x", "address": "a:1", "replicas_hot": 17})",
        R"({"id": "x", "address": "a:1", "namespace_bytes": [1]})",
        R"({"id": "x", "address": "a:1", "namespace_bytes": {"a": -1}})",
        R"({"id": "x", "address": "a:1", "namespace_bytes": {"a": "1"}})",
        R"({"id": "x", "address": "a:1", "replicas_hot": 4294967298})",
        R"({"id": "x", "address": 5})"})
    EXPECT_EQ(ParseMember(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
}

// The same vectors are checked in the Python client's tests
// (tests/python/test_cluster.py): both clients must place alike.
TEST(PlacementTest, GoldenKeysAndOwners) {
  std::vector<int32_t> tokens(64);
  std::iota(tokens.begin(), tokens.end(), 1000);
  const PlacementOptions options;  // 2 chunks
  const uint64_t key =
      PlacementKey("golden-model", "tenant-a", tokens, 16, options);
  EXPECT_EQ(key, 0xfb4d3784b7ef9c38u);
  EXPECT_EQ(
      PlacementKey("golden-model", "",
                   std::span<const int32_t>(tokens).first(20), 16, options),
      0x2aa539607fa4a04du);
  std::vector<Member> members;
  for (const char* id : {"node-a", "node-b", "node-c", "node-d"})
    members.push_back(Member{.id = id, .address = "x:1"});
  EXPECT_EQ(RankMembers(key, members), (std::vector<size_t>{2, 0, 1, 3}));
  for (size_t i = 0; i < members.size(); ++i)
    members[i].capacity_bytes = uint64_t{i + 1} << 30;
  EXPECT_EQ(RankMembers(key, members), (std::vector<size_t>{2, 3, 1, 0}));
  for (Member& member : members) member.capacity_bytes = 0;
  std::string owners;
  for (int i = 0; i < 64; ++i) {
    std::vector<int32_t> prompt(48);
    std::iota(prompt.begin(), prompt.end(), i * 100);
    owners += std::to_string(
        RankMembers(PlacementKey("golden-model", "", prompt, 16, options),
                    members)
            .front());
  }
  EXPECT_EQ(owners,
            "0230320132210311201321130000110321212203223112121013122020100121");
}

TEST(MemberTest, ReplicasHotIsTheLargestAsked) {
  MemberView view;
  view.members = Members(3, 0);
  EXPECT_EQ(view.ReplicasHot(), 1u);
  view.placement.replicas_hot = 2;
  EXPECT_EQ(view.ReplicasHot(), 2u);
  view.members[1].replicas_hot = 3;
  EXPECT_EQ(view.ReplicasHot(), 3u);
  // A draining member's wish no longer counts.
  view.members[1].state = MemberState::kDraining;
  EXPECT_EQ(view.ReplicasHot(), 2u);
  // hot_lookups of every hot_window lookups.
  view.placement.hot_lookups = 1;
  view.placement.hot_window = 4;
  EXPECT_DOUBLE_EQ(view.placement.HotProbability(), 0.25);
}

TEST(MemberTest, ParsesClusterTargets) {
  auto target = ParseClusterTarget("etcd://127.0.0.1:2379,10.0.0.2:2379/prod");
  ASSERT_TRUE(target.ok()) << target.status();
  EXPECT_EQ(target->name, "prod");
  EXPECT_EQ(target->endpoints,
            (std::vector<std::string>{"127.0.0.1:2379", "10.0.0.2:2379"}));
  EXPECT_TRUE(IsClusterTarget("etcd://x:1/y"));
  EXPECT_FALSE(IsClusterTarget("127.0.0.1:50551"));
  for (const char* bad :
       {"etcd://127.0.0.1:2379", "etcd://127.0.0.1:2379/", "etcd://127.0.0.1/x",
        "etcd://:2379/x", "etcd://h:2379/bad name", "http://h:1/x",
        "etcd://h:99999/x"})
    EXPECT_EQ(ParseClusterTarget(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
}

}  // namespace
}  // namespace seqkv::cluster
