// Mooncake-format request traces (JSONL: timestamp, input_length,
// output_length, hash_ids; one chained hash id per block of 512 tokens, or
// of another size some traces use) and
// the prefix-cache hit accounting used to judge a replay.
#ifndef SEQKV_BENCH_REPLAY_TRACE_H_
#define SEQKV_BENCH_REPLAY_TRACE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace seqkv::bench {

// Mooncake's block size.
inline constexpr uint32_t kTraceBlockTokens = 512;

struct TraceRequest {
  int64_t timestamp_ms = 0;
  uint32_t input_length = 0;
  uint32_t output_length = 0;
  std::vector<uint64_t> hash_ids;
  uint32_t block_tokens = kTraceBlockTokens;

  // Tokens of block `index`: block_tokens, or fewer for a partial last one.
  uint32_t BlockTokens(size_t index) const;
};

// Reads the first `max_requests` requests (0: all), of `block_tokens`-token
// blocks. INVALID_ARGUMENT names the line and field of a malformed request
// (missing field, negative length, hash_ids not ceil(input_length /
// block_tokens) long).
absl::StatusOr<std::vector<TraceRequest>> ReadMooncakeTrace(
    const std::string& path, size_t max_requests = 0,
    uint32_t block_tokens = kTraceBlockTokens);

// Hits of one request or of many, block- and token-weighted.
struct HitCounts {
  uint64_t requests = 0;
  uint64_t blocks = 0;
  uint64_t blocks_hit = 0;
  uint64_t tokens = 0;
  uint64_t tokens_hit = 0;

  void Add(const HitCounts& other);
  double block_rate() const {
    return blocks == 0 ? 0 : double(blocks_hit) / blocks;
  }
  double token_rate() const {
    return tokens == 0 ? 0 : double(tokens_hit) / tokens;
  }
};

// Counts a request whose first `matched_tokens` tokens were found: a block
// is a hit when all its tokens were, so hits stop at the first miss.
HitCounts CountPrefixHits(const TraceRequest& request, uint32_t matched_tokens);

// Distinct hash ids in the trace.
uint64_t DistinctBlocks(const std::vector<TraceRequest>& requests);

// Reference model: a cache of `capacity_blocks` blocks (0: unlimited) with
// LRU eviction of individual blocks, requests in order, hits counted up to a
// request's first miss. The server's own eviction is judged against it.
HitCounts SimulateLruCache(const std::vector<TraceRequest>& requests,
                           uint64_t capacity_blocks);

}  // namespace seqkv::bench

#endif  // SEQKV_BENCH_REPLAY_TRACE_H_
