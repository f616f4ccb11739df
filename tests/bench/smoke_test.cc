// Short end-to-end runs of `seqkv bench` and `seqkv replay` against real
// seqkv-server processes. Figures are not judged here (benchmarks are), only
// that the commands work and count correctly.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "bench/load/local_server.h"
#include "nlohmann/json.hpp"
#include "tests/run_command.h"
#include "tests/scoped_temp_dir.h"
#include "tests/test_data.h"

namespace seqkv::bench {
namespace {

const std::string kBin = SEQKV_BIN_DIR;
const std::string kTrace = SEQKV_DATA_DIR "/traces/mooncake_conversation.jsonl";

using testing::RunCommand;

// Runs `seqkv ARGS` and parses its JSON report. A failed run or output that
// is not JSON fails the test and gives null.
nlohmann::json RunSeqkvJson(const std::string& args) {
  const testing::CommandResult run =
      RunCommand(absl::StrCat(kBin, "/seqkv ", args));
  EXPECT_EQ(run.exit_code, 0) << run.out;
  nlohmann::json report = nlohmann::json::parse(run.out, nullptr, false);
  EXPECT_FALSE(report.is_discarded()) << run.out;
  return run.exit_code == 0 && !report.is_discarded() ? report
                                                      : nlohmann::json();
}

// Tests that run the CLI against a seqkv-server of their own.
class BenchSmokeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LocalServerOptions options;
    options.binary = kBin + "/seqkv-server";
    options.flags = {"--sync_writes=false"};
    auto server = LocalServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  // `seqkv bench` against this test's server with `flags`: its JSON report.
  nlohmann::json Bench(const std::string& flags) {
    return RunSeqkvJson(absl::StrCat("bench --server ", server_->address(),
                                     " --progress=false --json ", flags));
  }

  std::unique_ptr<LocalServer> server_;
};

TEST_F(BenchSmokeTest, MixOfPutGetLookupWithVerifiedBytes) {
  nlohmann::json report = Bench(
      "--clients 3 --op mix --mix put:1,get:1,lookup:1 --layout tiny"
      " --chunk_tokens 32 --tokens_per_request 80 --codec raw --ops 90"
      " --verify");
  ASSERT_TRUE(report.is_object());
  uint64_t total = 0;
  for (const char* op : {"put", "get", "lookup"}) {
    ASSERT_TRUE(report["ops"].contains(op)) << report.dump();
    const auto& entry = report["ops"][op];
    EXPECT_EQ(entry["errors"].get<uint64_t>(), 0u) << report.dump();
    total += entry["count"].get<uint64_t>();
    if (entry["count"].get<uint64_t>() > 0) {
      EXPECT_GT(entry["ops_per_s"].get<double>(), 0);
      EXPECT_GT(entry["p99_ms"].get<double>(), 0);
      EXPECT_GE(entry["p99_ms"].get<double>(), entry["p50_ms"].get<double>());
    }
    // One untimed run of each operation per client (--warmup_ops 1).
    EXPECT_EQ(entry["warmup_count"].get<uint64_t>(), 3u) << report.dump();
    EXPECT_GT(entry["warmup_max_ms"].get<double>(), 0);
  }
  EXPECT_EQ(total, 90u);
  // 80 tokens in chunks of 32: 3 chunks per distinct Put, none deduplicated.
  const uint64_t puts = report["ops"]["put"]["count"];
  EXPECT_EQ(report["chunks_new"].get<uint64_t>(), 3 * puts);
  EXPECT_EQ(report["chunks_deduped"].get<uint64_t>(), 0u);
  EXPECT_EQ(report["ops"]["put"]["bytes"].get<uint64_t>(), puts * 80 * 6144);
}

TEST_F(BenchSmokeTest, LookupsByChunkDigestsMatchWholeSequences) {
  // 80 tokens in chunks of 32: two digests and 16 tokens sent as ids; the
  // bench counts a Lookup that matches less than the stored 80 as an error.
  nlohmann::json report = Bench(
      "--clients 2 --op lookup --lookup_by_chunks --layout tiny"
      " --chunk_tokens 32 --tokens_per_request 80 --codec raw --ops 40"
      " --warmup_ops 2");
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report["ops"]["lookup"]["count"].get<uint64_t>(), 40u);
  EXPECT_EQ(report["ops"]["lookup"]["warmup_count"].get<uint64_t>(), 4u);
  EXPECT_EQ(report["ops"]["lookup"]["errors"].get<uint64_t>(), 0u);
}

