// What the cluster places: the subtree of a prompt's first `prefix_chunks`
// whole chunks. Every request about a prompt (Lookup, Get, Put) goes to the
// owner of that key, so a prompt's Lookup and Get each cost one call to one
// node, and a node holds whole subtrees: the trie it serves needs no
// chunk from another node.
//
// Prompts that share fewer than `prefix_chunks` chunks (a system prompt
// every conversation starts with) land on different nodes, each of which
// then stores that shared head once: the hottest, shallowest chunks end up
// on every node, which is the replication a fleet's system prompts want,
// while the subtrees below them (most of the bytes) spread evenly. A
// prompt shorter than `prefix_chunks` whole chunks is placed by the chunks
// it has. See docs/SCALE.md for the trade-off of the depth.
#ifndef SEQKV_CLUSTER_PLACEMENT_H_
#define SEQKV_CLUSTER_PLACEMENT_H_

#include <cstdint>
#include <span>
#include <string_view>

#include "absl/status/statusor.h"

namespace seqkv::cluster {

struct PlacementOptions {
  // Whole chunks of a prompt's head that choose its owner.
  uint32_t prefix_chunks = 2;
  // Hot heads are stored on this many owners (the first in rendezvous
  // order and the next ones), so that losing one keeps them hits. The
  // members' own --replicas_hot (Member::replicas_hot) may ask for more:
  // MemberView::ReplicasHot.
  uint32_t replicas_hot = 1;
  // A head is hot while its owner's trie estimates that at least
  // `hot_lookups` of every `hot_window` lookups of the namespace there pass
  // through it: the P̂ of the head's deepest stored chunk (the server's
  // decayed visit counts, server/prefix_estimator.h), which a Lookup
  // reports as head_probability, is at least HotProbability().
  uint32_t hot_lookups = 8;
  uint32_t hot_window = 1024;

  double HotProbability() const {
    return static_cast<double>(hot_lookups) / hot_window;
  }
};

// The cluster's config record: {"placement_chunks": N (1-64),
// "replicas_hot": R (1-16), "hot_lookups": L (1-1e6), "hot_window": W
// (1-1e7)}; INVALID_ARGUMENT otherwise. Missing fields keep their defaults.
absl::StatusOr<PlacementOptions> ParsePlacementConfig(std::string_view json);

// The placement key of `tokens` for `model` in `name_space`, whose chunks
// are `chunk_tokens` long.
uint64_t PlacementKey(std::string_view model, std::string_view name_space,
                      std::span<const int32_t> tokens, uint32_t chunk_tokens,
                      const PlacementOptions& options);

}  // namespace seqkv::cluster

#endif  // SEQKV_CLUSTER_PLACEMENT_H_
