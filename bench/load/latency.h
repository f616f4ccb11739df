// Latency samples of one operation kind and their percentiles.
#ifndef SEQKV_BENCH_LOAD_LATENCY_H_
#define SEQKV_BENCH_LOAD_LATENCY_H_

#include <cstdint>
#include <vector>

namespace seqkv::bench {

struct LatencySummary {
  uint64_t count = 0;
  double mean_ms = 0;
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  double p999_ms = 0;
  double max_ms = 0;
};

// Keeps every sample (4 bytes each): benchmark runs are at most millions of
// operations, and exact percentiles beat a histogram's buckets.
class LatencyRecorder {
 public:
  void Add(double ms) { samples_.push_back(static_cast<float>(ms)); }
  void Merge(const LatencyRecorder& other);
  // Nearest-rank percentiles; all zero when empty.
  LatencySummary Summarize() const;
  uint64_t count() const { return samples_.size(); }

 private:
  std::vector<float> samples_;
};

}  // namespace seqkv::bench

#endif  // SEQKV_BENCH_LOAD_LATENCY_H_
