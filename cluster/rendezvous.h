// Rendezvous (highest random weight) hashing: every client ranks the
// members for a key the same way with no coordination, and a member joining
// or leaving moves only the keys it gains or held.
//
// Weighted by capacity (the logarithmic method: score = w / -ln(u), u the
// key-and-member hash in (0, 1)), so a member with twice the capacity owns
// twice the keys. When any member's capacity is unlimited (0), all weigh
// the same.
#ifndef SEQKV_CLUSTER_RENDEZVOUS_H_
#define SEQKV_CLUSTER_RENDEZVOUS_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "cluster/member.h"

namespace seqkv::cluster {

// The score of member `id` of weight `weight` (> 0) for `key`.
double RendezvousScore(uint64_t key, std::string_view id, double weight);

// Indices of `members`, best owner of `key` first: the best `limit` of
// them (all when 0). O(members) hashes, then a partial sort.
std::vector<size_t> RankMembers(uint64_t key, std::span<const Member> members,
                                size_t limit = 0);

}  // namespace seqkv::cluster

#endif  // SEQKV_CLUSTER_RENDEZVOUS_H_
