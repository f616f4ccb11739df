#include "bench/load/latency.h"

#include <algorithm>
#include <cmath>

namespace seqkv::bench {

void LatencyRecorder::Merge(const LatencyRecorder& other) {
  samples_.insert(samples_.end(), other.samples_.begin(), other.samples_.end());
}

LatencySummary LatencyRecorder::Summarize() const {
  LatencySummary summary;
  summary.count = samples_.size();
  if (samples_.empty()) return summary;
  std::vector<float> sorted = samples_;
  std::sort(sorted.begin(), sorted.end());
  const auto rank = [&](double q) {
    size_t index = static_cast<size_t>(std::ceil(q * sorted.size()));
    return static_cast<double>(
        sorted[std::clamp<size_t>(index, 1, sorted.size()) - 1]);
  };
  double sum = 0;
  for (float sample : sorted) sum += sample;
  summary.mean_ms = sum / sorted.size();
  summary.p50_ms = rank(0.50);
  summary.p90_ms = rank(0.90);
  summary.p99_ms = rank(0.99);
  summary.p999_ms = rank(0.999);
  summary.max_ms = sorted.back();
  return summary;
}

}  // namespace seqkv::bench
