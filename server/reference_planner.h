// Finds, for a chunk a Put is about to encode, the chunks stored before it
// that it can be coded against: the sibling that shares its head under the
// same prefix (split dedup: the head is copied, not stored) and stored
// chunks holding its token runs after other prefixes, at other positions
// (cross-prefix residuals, found through the ContentIndex).
//
// Thread-safe: Plan reads the trie and the index only.
#ifndef SEQKV_SERVER_REFERENCE_PLANNER_H_
#define SEQKV_SERVER_REFERENCE_PLANNER_H_

#include <cstdint>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "server/content_index.h"
#include "server/stored_chunk.h"
#include "storage/trie.h"

namespace seqkv {

struct ReferenceOptions {
  bool split_dedup = true;
  bool cross_prefix = true;
};

class ReferencePlanner {
 public:
  // Runs shorter than this are coded on their own.
  static constexpr uint32_t kMinRunTokens = ContentIndex::kWindowTokens;
  // A chunk references at most this many chunks (each is decoded with it).
  static constexpr size_t kMaxSources = 4;
  // A chunk is coded against others only when they cover at least
  // kCoveredOf / kMinCoveredPer (an eighth) of its tokens: each costs a Get
  // one more chunk to decode.
  static constexpr uint64_t kCoveredOf = 1;
  static constexpr uint64_t kMinCoveredPer = 8;

  // Both must outlive the planner.
  ReferencePlanner(const Trie* trie, const ContentIndex* content,
                   ReferenceOptions options)
      : trie_(trie), content_(content), options_(options) {}

  struct Chunk {
    NodeKey parent;
    std::string_view name_space;
    std::string_view model;
    std::string_view codec;  // the spec the chunk is encoded with
    std::span<const int32_t> tokens;
    uint64_t bytes_per_token = 0;
  };
  // Sets `record`'s references, reference_runs, copied_tokens and
  // reference_depth (left empty when no stored chunk helps). Only chunks
  // with the same codec, namespace and model, holding KV as their Put
  // stored it, fewer than kMaxReferenceDepth levels above chunks coded on
  // their own, are referenced.
  absl::Status Plan(const Chunk& chunk, NodeRecord& record) const;

  const ReferenceOptions& options() const { return options_; }

 private:
  // Plan with sources at most `max_depth` levels above chunks coded on
  // their own.
  absl::Status PlanWith(const Chunk& chunk, uint32_t max_depth,
                        NodeRecord& record) const;

  const Trie* const trie_;
  const ContentIndex* const content_;
  const ReferenceOptions options_;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_REFERENCE_PLANNER_H_
