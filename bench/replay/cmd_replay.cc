// seqkv replay --trace FILE: hit rate of a request trace against a server.
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "bench/load/layout_presets.h"
#include "bench/load/local_server.h"
#include "bench/replay/cluster_report.h"
#include "bench/replay/replay_runner.h"
#include "client/cli/command.h"
#include "client/cli/common_flags.h"
#include "client/cli/shared_flags.h"
#include "model/hf_config.h"

ABSL_FLAG(std::string, trace, "", "replay: Mooncake-format JSONL trace");
ABSL_FLAG(uint64_t, requests, 0, "replay: first N requests only (0: all)");
ABSL_FLAG(uint64_t, capacity_blocks, 0,
          "replay: capacity of the server it starts, in blocks of the trace "
          "(0: unlimited)");
ABSL_FLAG(uint64_t, capacity_bytes, 0,
          "replay: capacity of the server it starts, in bytes (0: unlimited)");
ABSL_FLAG(std::string, server_binary, "",
          "replay: seqkv-server to start (default: the one next to seqkv)");
ABSL_FLAG(int, windows, 10, "replay: hit rate over time in this many slices");
ABSL_FLAG(uint32_t, block_tokens, 512,
          "replay: tokens per hash id of the trace (Mooncake's: 512; some "
          "public traces use 64), and the replayed model's chunk size");
ABSL_FLAG(std::string, retention, "",
          "replay: --retention of the server it starts (plt or lru; empty: "
          "the server's default)");
ABSL_FLAG(std::string, tiers, "",
          "replay: --tiers of the server it starts (none, lossy, "
          "lossy,tokens; empty: the server's default)");
ABSL_FLAG(std::string, tier_shares, "",
          "replay: --tier_shares of the server it starts (EXACT,LOSSY_1; "
          "empty: the server's default)");
ABSL_FLAG(double, speedup, 0,
          "replay: send requests at this many times the pace of the trace's "
          "timestamps (0: each as soon as the one before is done)");
ABSL_FLAG(double, capacity_raw_fraction, 0,
          "replay: capacity of the server it starts as a fraction of "
          "bytes_unique_raw, what every distinct block of the replayed "
          "requests takes raw (0: unlimited)");
ABSL_FLAG(uint64_t, verify_every, 0,
          "replay: every N requests (0: never) Get the matched prefix, at any "
          "fidelity and exact only, and compare it with what was Put "
          "(report: served)");
ABSL_FLAG(std::string, kv_source, "",
          "replay: fill blocks with real KV caches, files matching this glob "
          "(safetensors dumps: tokens, k, v [layers, kv_heads, T, head_dim]); "
          "a slice of one layer and KV head, --kv_block_tokens per block. "
          "Give the model's --model_dir (layout and RoPE from config.json) or "
          "--rope, and --profile to cut its fidelity profile to the slice");
ABSL_FLAG(int, kv_layer, -1,
          "replay --kv_source: layer of the slice (-1: the middle layer)");
ABSL_FLAG(uint32_t, kv_head, 0, "replay --kv_source: KV head of the slice");
ABSL_FLAG(uint32_t, kv_block_tokens, 16,
          "replay --kv_source: tokens stored per block of the trace (at most "
          "--block_tokens; a partial block in proportion)");

ABSL_FLAG(uint32_t, simulate_nodes, 0,
          "replay: no server; model the trace through this many cluster "
          "nodes placed as the etcd:// client places prompts, each an LRU "
          "cache of blocks holding its share of --capacity_blocks "
          "(docs/SCALE.md)");
ABSL_FLAG(uint32_t, placement_chunks, 2,
          "replay: a prompt's head, in blocks (the cluster's placement "
          "depth): --simulate_nodes places by it, and the hit rate of the "
          "hottest 1% of heads is reported by it");
ABSL_FLAG(int32_t, simulate_kill_node, -1,
          "replay --simulate_nodes: this node (0-based) is down for the "
          "middle third of the requests (-1: none)");

