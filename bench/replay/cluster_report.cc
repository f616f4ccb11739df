#include "bench/replay/cluster_report.h"

#include <httplib.h>

#include <algorithm>
#include <list>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cluster/etcd_gateway.h"
#include "cluster/member.h"
#include "cluster/rendezvous.h"

namespace seqkv::bench {
namespace {

// A cache of blocks with LRU eviction (as SimulateLruCache, one per node).
class LruBlocks {
 public:
  explicit LruBlocks(uint64_t capacity) : capacity_(capacity) {}
  bool Contains(uint64_t id) const { return where_.contains(id); }
  void Touch(uint64_t id) {
    auto it = where_.find(id);
    if (it != where_.end()) {
      order_.splice(order_.begin(), order_, it->second);
      return;
    }
    order_.push_front(id);
    where_[id] = order_.begin();
    if (capacity_ > 0 && order_.size() > capacity_) {
      where_.erase(order_.back());
      order_.pop_back();
    }
  }
  uint64_t size() const { return order_.size(); }

 private:
  uint64_t capacity_;
  std::list<uint64_t> order_;
  absl::flat_hash_map<uint64_t, std::list<uint64_t>::iterator> where_;
};

double Ratio(double a, double b) { return b == 0 ? 0 : a / b; }

}  // namespace

absl::StatusOr<std::vector<NodeUsage>> ReadClusterUsage(
    const std::string& target) {
  auto parsed = cluster::ParseClusterTarget(target);
  if (!parsed.ok()) return parsed.status();
  cluster::EtcdGateway etcd(parsed->endpoints, absl::Seconds(5));
  auto range = etcd.RangePrefix(cluster::MembersPrefix(parsed->name));
  if (!range.ok()) return range.status();
  std::vector<NodeUsage> nodes;
  for (const cluster::EtcdKeyValue& kv : range->kvs) {
    auto member = cluster::ParseMember(kv.value);
    if (!member.ok()) continue;
    NodeUsage node{member->id, member->address};
    const size_t colon = member->admin_address.rfind(':');
    int port = 0;
    if (colon != std::string::npos &&
        absl::SimpleAtoi(member->admin_address.substr(colon + 1), &port)) {
      httplib::Client http(member->admin_address.substr(0, colon), port);
      http.set_connection_timeout(5);
      http.set_read_timeout(30);
      if (auto response = http.Get("/v1/stats");
          response && response->status == 200) {
        const auto stats =
            nlohmann::json::parse(response->body, nullptr, false);
        if (!stats.is_discarded() && stats.contains("global")) {
          node.bytes_stored =
              stats["global"].value("bytes_stored", int64_t{-1});
          node.chunks_stored =
              stats["global"].value("chunks_stored", int64_t{-1});
        }
      }
    }
    nodes.push_back(std::move(node));
  }
  return nodes;
}

nlohmann::json ClusterUsageJson(const std::vector<NodeUsage>& nodes) {
  nlohmann::json list = nlohmann::json::array();
  double sum = 0, low = 0, high = 0;
  for (const NodeUsage& node : nodes) {
    list.push_back({{"id", node.id},
                    {"address", node.address},
                    {"bytes_stored", node.bytes_stored},
                    {"chunks_stored", node.chunks_stored}});
    const double bytes = static_cast<double>(node.bytes_stored);
    sum += bytes;
    low = list.size() == 1 ? bytes : std::min(low, bytes);
    high = std::max(high, bytes);
  }
  const double mean = nodes.empty() ? 0 : sum / nodes.size();
  return {{"nodes", list},
          {"bytes_mean", mean},
          {"bytes_max_over_mean", Ratio(high, mean)},
          {"bytes_min_over_mean", Ratio(low, mean)}};
}

std::string ClusterUsageText(const std::vector<NodeUsage>& nodes) {
  const nlohmann::json json = ClusterUsageJson(nodes);
  std::string text =
      absl::StrFormat("cluster: %zu nodes, bytes stored:", nodes.size());
  for (const NodeUsage& node : nodes)
    absl::StrAppend(&text, " ", node.id, "=", node.bytes_stored);
  absl::StrAppend(&text,
                  absl::StrFormat("; max/mean %.3f, min/mean %.3f\n",
                                  json["bytes_max_over_mean"].get<double>(),
                                  json["bytes_min_over_mean"].get<double>()));
  return text;
}

absl::StatusOr<ClusterSimReport> SimulateCluster(
    const std::vector<TraceRequest>& requests,
    const ClusterSimOptions& options) {
  if (options.nodes == 0)
    return absl::InvalidArgumentError("--simulate_nodes must be positive");
  if (options.placement_chunks == 0)
    return absl::InvalidArgumentError("placement_chunks must be positive");
  std::vector<cluster::Member> members(options.nodes);
  for (uint32_t i = 0; i < options.nodes; ++i)
    members[i].id = absl::StrCat("node-", i);
  const uint64_t per_node =
      options.capacity_blocks == 0
          ? 0
          : std::max<uint64_t>(1, options.capacity_blocks / options.nodes);
  std::vector<LruBlocks> caches(options.nodes, LruBlocks(per_node));
  ClusterSimReport report;
  report.single_node = SimulateLruCache(requests, options.capacity_blocks);
  report.distinct_blocks = DistinctBlocks(requests);
  for (size_t r = 0; r < requests.size(); ++r) {
    const TraceRequest& request = requests[r];
    // The head: the first placement_chunks whole blocks' chained ids (an
    // id already stands for everything before it, so the last one is the
    // head's key; the count keeps heads of different depths apart).
    size_t whole = 0;
    while (whole < request.hash_ids.size() &&
           whole < options.placement_chunks &&
           request.BlockTokens(whole) == request.block_tokens)
      ++whole;
    const uint64_t key =
        whole == 0
            ? 0
            : request.hash_ids[whole - 1] * 0x9e3779b97f4a7c15ULL + whole;
    std::vector<size_t> order =
        cluster::RankMembers(key, members, options.failed_nodes.size() + 1);
    // While its owner is down a prompt goes to the next live owner (its
    // Lookup there misses at first; its Put stores there), as the client
    // routes; the owner keeps its data and serves it again once back.
    size_t owner = order.front();
    if (r >= options.fail_from && r < options.fail_until) {
      for (size_t candidate : order)
        if (std::find(options.failed_nodes.begin(), options.failed_nodes.end(),
                      candidate) == options.failed_nodes.end()) {
          owner = candidate;
          break;
        }
    }
    LruBlocks& cache = caches[owner];
    uint32_t matched = 0;
    bool missed = false;
    for (size_t b = 0; b < request.hash_ids.size(); ++b) {
      const uint64_t id = request.hash_ids[b];
      if (!missed && cache.Contains(id)) {
        matched += request.BlockTokens(b);
      } else {
        missed = true;
      }
      cache.Touch(id);
    }
    report.hits.Add(CountPrefixHits(request, matched));
  }
  for (const LruBlocks& cache : caches) {
    report.blocks_per_node.push_back(cache.size());
    report.blocks_total += cache.size();
  }
  return report;
}

nlohmann::json ClusterSimJson(const ClusterSimOptions& options,
                              const ClusterSimReport& report) {
  const double mean = double(report.blocks_total) /
                      std::max<size_t>(1, report.blocks_per_node.size());
  const auto [low, high] = std::minmax_element(report.blocks_per_node.begin(),
                                               report.blocks_per_node.end());
  return {{"command", "replay --simulate_nodes"},
          {"nodes", options.nodes},
          {"capacity_blocks", options.capacity_blocks},
          {"placement_chunks", options.placement_chunks},
          {"failed_nodes", options.failed_nodes},
          {"fail_requests", {options.fail_from, options.fail_until}},
          {"hit_rate_blocks", report.hits.block_rate()},
          {"hit_rate_tokens", report.hits.token_rate()},
          {"single_node_hit_rate_blocks", report.single_node.block_rate()},
          {"distinct_blocks", report.distinct_blocks},
          {"blocks_total", report.blocks_total},
          {"replication_overhead",
           Ratio(report.blocks_total, report.distinct_blocks) - 1},
          {"blocks_mean", mean},
          {"blocks_max_over_mean", Ratio(*high, mean)},
          {"blocks_min_over_mean", Ratio(*low, mean)}};
}

std::string ClusterSimText(const ClusterSimOptions& options,
                           const ClusterSimReport& report) {
  const nlohmann::json json = ClusterSimJson(options, report);
  return absl::StrFormat(
      "simulated %u nodes (placement_chunks %u, capacity %s): hit rate %.4f "
      "blocks, %.4f tokens; one node of the same capacity %.4f\n"
      "blocks per node: mean %.0f, max/mean %.3f, min/mean %.3f; stored "
      "%llu blocks in all, %llu distinct in the trace\n",
      options.nodes, options.placement_chunks,
      options.capacity_blocks == 0
          ? std::string("unlimited")
          : absl::StrCat(options.capacity_blocks, " blocks in all"),
      report.hits.block_rate(), report.hits.token_rate(),
      report.single_node.block_rate(), json["blocks_mean"].get<double>(),
      json["blocks_max_over_mean"].get<double>(),
      json["blocks_min_over_mean"].get<double>(),
      static_cast<unsigned long long>(report.blocks_total),
      static_cast<unsigned long long>(report.distinct_blocks));
}

}  // namespace seqkv::bench
