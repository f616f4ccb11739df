#include "cluster/rendezvous.h"

#include <xxhash.h>

#include <algorithm>
#include <cmath>

namespace seqkv::cluster {

double RendezvousScore(uint64_t key, std::string_view id, double weight) {
  const uint64_t hash = XXH3_64bits_withSeed(id.data(), id.size(), key);
  // 53 random bits, centred in their interval: u in (0, 1), never 0 or 1.
  const double u = (static_cast<double>(hash >> 11) + 0.5) * 0x1.0p-53;
  return weight / -std::log(u);
}

std::vector<size_t> RankMembers(uint64_t key, std::span<const Member> members,
                                size_t limit) {
  bool weighted = !members.empty();
  for (const Member& member : members)
    if (member.capacity_bytes == 0) weighted = false;
  std::vector<std::pair<double, size_t>> scored;
  scored.reserve(members.size());
  for (size_t i = 0; i < members.size(); ++i)
    scored.emplace_back(
        RendezvousScore(
            key, members[i].id,
            weighted ? static_cast<double>(members[i].capacity_bytes) : 1.0),
        i);
  // Ties (never in practice) break by id, so every client agrees.
  const size_t keep =
      limit == 0 ? scored.size() : std::min(limit, scored.size());
  std::partial_sort(scored.begin(), scored.begin() + keep, scored.end(),
                    [&](const auto& a, const auto& b) {
                      if (a.first != b.first) return a.first > b.first;
                      return members[a.second].id < members[b.second].id;
                    });
  scored.resize(keep);
  std::vector<size_t> order;
  order.reserve(scored.size());
  for (const auto& [score, index] : scored) order.push_back(index);
  return order;
}

}  // namespace seqkv::cluster
