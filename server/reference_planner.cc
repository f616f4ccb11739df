#include "server/reference_planner.h"

#include <algorithm>
#include <optional>
#include <tuple>
#include <vector>

#include "absl/container/node_hash_map.h"
#include "server/stored_chunk.h"

namespace seqkv {
namespace {

bool Usable(const NodeRecord& source, const ReferencePlanner::Chunk& chunk,
            uint32_t max_depth) {
  return !source.tokens_only() && source.lossy_tier() == 0 &&
         source.reference_depth() <= max_depth &&
         !source.payload_token_major() && source.tokens_size() > 0 &&
         source.codec() == chunk.codec &&
         source.namespace_() == chunk.name_space &&
         source.model() == chunk.model &&
         source.bytes_logical() ==
             uint64_t(source.tokens_size()) * chunk.bytes_per_token;
}

storage::v1::ChunkReference ReferenceTo(const NodeKey& key,
                                        const NodeRecord& source) {
  storage::v1::ChunkReference reference;
  reference.set_node_key(key.Bytes());
  *reference.mutable_record() = source;
  return reference;
}

}  // namespace

absl::Status ReferencePlanner::Plan(const Chunk& chunk,
                                    NodeRecord& record) const {
  if (auto status = PlanWith(chunk, kMaxReferenceDepth - 1, record);
      !status.ok() || record.reference_depth() < kMaxReferenceDepth)
    return status;
  // At the deepest level no chunk can be coded against it. A chunk whose
  // tokens are mostly new is the likeliest to be wanted as a source (the
  // first copy of a document): it is coded against chunks coded on their
  // own only, so that it stays one level from the bottom.
  uint64_t covered = record.copied_tokens();
  for (const auto& run : record.reference_runs()) covered += run.num_tokens();
  if (2 * covered >= chunk.tokens.size()) return absl::OkStatus();
  return PlanWith(chunk, 0, record);
}

absl::Status ReferencePlanner::PlanWith(const Chunk& chunk, uint32_t max_depth,
                                        NodeRecord& record) const {
  auto clear = [&] {
    record.clear_references();
    record.clear_reference_runs();
    record.set_copied_tokens(0);
    record.set_reference_depth(0);
  };
  clear();
  const std::span<const int32_t> tokens = chunk.tokens;
  const uint32_t n = static_cast<uint32_t>(tokens.size());
  std::vector<NodeKey> sources;
  auto source_of = [&](const NodeKey& key,
                       const NodeRecord& source) -> std::optional<uint32_t> {
    for (uint32_t i = 0; i < sources.size(); ++i)
      if (sources[i] == key) return i;
    if (sources.size() >= kMaxSources) return std::nullopt;
    sources.push_back(key);
    *record.add_references() = ReferenceTo(key, source);
    return static_cast<uint32_t>(sources.size() - 1);
  };

  uint32_t copied = 0;
  if (options_.split_dedup && n >= kMinRunTokens) {
    auto sibling = trie_->BestChild(chunk.parent, tokens);
    if (!sibling.ok()) return sibling.status();
    if (sibling->has_value() && (*sibling)->matched_tokens >= kMinRunTokens &&
        Usable((*sibling)->record, chunk, max_depth)) {
      copied = (*sibling)->matched_tokens;
      source_of((*sibling)->key, (*sibling)->record);
      record.set_copied_tokens(copied);
    }
  }

  if (options_.cross_prefix && n >= copied + kMinRunTokens) {
    const uint64_t scope = ContentIndex::Scope(chunk.name_space, chunk.model);
    // Node-based: runs point at records while more are read.
    absl::node_hash_map<NodeKey, std::optional<NodeRecord>> read;
    uint32_t done = copied;  // tokens before this are coded or copied
    uint32_t i = copied;
    while (i + kMinRunTokens <= n) {
      const uint64_t hash =
          ContentIndex::WindowHash(scope, tokens.subspan(i, kMinRunTokens));
      struct Run {
        uint32_t begin = 0, length = 0, source_token = 0;
        NodeKey node;
        const NodeRecord* record = nullptr;
      } best;
      for (const ContentIndex::Place& place : content_->Find(hash, 4)) {
        auto [it, fresh] = read.try_emplace(place.node);
        if (fresh) {
          auto stored = trie_->ReadNode(place.node);
          if (!stored.ok()) return stored.status();
          if (stored->has_value() && Usable(**stored, chunk, max_depth))
            it->second = std::move(**stored);
        }
        if (!it->second) continue;
        const auto& theirs = it->second->tokens();
        const uint32_t size = static_cast<uint32_t>(theirs.size());
        if (place.token + kMinRunTokens > size ||
            !std::equal(tokens.begin() + i, tokens.begin() + i + kMinRunTokens,
                        theirs.begin() + place.token))
          continue;  // a hash collision
        uint32_t begin = i, from = place.token;
        while (begin > done && from > 0 &&
               tokens[begin - 1] == theirs[from - 1])
          --begin, --from;
        uint32_t end = i + kMinRunTokens, to = place.token + kMinRunTokens;
        while (end < n && to < size && tokens[end] == theirs[to]) ++end, ++to;
        // The longest run; of equal ones, the shallowest source (a chunk
        // coded against it can then be a source itself), then one already
        // referenced.
        const uint32_t length = end - begin;
        auto rank = [&](const NodeKey& node, const NodeRecord& source) {
          return std::tuple(
              -static_cast<int64_t>(source.reference_depth()),
              std::find(sources.begin(), sources.end(), node) != sources.end());
        };
        if (length > best.length ||
            (length == best.length && best.record != nullptr &&
             rank(place.node, *it->second) > rank(best.node, *best.record)))
          best = {begin, length, from, place.node, &*it->second};
      }
      if (best.length >= kMinRunTokens) {
        if (auto source = source_of(best.node, *best.record)) {
          auto* run = record.add_reference_runs();
          run->set_token(best.begin);
          run->set_num_tokens(best.length);
          run->set_reference(*source);
          run->set_source_token(best.source_token);
          done = i = best.begin + best.length;
          continue;
        }
      }
      ++i;
    }
  }
  // Each referenced chunk costs a Get one more chunk to decode: not worth
  // it for a few tokens.
  uint64_t covered = copied;
  for (const auto& run : record.reference_runs()) covered += run.num_tokens();
  if (covered == 0 || covered * kMinCoveredPer < n * uint64_t{kCoveredOf}) {
    clear();
    return absl::OkStatus();
  }
  uint32_t depth = 0;
  for (const auto& reference : record.references())
    depth = std::max(depth, reference.record().reference_depth());
  record.set_reference_depth(depth + 1);
  return absl::OkStatus();
}

}  // namespace seqkv
