// The probabilities of the probabilistic trie, estimated online from what
// requests do, and the value per byte retention ranks chunks by.
//
// Two estimates, both learned from the stream of requests, none from
// constants of a model or a trace:
//
// - P̂(node): the probability that the namespace's next lookup passes
//   through the node, as exponentially decayed lookup counts (half-life
//   `half_life_lookups` lookups of the namespace): visits through the node
//   over lookups of the namespace. Kept in a time-invariant log2 form so
//   that nothing needs updating while time passes: a count c last updated
//   at clock t is stored as log2(c) + t/H, and two such values compare, or
//   divide, as the counts they stand for at any common time.
//
// - p̂(reuse | class): the probability that a chunk seen k times (its
//   occurrences: the Put that stored it, each lookup through it, and the
//   same across evictions while its ghost is remembered) is seen again,
//   learned per class (k, and whether the chunk is a trailing partial
//   chunk, which a growing conversation never extends) from how many
//   chunks reached k and k + 1 occurrences, and never below the estimate
//   for fewer occurrences.
//
// Retention ranks a chunk by log2 of its expected benefit per stored byte:
// p̂(reuse) x prefill work a hit saves / stored bytes, discounted by how
// long ago it was used, in units of the namespace's turnover (chunks
// stored since, over chunks it holds): a chunk unused for one turnover is
// worth half of one used now.
//
// Thread-compatible: the node index calls it under its lock.
#ifndef SEQKV_SERVER_PREFIX_ESTIMATOR_H_
#define SEQKV_SERVER_PREFIX_ESTIMATOR_H_

#include <array>
#include <cstdint>

namespace seqkv {

struct PrefixEstimatorOptions {
  // Half-life of P̂'s decayed counts, in lookups of the namespace.
  double half_life_lookups = 1024;
  // The context position at which a token's prefill spends as much on
  // attention as on the rest of the model; a hit on a chunk then saves
  // tokens x (1 + mid position / this) units of work, and deeper chunks
  // are kept longer. It depends on the model's width, so it is a setting.
  // 0 (the default): a hit saves its tokens, which maximizes the token hit
  // rate (weighting by depth lowered it on the conversation trace:
  // BENCHMARKS.md).
  double attention_crossover_tokens = 0;
};

// What retention knows of one chunk.
struct ChunkFacts {
  uint32_t occurrences = 1;
  bool partial = false;  // a trailing chunk shorter than the model's
  uint32_t tokens = 0;
  uint32_t first_position = 0;
  uint64_t bytes_stored = 0;
};

class PrefixEstimator {
 public:
  // Occurrence counts told apart (the last: that many or more).
  static constexpr uint32_t kClasses = 16;

  explicit PrefixEstimator(PrefixEstimatorOptions options = {})
      : options_(options) {}

  // log2 of a decayed count of 1 at lookup clock `clock`.
  double UnitAt(uint64_t clock) const {
    return static_cast<double>(clock) / options_.half_life_lookups;
  }
  // Adds one event at `clock` to the decayed count `log_count` (log2 form;
  // -infinity for none).
  double AddAt(double log_count, uint64_t clock) const;

  // Chunks that reached each occurrence count (index k; the last index:
  // that many or more), [0] for whole chunks and [1] for trailing partial
  // ones: all that p̂(reuse | class) is learned from.
  using ReachedCounts = std::array<std::array<uint64_t, kClasses + 1>, 2>;

  // Notes that a chunk of the class `partial` reached `occurrences`.
  void CountOccurrence(bool partial, uint32_t occurrences);
  const ReachedCounts& reached() const { return reached_; }
  // Replaces what was learned with counts saved before (a restart).
  void RestoreReached(const ReachedCounts& reached) { reached_ = reached; }
  // p̂ that a chunk seen `occurrences` times is seen again.
  double ReuseProbability(bool partial, uint32_t occurrences) const;

  // The retention rank (higher: keep longer) of a chunk last used at
  // `used_at`, the namespace's clock in turnovers (each chunk stored adds
  // 1 / the chunks it holds then): StandingRank + LogReuse of its class.
  double Rank(const ChunkFacts& chunk, double used_at) const;

  // The rank in two parts, so that an ordered set of ranks need not be
  // rebuilt as the estimator learns: the part that stays while the chunk
  // is unused, and log2 of p̂(reuse) for its class, which moves with every
  // occurrence counted anywhere.
  static constexpr uint32_t kRankClasses = 2 * kClasses;
  static uint32_t RankClassOf(const ChunkFacts& chunk);
  double StandingRank(const ChunkFacts& chunk, double used_at) const;
  double LogReuse(uint32_t rank_class) const;

  const PrefixEstimatorOptions& options() const { return options_; }

 private:
  const PrefixEstimatorOptions options_;
  ReachedCounts reached_{};
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_PREFIX_ESTIMATOR_H_
