#include "server/prefix_estimator.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace seqkv {

double PrefixEstimator::AddAt(double log_count, uint64_t clock) const {
  const double unit = UnitAt(clock);
  if (!std::isfinite(log_count)) return unit;
  const double high = std::max(log_count, unit);
  const double low = std::min(log_count, unit);
  return high + std::log2(1 + std::exp2(low - high));
}

void PrefixEstimator::CountOccurrence(bool partial, uint32_t occurrences) {
  if (occurrences == 0) return;
  ++reached_[partial ? 1 : 0][std::min(occurrences, kClasses)];
}

double PrefixEstimator::ReuseProbability(bool partial,
                                         uint32_t occurrences) const {
  const auto& reached = reached_[partial ? 1 : 0];
  const uint32_t k = std::clamp(occurrences, 1u, kClasses - 1);
  // Laplace's rule: 1/2 before anything is known. A chunk seen more often
  // is taken to be at least as likely to be seen again as one seen less:
  // the counts of a class whose chunks reached it only lately understate
  // it (their next occurrences are still to come), and without this a
  // chunk stored again after eviction could rank below one never reused.
  double p = 0;
  for (uint32_t j = 1; j <= k; ++j)
    p = std::max(p, (static_cast<double>(reached[j + 1]) + 1) /
                        (static_cast<double>(reached[j]) + 2));
  return std::min(p, 1.0);
}

uint32_t PrefixEstimator::RankClassOf(const ChunkFacts& chunk) {
  return (chunk.partial ? kClasses : 0) +
         std::clamp(chunk.occurrences, 1u, kClasses - 1);
}

double PrefixEstimator::StandingRank(const ChunkFacts& chunk,
                                     double used_at) const {
  double benefit = std::max(1u, chunk.tokens);
  if (options_.attention_crossover_tokens > 0) {
    const double mid =
        chunk.first_position + static_cast<double>(chunk.tokens) / 2;
    benefit *= 1 + mid / options_.attention_crossover_tokens;
  }
  const double bytes =
      static_cast<double>(std::max<uint64_t>(1, chunk.bytes_stored));
  return used_at + std::log2(benefit / bytes);
}

double PrefixEstimator::LogReuse(uint32_t rank_class) const {
  return std::log2(
      ReuseProbability(rank_class >= kClasses, rank_class % kClasses));
}

double PrefixEstimator::Rank(const ChunkFacts& chunk, double used_at) const {
  return StandingRank(chunk, used_at) + LogReuse(RankClassOf(chunk));
}

}  // namespace seqkv
