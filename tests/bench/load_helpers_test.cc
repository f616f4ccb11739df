// Layout presets, operation mixes, latency percentiles and workloads.
#include <gtest/gtest.h>

#include "bench/load/latency.h"
#include "bench/load/layout_presets.h"
#include "bench/load/load_runner.h"
#include "bench/load/workload.h"
#include "tests/test_data.h"

namespace seqkv::bench {
namespace {

TEST(LayoutPresetsTest, ResolvesPresetsAndExplicitShapes) {
  auto llama = ResolveLayout("llama3-8b");
  ASSERT_TRUE(llama.ok());
  EXPECT_EQ(llama->bytes_per_token(), 32u * 2 * 8 * 128 * 2);
  auto big = ResolveLayout("llama3-70b");
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->num_layers, 80u);
  auto tiny = ResolveLayout("tiny");
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(tiny->bytes_per_token(), 6144u);
  auto explicit_shape = ResolveLayout("1x1x8:fp32");
  ASSERT_TRUE(explicit_shape.ok());
  EXPECT_EQ(explicit_shape->bytes_per_token(), 64u);
  auto bad = ResolveLayout("llama9");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("llama9"), std::string::npos);
  EXPECT_FALSE(ResolveLayout("0x1x8").ok());
  EXPECT_EQ(LayoutSlug("6x2x128:bf16"), "6x2x128-bf16");
}

TEST(LoadRunnerTest, ParsesOperationMixes) {
  auto put = ParseOpWeights("put", "");
  ASSERT_TRUE(put.ok());
  EXPECT_EQ((*put)[0], 1);
  EXPECT_EQ((*put)[1], 0);
  auto mix = ParseOpWeights("mix", "put:1,get:3,lookup:0.5");
  ASSERT_TRUE(mix.ok());
  EXPECT_EQ((*mix)[1], 3);
  EXPECT_EQ((*mix)[2], 0.5);
  EXPECT_FALSE(ParseOpWeights("scan", "").ok());
  EXPECT_FALSE(ParseOpWeights("mix", "put:x").ok());
  EXPECT_FALSE(ParseOpWeights("mix", "put:0").ok());
  EXPECT_FALSE(ParseOpWeights("mix", "delete:1").ok());
}

TEST(LatencyTest, NearestRankPercentiles) {
  LatencyRecorder recorder;
  EXPECT_EQ(recorder.Summarize().p99_ms, 0);
  for (int i = 1000; i >= 1; --i) recorder.Add(i);
  LatencySummary summary = recorder.Summarize();
  EXPECT_EQ(summary.count, 1000u);
  EXPECT_DOUBLE_EQ(summary.p50_ms, 500);
  EXPECT_DOUBLE_EQ(summary.p90_ms, 900);
  EXPECT_DOUBLE_EQ(summary.p99_ms, 990);
  EXPECT_DOUBLE_EQ(summary.p999_ms, 999);
  EXPECT_DOUBLE_EQ(summary.max_ms, 1000);
  EXPECT_DOUBLE_EQ(summary.mean_ms, 500.5);
}

TEST(WorkloadTest, SequencesAreDistinctUnlessAPrefixIsShared) {
  WorkloadOptions options;
  options.layout = *ResolveLayout("tiny");
  options.tokens_per_request = 100;
  auto workload = Workload::Create(options);
  ASSERT_TRUE(workload.ok()) << workload.status();
  EXPECT_NE(workload->Tokens(0)[0], workload->Tokens(1)[0]);
  EXPECT_EQ(workload->Tokens(5), workload->Tokens(5));
  KvCache cache = workload->MakeCache();
  EXPECT_TRUE(cache.Validate().ok());

  options.shared_prefix_ratio = 0.25;
  auto shared = Workload::Create(options);
  ASSERT_TRUE(shared.ok());
  const auto a = shared->Tokens(0), b = shared->Tokens(1);
  EXPECT_TRUE(std::equal(a.begin(), a.begin() + 25, b.begin()));
  EXPECT_NE(a[25], b[25]);

  options.run_nonce = 99;
  auto other_run = Workload::Create(options);
  EXPECT_NE(other_run->Tokens(0)[30], a[30]);
  options.shared_prefix_ratio = 1.0;
  EXPECT_FALSE(Workload::Create(options).ok());
}

TEST(WorkloadTest, TilesRealCachesIntoTheLayout) {
  SEQKV_NEEDS_TEST_DATA("kv/a_dev_00.safetensors");
  WorkloadOptions options;
  options.layout = *ResolveLayout("tiny");
  options.tokens_per_request = 64;
  options.source = SEQKV_DATA_DIR "/kv";
  auto workload = Workload::Create(options);
  ASSERT_TRUE(workload.ok()) << workload.status();
  // Same layout as the files: the first token's first key row is the file's.
  auto file = ReadKvCacheFile(SEQKV_DATA_DIR "/kv/a_dev_00.safetensors");
  ASSERT_TRUE(file.ok());
  KvCache cache = workload->MakeCache();
  EXPECT_TRUE(
      std::equal(cache.k.begin(), cache.k.begin() + 256, file->k.begin()));
  options.source = "/nonexistent";
  EXPECT_EQ(Workload::Create(options).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace seqkv::bench
