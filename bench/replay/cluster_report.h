// What `seqkv replay` reports of a cluster: each member's stored bytes after
// a replay through an etcd:// target, and `--simulate_nodes N`, a model of
// the trace through N nodes placed as the cluster client places prompts
// (cluster/placement.h), each an LRU cache of blocks.
#ifndef SEQKV_BENCH_REPLAY_CLUSTER_REPORT_H_
#define SEQKV_BENCH_REPLAY_CLUSTER_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/replay/trace.h"
#include "nlohmann/json.hpp"

namespace seqkv::bench {

struct NodeUsage {
  std::string id;
  std::string address;
  int64_t bytes_stored = -1;  // -1: its admin endpoint did not answer
  int64_t chunks_stored = -1;
};

// The members of the cluster `target` (etcd://...) and their stored bytes
// from each member's admin /v1/stats.
absl::StatusOr<std::vector<NodeUsage>> ReadClusterUsage(
    const std::string& target);

// {"nodes": [...], "bytes_mean", "bytes_max_over_mean",
// "bytes_min_over_mean"}.
nlohmann::json ClusterUsageJson(const std::vector<NodeUsage>& nodes);
std::string ClusterUsageText(const std::vector<NodeUsage>& nodes);

struct ClusterSimOptions {
  uint32_t nodes = 3;
  // Blocks all nodes hold together (0: unlimited), split evenly.
  uint64_t capacity_blocks = 0;
  uint32_t placement_chunks = 2;
  // Nodes lost (0-based ids) for requests [fail_from, fail_until): their
  // prompts miss and their Puts go to the next owner, as the client does.
  std::vector<uint32_t> failed_nodes;
  size_t fail_from = 0;
  size_t fail_until = 0;
};

struct ClusterSimReport {
  HitCounts hits;
  HitCounts single_node;  // one LRU cache of the same total capacity
  std::vector<uint64_t> blocks_per_node;  // stored at the end
  uint64_t blocks_total = 0;  // sum over nodes: shared heads count per node
  uint64_t distinct_blocks = 0;
};

// Replays `requests` through the model; INVALID_ARGUMENT for 0 nodes.
absl::StatusOr<ClusterSimReport> SimulateCluster(
    const std::vector<TraceRequest>& requests,
    const ClusterSimOptions& options);

nlohmann::json ClusterSimJson(const ClusterSimOptions& options,
                              const ClusterSimReport& report);
std::string ClusterSimText(const ClusterSimOptions& options,
                           const ClusterSimReport& report);

}  // namespace seqkv::bench

#endif  // SEQKV_BENCH_REPLAY_CLUSTER_REPORT_H_