namespace seqkv::cli {
namespace {

// --kv_source and the flags that shape it. The RoPE of the keys is not in
// the dumps: it comes from --model_dir's config.json (whose layout the files
// must match) or --rope.
absl::Status KvSourceFromFlags(bench::KvSourceOptions& source) {
  source.glob = absl::GetFlag(FLAGS_kv_source);
  if (source.glob.empty()) return absl::OkStatus();
  source.layer = absl::GetFlag(FLAGS_kv_layer);
  source.head = absl::GetFlag(FLAGS_kv_head);
  source.slice_tokens = absl::GetFlag(FLAGS_kv_block_tokens);
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  if (model_dir.empty() && absl::GetFlag(FLAGS_rope).empty())
    return absl::InvalidArgumentError(
        "--kv_source needs the model's --model_dir (its config.json states "
        "the layout and RoPE) or --rope");
  if (!model_dir.empty()) {
    absl::StatusOr<HfConfig> config = ReadHfConfig(model_dir);
    if (!config.ok()) return config.status();
    source.model_layout = config->KvCacheLayout();
  }
  absl::StatusOr<RopeConfig> rope = RopeFromFlags(model_dir);
  if (!rope.ok()) return rope.status();
  source.rope = *rope;
  if (const std::string path = absl::GetFlag(FLAGS_profile); !path.empty()) {
    std::ifstream in(path);
    if (!in)
      return absl::NotFoundError(absl::StrCat("--profile: cannot read ", path));
    std::stringstream text;
    text << in.rdbuf();
    source.profile_json = text.str();
  }
  return absl::OkStatus();
}

// --simulate_nodes: the cluster model, no server.
int SimulateNodes() {
  auto requests = bench::ReadMooncakeTrace(absl::GetFlag(FLAGS_trace),
                                           absl::GetFlag(FLAGS_requests),
                                           absl::GetFlag(FLAGS_block_tokens));
  if (!requests.ok()) return ReportError(requests.status());
  bench::ClusterSimOptions options;
  options.nodes = absl::GetFlag(FLAGS_simulate_nodes);
  options.capacity_blocks = absl::GetFlag(FLAGS_capacity_blocks);
  options.placement_chunks = absl::GetFlag(FLAGS_placement_chunks);
  if (const int32_t kill = absl::GetFlag(FLAGS_simulate_kill_node); kill >= 0) {
    if (static_cast<uint32_t>(kill) >= options.nodes)
      return ReportError(absl::InvalidArgumentError(
          "--simulate_kill_node must be below --simulate_nodes"));
    options.failed_nodes = {static_cast<uint32_t>(kill)};
    options.fail_from = requests->size() / 3;
    options.fail_until = 2 * requests->size() / 3;
  }
  auto report = bench::SimulateCluster(*requests, options);
  if (!report.ok()) return ReportError(report.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << bench::ClusterSimJson(options, *report).dump() << std::endl;
  } else {
    std::cout << bench::ClusterSimText(options, *report);
  }
  return 0;
}

// Replay has its own default layout (tiny, so that the whole trace fits on
// disk) and starts a server of its own unless --server names one.
int RunReplay(std::span<char* const> args) {
  if (!args.empty() || absl::GetFlag(FLAGS_trace).empty()) {
    return kShowUsage;
  }
  if (absl::GetFlag(FLAGS_simulate_nodes) > 0) return SimulateNodes();
  bench::ReplayOptions options;
  options.trace = absl::GetFlag(FLAGS_trace);
  options.requests = absl::GetFlag(FLAGS_requests);
  options.capacity_blocks = absl::GetFlag(FLAGS_capacity_blocks);
  options.capacity_bytes = absl::GetFlag(FLAGS_capacity_bytes);
  options.admin = absl::GetFlag(FLAGS_admin);
  options.windows = absl::GetFlag(FLAGS_windows);
  options.head_blocks = absl::GetFlag(FLAGS_placement_chunks);
  if (options.head_blocks == 0)
    return ReportError(
        absl::InvalidArgumentError("--placement_chunks must be positive"));
  options.retention = absl::GetFlag(FLAGS_retention);
  options.block_tokens = absl::GetFlag(FLAGS_block_tokens);
  options.tiers = absl::GetFlag(FLAGS_tiers);
  options.tier_shares = absl::GetFlag(FLAGS_tier_shares);
  options.speedup = absl::GetFlag(FLAGS_speedup);
  if (!(options.speedup >= 0))
    return ReportError(
        absl::InvalidArgumentError("--speedup must be 0 or positive"));
  options.verify_every = absl::GetFlag(FLAGS_verify_every);
  options.capacity_raw_fraction = absl::GetFlag(FLAGS_capacity_raw_fraction);
  if (auto status = KvSourceFromFlags(options.kv_source); !status.ok())
    return ReportError(status);
  // --server's default names the usual local port; replay only uses a
  // server it is pointed at explicitly.
  const std::string server = absl::GetFlag(FLAGS_server);
  if (server != ClientOptions().server) options.server = server;
  options.server_binary = absl::GetFlag(FLAGS_server_binary);
  if (options.server_binary.empty())
    options.server_binary = bench::ServerNextToSelf();
  const std::string layout_name = absl::GetFlag(FLAGS_layout).empty()
                                      ? "1x1x8:bf16"
                                      : absl::GetFlag(FLAGS_layout);
  auto layout = bench::ResolveLayout(layout_name);
  if (!layout.ok()) return ReportError(layout.status());
  options.layout = *layout;
  if (!absl::GetFlag(FLAGS_codec).empty())
    options.codec = absl::GetFlag(FLAGS_codec);
  options.model = absl::GetFlag(FLAGS_model);
  if (options.model.empty() && options.kv_source.glob.empty())
    options.model = absl::StrCat("replay-", bench::LayoutSlug(layout_name),
                                 "-c", options.block_tokens);
  if (isatty(STDERR_FILENO) || !absl::GetFlag(FLAGS_json)) {
    const bool tty = isatty(STDERR_FILENO);
    options.progress = [tty](const std::string& line) {
      std::cerr << line << (tty ? "\r" : "\n") << std::flush;
    };
  }
  auto report = bench::RunReplay(options);
  if (options.progress && isatty(STDERR_FILENO)) std::cerr << "\n";
  if (!report.ok()) return ReportError(report.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << bench::ReplayToJson(options, *report).dump() << std::endl;
  } else {
    std::cout << bench::ReplayToText(options, *report);
  }
  return 0;
}

const CommandRegistrar registrar({"replay", RunReplay});

}  // namespace
}  // namespace seqkv::cli
