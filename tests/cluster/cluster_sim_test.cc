// The cluster model of `seqkv replay --simulate_nodes`.
#include "bench/replay/cluster_report.h"
#include "gtest/gtest.h"

namespace seqkv::bench {
namespace {

// Sessions of a few turns, each extending the last, all under one shared
// first block (a system prompt).
std::vector<TraceRequest> Sessions(int sessions, int turns) {
  std::vector<TraceRequest> requests;
  uint64_t next_id = 1;
  for (int s = 0; s < sessions; ++s) {
    std::vector<uint64_t> ids = {0};
    for (int t = 0; t < turns; ++t) {
      for (int b = 0; b < 3; ++b) ids.push_back(next_id++);
      TraceRequest request;
      request.block_tokens = 4;
      request.input_length = static_cast<uint32_t>(ids.size() * 4);
      request.hash_ids = ids;
      requests.push_back(request);
    }
  }
  return requests;
}

TEST(ClusterSimTest, OneNodeIsTheReferenceLru) {
  const auto requests = Sessions(50, 4);
  for (uint64_t capacity : {0, 100, 300}) {
    ClusterSimOptions options;
    options.nodes = 1;
    options.capacity_blocks = capacity;
    auto report = SimulateCluster(requests, options);
    ASSERT_TRUE(report.ok());
    EXPECT_EQ(report->hits.blocks_hit, report->single_node.blocks_hit);
  }
}

TEST(ClusterSimTest, NodesKeepTheHitRateAndShareTheBytes) {
  const auto requests = Sessions(600, 4);
  ClusterSimOptions options;
  options.nodes = 3;
  auto report = SimulateCluster(requests, options);
  ASSERT_TRUE(report.ok());
  // Only the shared first block misses once more per extra node.
  EXPECT_EQ(report->hits.blocks_hit + 2, report->single_node.blocks_hit);
  EXPECT_EQ(report->blocks_total, report->distinct_blocks + 2);
  for (uint64_t blocks : report->blocks_per_node)
    EXPECT_NEAR(double(blocks), report->blocks_total / 3.0,
                report->blocks_total / 3.0 * 0.15);
}

TEST(ClusterSimTest, ANodeDownCostsAboutItsShare) {
  const auto requests = Sessions(600, 4);
  ClusterSimOptions options;
  options.nodes = 3;
  auto healthy = SimulateCluster(requests, options);
  options.failed_nodes = {1};
  options.fail_from = 0;
  options.fail_until = requests.size();
  auto failed = SimulateCluster(requests, options);
  ASSERT_TRUE(healthy.ok() && failed.ok());
  // Down from the start: its prompts go to the others and hit there.
  EXPECT_EQ(failed->blocks_per_node[1], 0u);
  EXPECT_NEAR(failed->hits.block_rate(), healthy->hits.block_rate(), 0.01);
  EXPECT_FALSE(SimulateCluster(requests, {.nodes = 0}).ok());
}

}  // namespace
}  // namespace seqkv::bench
