// What a benchmark sends: token sequences that are distinct per sequence
// number (sharing a prefix only when asked) and KV data of a given layout,
// synthetic or tiled from real caches.
#ifndef SEQKV_BENCH_LOAD_WORKLOAD_H_
#define SEQKV_BENCH_LOAD_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "codec/kv_layout.h"
#include "model/kv_cache.h"

namespace seqkv::bench {

struct WorkloadOptions {
  KvLayout layout;
  uint32_t tokens_per_request = 256;
  // Fraction of every sequence that is one prefix common to all of them.
  double shared_prefix_ratio = 0;
  // Seeds the KV data and the shared prefix.
  uint64_t seed = 1;
  // Mixed into the token ids so that separate runs against one server never
  // deduplicate each other's sequences.
  uint64_t run_nonce = 0;
  // "synthetic", or a directory of safetensors caches (shared/data/kv) whose
  // values are tiled into the layout.
  std::string source = "synthetic";
  // Token ids are drawn from [0, vocab_size).
  uint32_t vocab_size = 128256;
};

// Stateless after Create; safe to share between threads.
class Workload {
 public:
  static absl::StatusOr<Workload> Create(const WorkloadOptions& options);

  const WorkloadOptions& options() const { return options_; }
  uint32_t shared_prefix_tokens() const { return shared_prefix_tokens_; }
  // Token ids of sequence `sequence`.
  std::vector<int32_t> Tokens(uint64_t sequence) const;
  // Writes them into `tokens` (resized to tokens_per_request).
  void FillTokens(uint64_t sequence, std::vector<int32_t>& tokens) const;
  // A cache of tokens_per_request tokens holding the workload's KV values;
  // callers replace its tokens per request.
  KvCache MakeCache() const;
  // Logical KV bytes of one request.
  uint64_t request_bytes() const {
    return uint64_t{options_.tokens_per_request} *
           options_.layout.bytes_per_token();
  }

 private:
  explicit Workload(WorkloadOptions options) : options_(std::move(options)) {}

  WorkloadOptions options_;
  uint32_t shared_prefix_tokens_ = 0;
  // K and V of tokens_per_request tokens, [layer][head][token][dim].
  std::vector<std::byte> k_;
  std::vector<std::byte> v_;
};

// A 64-bit mix of (a, b, c): splitmix64 finalizer over their combination.
uint64_t Mix64(uint64_t a, uint64_t b, uint64_t c);

}  // namespace seqkv::bench

#endif  // SEQKV_BENCH_LOAD_WORKLOAD_H_
