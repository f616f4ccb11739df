// Trace parsing, prefix-hit accounting and the reference LRU model.
#include "bench/replay/trace.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace seqkv::bench {
namespace {

std::string WriteTrace(const std::string& name, const std::string& text) {
  const std::string path =
      (std::filesystem::path(testing::TempDir()) / name).string();
  std::ofstream(path) << text;
  return path;
}

TEST(TraceTest, ReadsRequestsAndBlockSizes) {
  const std::string path = WriteTrace(
      "ok.jsonl",
      "{\"timestamp\": 0, \"input_length\": 1100, \"output_length\": 5, "
      "\"hash_ids\": [0, 1, 2]}\n"
      "\n"
      "{\"timestamp\": 3, \"input_length\": 512, \"output_length\": 1, "
      "\"hash_ids\": [0]}\n");
  auto requests = ReadMooncakeTrace(path);
  ASSERT_TRUE(requests.ok()) << requests.status();
  ASSERT_EQ(requests->size(), 2u);
  EXPECT_EQ((*requests)[0].BlockTokens(0), 512u);
  EXPECT_EQ((*requests)[0].BlockTokens(2), 76u);
  EXPECT_EQ((*requests)[1].timestamp_ms, 3);
  auto first = ReadMooncakeTrace(path, 1);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->size(), 1u);
}

TEST(TraceTest, RejectsMalformedLinesNamingTheField) {
  struct Case {
    std::string line, field;
  };
  const Case cases[] = {
      {"{\"timestamp\": 0, \"input_length\": 600, \"hash_ids\": [1]}",
       "hash_ids"},
      {"{\"timestamp\": 0, \"input_length\": -4, \"hash_ids\": []}",
       "input_length"},
      {"{\"timestamp\": 0, \"hash_ids\": []}", "input_length"},
      {"{\"timestamp\": 0, \"input_length\": 10, \"hash_ids\": [-1]}",
       "hash_ids"},
      {"[1, 2]", "not a JSON object"},
      {"{\"timestamp\": 0, \"input_length\": 10, \"hash_ids\": 5}", "hash_ids"},
  };
  for (const Case& c : cases) {
    const std::string path = WriteTrace("bad.jsonl", c.line + "\n");
    auto requests = ReadMooncakeTrace(path);
    ASSERT_FALSE(requests.ok()) << c.line;
    EXPECT_EQ(requests.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(requests.status().message().find(c.field), std::string::npos)
        << requests.status();
    EXPECT_NE(requests.status().message().find(":1:"), std::string::npos)
        << requests.status();
  }
  EXPECT_EQ(ReadMooncakeTrace("/nonexistent/trace.jsonl").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(TraceTest, PrefixHitsStopAtTheFirstIncompleteBlock) {
  TraceRequest request;
  request.input_length = 1300;  // blocks of 512, 512, 276
  request.hash_ids = {7, 8, 9};
  HitCounts none = CountPrefixHits(request, 0);
  EXPECT_EQ(none.blocks, 3u);
  EXPECT_EQ(none.blocks_hit, 0u);
  EXPECT_EQ(none.tokens, 1300u);
  HitCounts partial = CountPrefixHits(request, 1023);
  EXPECT_EQ(partial.blocks_hit, 1u);
  EXPECT_EQ(partial.tokens_hit, 512u);
  HitCounts all = CountPrefixHits(request, 1300);
  EXPECT_EQ(all.blocks_hit, 3u);
  EXPECT_EQ(all.tokens_hit, 1300u);
  EXPECT_DOUBLE_EQ(all.block_rate(), 1.0);
}

TEST(TraceTest, LruModelCountsHitsUpToTheFirstMiss) {
  auto make = [](std::vector<uint64_t> ids) {
    TraceRequest r;
    r.input_length = static_cast<uint32_t>(ids.size() * 512);
    r.hash_ids = std::move(ids);
    return r;
  };
  // Request 3 shares block 1 but misses block 4 first: 2 is not a hit even
  // though it is cached, because prefix caches stop at the first miss.
  const std::vector<TraceRequest> trace = {make({1, 2}), make({1, 3}),
                                           make({1, 4, 2})};
  HitCounts unlimited = SimulateLruCache(trace, 0);
  EXPECT_EQ(unlimited.blocks, 7u);
  EXPECT_EQ(unlimited.blocks_hit, 2u);
  EXPECT_EQ(DistinctBlocks(trace), 4u);
  // Two blocks: after {1,3}, block 2 is gone; 1 is still the most recent.
  HitCounts small = SimulateLruCache(trace, 2);
  EXPECT_EQ(small.blocks_hit, 2u);
  // One block: only the last block inserted survives, never a first block.
  HitCounts tiny = SimulateLruCache(trace, 1);
  EXPECT_EQ(tiny.blocks_hit, 0u);
}

}  // namespace
}  // namespace seqkv::bench