TEST_F(BenchSmokeTest, CliLookupByChunksMatchesAStoredFile) {
  SEQKV_NEEDS_TEST_DATA("kv/c_chat_turn3.safetensors");
  const std::string file = SEQKV_DATA_DIR "/kv/c_chat_turn3.safetensors";
  const std::string flags =
      absl::StrCat(" --server ", server_->address(), " --model kvlm-23m ");
  ASSERT_EQ(RunCommand(absl::StrCat(kBin, "/seqkv put", flags, file)).exit_code,
            0);
  nlohmann::json tokens_report =
      RunSeqkvJson(absl::StrCat("lookup", flags, file));
  nlohmann::json chunks_report =
      RunSeqkvJson(absl::StrCat("lookup --by_chunks", flags, file));
  ASSERT_TRUE(chunks_report.is_object());
  EXPECT_GT(chunks_report["tokens"].get<uint64_t>(), 256u);  // a digest sent
  EXPECT_EQ(chunks_report["matched_tokens"], chunks_report["tokens"]);
  EXPECT_EQ(chunks_report["matched_tokens"], tokens_report["matched_tokens"]);
}

TEST_F(BenchSmokeTest, SharedPrefixIsDeduplicatedAndTimedRunsStop) {
  nlohmann::json report = Bench(
      "--clients 2 --op put --layout 2x1x64:bf16 --chunk_tokens 16"
      " --tokens_per_request 64 --shared_prefix_ratio 0.5 --duration_s 1"
      " --warmup_ops 0");
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report["ops"]["put"]["warmup_count"].get<uint64_t>(), 0u);
  const uint64_t puts = report["ops"]["put"]["count"];
  ASSERT_GT(puts, 2u);
  // The shared half (2 chunks) is new once; every other Put dedups it.
  EXPECT_EQ(report["chunks_new"].get<uint64_t>(), 2 * puts + 2);
  EXPECT_EQ(report["chunks_deduped"].get<uint64_t>(), 2 * (puts - 1));
  EXPECT_GT(report["elapsed_s"].get<double>(), 0.9);
  EXPECT_LT(report["elapsed_s"].get<double>(), 30);
}

TEST_F(BenchSmokeTest, LargeGetsSplitTokensAcrossMessagesAndVerify) {
  SEQKV_NEEDS_TEST_DATA("kv");
  // 700 tokens of 6144 bytes are 4.3 MB: several 2 MiB messages, and 2 MiB is
  // not a whole number of tokens, so tokens straddle messages.
  nlohmann::json report = Bench(
      "--clients 2 --op get --layout tiny --chunk_tokens 256"
      " --tokens_per_request 700 --codec raw --ops 6 --verify"
      " --source " SEQKV_DATA_DIR "/kv");
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report["ops"]["get"]["count"].get<uint64_t>(), 6u) << report.dump();
  EXPECT_EQ(report["ops"]["get"]["bytes"].get<uint64_t>(), 6u * 700 * 6144);
}

TEST(BenchCapacityTest, APromptPutIntoAFullStoreIsWholeRightAfter) {
  // Prompts stored once and never looked up fill a small store (five times
  // its capacity): the server learns that such chunks rarely come back. A
  // prompt Put now must still be whole when it is looked up next; its last
  // chunk used to be evicted at once (leaves ranked before the server had
  // learned outranked it), and the Lookup phase failed its warm-up.
  LocalServerOptions options;
  options.binary = kBin + "/seqkv-server";
  options.flags = {"--sync_writes=false", "--tiers=none",
                   "--capacity_bytes=4194304"};
  auto server = LocalServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string common = absl::StrCat(
      "bench --server ", (*server)->address(),
      " --progress=false --json --layout 1x1x64:bf16 --codec raw"
      " --chunk_tokens 64 --clients 2 ");
  nlohmann::json fill =
      RunSeqkvJson(common + "--op put --tokens_per_request 4096 --ops 20");
  ASSERT_TRUE(fill.is_object());
  EXPECT_EQ(fill["ops"]["put"]["errors"].get<uint64_t>(), 0u);
  nlohmann::json lookups = RunSeqkvJson(
      common + "--op lookup --tokens_per_request 1024 --prefill 8 --ops 20");
  ASSERT_TRUE(lookups.is_object());
  EXPECT_EQ(lookups["ops"]["lookup"]["errors"].get<uint64_t>(), 0u);
}

TEST(BenchFlagsTest, BadFlagsAreRejected) {
  testing::CommandResult run = RunCommand(
      kBin + "/seqkv bench --layout nosuch --ops 1 --progress=false 2>&1");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.out.find("nosuch"), std::string::npos) << run.out;
  run = RunCommand(kBin + "/seqkv bench --op scan 2>&1");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.out.find("--op"), std::string::npos) << run.out;
}

// The test's own count: a block hits when its id was seen before and every
// block before it in the request hit too.
struct OwnCount {
  uint64_t blocks = 0, blocks_hit = 0;
};

OwnCount CountFromTrace(size_t max_requests) {
  OwnCount count;
  absl::flat_hash_set<uint64_t> seen;
  std::ifstream in(kTrace);
  std::string line;
  for (size_t n = 0; n < max_requests && std::getline(in, line); ++n) {
    nlohmann::json request = nlohmann::json::parse(line);
    bool missed = false;
    for (uint64_t id : request["hash_ids"]) {
      ++count.blocks;
      if (!missed && seen.contains(id)) {
        ++count.blocks_hit;
      } else {
        missed = true;
      }
      seen.insert(id);
    }
  }
  return count;
}

TEST(ReplaySmokeTest, HitCountMatchesTheTraceOnItsOwnServer) {
  SEQKV_NEEDS_TEST_DATA("traces/mooncake_conversation.jsonl");
  const OwnCount expected = CountFromTrace(200);
  ASSERT_GT(expected.blocks_hit, 0u);
  nlohmann::json report = RunSeqkvJson(
      absl::StrCat("replay --trace ", kTrace, " --requests 200 --json"));
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report["hits"]["requests"].get<uint64_t>(), 200u);
  EXPECT_EQ(report["hits"]["blocks"].get<uint64_t>(), expected.blocks);
  EXPECT_EQ(report["hits"]["blocks_hit"].get<uint64_t>(), expected.blocks_hit);
  EXPECT_DOUBLE_EQ(report["hit_rate_blocks"].get<double>(),
                   double(expected.blocks_hit) / expected.blocks);
  // Unlimited capacity: the server holds every distinct block once.
  EXPECT_EQ(report["chunks_stored"].get<int64_t>(),
            static_cast<int64_t>(expected.blocks - expected.blocks_hit));
  EXPECT_EQ(report["reference_lru"]["blocks_hit"].get<uint64_t>(),
            expected.blocks_hit);
  EXPECT_GT(report["bytes_stored"].get<int64_t>(), 0);
}

TEST(ReplaySmokeTest, CapacityEvictsAndNeverBeatsUnlimited) {
  SEQKV_NEEDS_TEST_DATA("traces/mooncake_conversation.jsonl");
  const OwnCount unlimited = CountFromTrace(200);
  nlohmann::json report = RunSeqkvJson(
      absl::StrCat("replay --trace ", kTrace,
                   " --requests 200 --capacity_blocks 400 --json"));
  ASSERT_TRUE(report.is_object());
  const uint64_t capacity = report["config"]["capacity_bytes"];
  EXPECT_EQ(capacity,
            400u * report["config"]["bytes_per_block"].get<uint64_t>());
  EXPECT_GT(report["evictions"].get<int64_t>(), 0) << report.dump();
  EXPECT_LE(report["bytes_stored"].get<uint64_t>(), capacity);
  EXPECT_LE(report["hits"]["blocks_hit"].get<uint64_t>(), unlimited.blocks_hit);
}

TEST(ReplaySmokeTest, BlockTokensAndRetentionAreHonoured) {
  // A trace of 64-token blocks: the second request shares two blocks with
  // the first, the third one.
  testing::ScopedTempDir dir;
  const std::string trace = (dir.path() / "trace.jsonl").string();
  {
    std::ofstream out(trace);
    out << R"({"timestamp": 0, "input_length": 192, "hash_ids": [1, 2, 3]})"
        << "\n"
        << R"({"timestamp": 1, "input_length": 190, "hash_ids": [1, 2, 4]})"
        << "\n"
        << R"({"timestamp": 2, "input_length": 100, "hash_ids": [1, 5]})"
        << "\n";
  }
  for (const char* retention : {"plt", "lru"}) {
    nlohmann::json report = RunSeqkvJson(
        absl::StrCat("replay --trace ", trace, " --block_tokens 64",
                     " --retention ", retention, " --json"));
    ASSERT_TRUE(report.is_object()) << retention;
    EXPECT_EQ(report["config"]["block_tokens"], 64);
    EXPECT_EQ(report["config"]["retention"], retention);
    EXPECT_EQ(report["hits"]["blocks"].get<uint64_t>(), 8u);
    EXPECT_EQ(report["hits"]["blocks_hit"].get<uint64_t>(), 3u);
    EXPECT_EQ(report["chunks_stored"].get<int64_t>(), 5);
  }
  // Exact and any-fidelity hits, overall and in every window: with no
  // capacity pressure nothing is demoted, so they agree.
  nlohmann::json report = RunSeqkvJson(absl::StrCat(
      "replay --trace ", trace, " --block_tokens 64 --windows 3 --json"));
  ASSERT_TRUE(report.is_object());
  EXPECT_DOUBLE_EQ(report["hit_rate_tokens_any"].get<double>(),
                   report["hit_rate_tokens"].get<double>());
  EXPECT_DOUBLE_EQ(report["hit_rate_tokens_any"].get<double>(),
                   (64.0 + 64 + 64) / (192 + 190 + 100));
  ASSERT_EQ(report["windows"].size(), 3u);
  for (const auto& window : report["windows"]) {
    EXPECT_TRUE(window.contains("hit_rate_tokens_any")) << window.dump();
    EXPECT_TRUE(window.contains("hit_rate_tokens_exact")) << window.dump();
    EXPECT_LE(window["hit_rate_tokens_exact"].get<double>(),
              window["hit_rate_tokens_any"].get<double>());
  }
  // Distinct blocks 1..5 raw at the default layout (1x1x8 bf16, 32 bytes a
  // token): 64 + 64 + 64 + 62 + 36 tokens.
  EXPECT_EQ(report["bytes_unique_raw"].get<uint64_t>(), 290u * 32);
  EXPECT_EQ(report["bytes_stored"].get<uint64_t>(), 290u * 32);

  // 512-token blocks do not fit the trace's lengths and ids.
  const auto wrong = RunCommand(absl::StrCat(
      SEQKV_BIN_DIR, "/seqkv-bench replay --trace ", trace, " --json 2>&1"));
  EXPECT_NE(wrong.exit_code, 0);
  EXPECT_NE(wrong.out.find("--block_tokens"), std::string::npos) << wrong.out;
}

// A tiny trace of 64-token blocks whose blocks hold real KV caches: a slice
// of one layer and KV head, 16 of each block's tokens.
TEST(ReplaySmokeTest, KvSourceFillsBlocksWithRealCaches) {
  SEQKV_NEEDS_TEST_DATA("kv/a_dev_00.safetensors", "lm/config.json");
  testing::ScopedTempDir dir;
  const std::string trace = (dir.path() / "trace.jsonl").string();
  {
    std::ofstream out(trace);
    out << R"({"timestamp": 0, "input_length": 192, "hash_ids": [1, 2, 3]})"
        << "\n"
        << R"({"timestamp": 1, "input_length": 160, "hash_ids": [1, 2, 4]})"
        << "\n"
        << R"({"timestamp": 2, "input_length": 256, "hash_ids": [1, 2, 3, 5]})"
        << "\n";
  }
  const std::string kv_flags = absl::StrCat(
      " --kv_source '", SEQKV_DATA_DIR, "/kv/*.safetensors' --model_dir ",
      SEQKV_DATA_DIR, "/lm --profile ", SEQKV_SOURCE_DIR,
      "/tools/lm/profiles/kvlm-23m.profile.json --kv_block_tokens 16");
  nlohmann::json report = RunSeqkvJson(absl::StrCat(
      "replay --trace ", trace, " --block_tokens 64", kv_flags, " --json"));
  ASSERT_TRUE(report.is_object());
  const nlohmann::json& config = report["config"];
  EXPECT_EQ(config["content"], "kv_source");
  EXPECT_EQ(config["stored_block_tokens"], 16);
  const nlohmann::json& slice = config["kv_source"]["slice"];
  EXPECT_EQ(slice["kv_head"], 0);
  EXPECT_EQ(config["kv_source"]["profile"], "sliced");
  const uint64_t bytes_per_token = slice["bytes_per_token"];
  EXPECT_EQ(config["bytes_per_block"].get<uint64_t>(), 16 * bytes_per_token);
  // Hits are counted in the trace's tokens: request 2 hits blocks 1-2,
  // request 3 blocks 1-3.
  EXPECT_EQ(report["hits"]["blocks"].get<uint64_t>(), 10u);
  EXPECT_EQ(report["hits"]["blocks_hit"].get<uint64_t>(), 5u);
  EXPECT_EQ(report["hits"]["tokens_hit"].get<uint64_t>(), 5u * 64);
  // Block 4 is partial (32 of 64 tokens: 8 stored); every distinct block is
  // stored once, raw.
  EXPECT_EQ(report["chunks_stored"].get<int64_t>(), 5);
  EXPECT_EQ(report["bytes_unique_raw"].get<uint64_t>(),
            (4 * 16 + 8) * bytes_per_token);
  EXPECT_EQ(report["bytes_stored"].get<uint64_t>(),
            report["bytes_unique_raw"].get<uint64_t>());

  // A capacity of a fraction of the raw bytes evicts.
  report = RunSeqkvJson(absl::StrCat("replay --trace ", trace,
                                     " --block_tokens 64", kv_flags,
                                     " --capacity_raw_fraction 0.5"
                                     " --verify_every 1 --json"));
  ASSERT_TRUE(report.is_object());
  // Requests that matched a prefix are fetched back: never an exact-only
  // chunk that differs from what was Put.
  const nlohmann::json& served = report["served"];
  ASSERT_TRUE(served.is_object()) << report.dump();
  EXPECT_GE(served["requests"].get<uint64_t>(), 1u);
  EXPECT_GT(served["chunks"].get<uint64_t>(), 0u);
  EXPECT_EQ(served["exact_only_mismatches"].get<uint64_t>(), 0u);
  EXPECT_EQ(report["config"]["capacity_bytes"].get<uint64_t>(),
            report["bytes_unique_raw"].get<uint64_t>() / 2);
  EXPECT_LE(report["bytes_stored"].get<uint64_t>(),
            report["config"]["capacity_bytes"].get<uint64_t>());
  EXPECT_LE(report["hit_rate_tokens_exact"].get<double>(),
            report["hit_rate_tokens_any"].get<double>());
  // The server's bytes per fidelity tier add up to what it stores.
  ASSERT_TRUE(report["bytes_by_tier"].is_object()) << report.dump();
  uint64_t tier_bytes = 0;
  for (const auto& [tier, bytes] : report["bytes_by_tier"].items())
    tier_bytes += bytes.get<uint64_t>();
  EXPECT_EQ(tier_bytes, report["bytes_stored"].get<uint64_t>());
  EXPECT_TRUE(report["bytes_by_tier"].contains("exact")) << report.dump();

  // Without tiers every hit is exact.
  report = RunSeqkvJson(absl::StrCat(
      "replay --trace ", trace, " --block_tokens 64", kv_flags,
      " --capacity_raw_fraction 0.5 --tiers none --verify_every 1 --json"));
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report["config"]["tiers"], "none");
  EXPECT_DOUBLE_EQ(report["hit_rate_tokens_exact"].get<double>(),
                   report["hit_rate_tokens_any"].get<double>());
  EXPECT_EQ(report["served"]["chunks_exact"], report["served"]["chunks"]);
  EXPECT_EQ(report["demotions"].get<int64_t>(), 0);

  // Chunks Put lossy come back with their codec's error, as the check
  // measures it: per tensor, and as the profile counts it.
  report = RunSeqkvJson(
      absl::StrCat("replay --trace ", trace, " --block_tokens 64", kv_flags,
                   " --codec predictive:rel_mse=0.01 --verify_every 1 --json"));
  ASSERT_TRUE(report.is_object());
  const nlohmann::json& lossy = report["served"];
  ASSERT_TRUE(lossy.is_object()) << report.dump();
  EXPECT_EQ(lossy["chunks_lossy"], lossy["chunks"]);
  EXPECT_GT(lossy["chunks_lossy"].get<uint64_t>(), 0u);
  for (const char* tensor : {"rel_mse_k", "rel_mse_v"}) {
    EXPECT_GT(lossy[tensor]["mean"].get<double>(), 0.001) << lossy.dump();
    EXPECT_LE(lossy[tensor]["max"].get<double>(), 0.0105) << lossy.dump();
  }
  EXPECT_GT(lossy["rel_mse_by_profile"]["max"].get<double>(), 0);

  // The RoPE of the dumps' keys must come from somewhere.
  const auto no_rope = RunCommand(
      absl::StrCat(SEQKV_BIN_DIR, "/seqkv-bench replay --trace ", trace,
                   " --block_tokens 64 --kv_source '", SEQKV_DATA_DIR,
                   "/kv/*.safetensors' --json 2>&1"));
  EXPECT_NE(no_rope.exit_code, 0);
  EXPECT_NE(no_rope.out.find("--model_dir"), std::string::npos) << no_rope.out;
}

}  // namespace
}  // namespace seqkv::bench
