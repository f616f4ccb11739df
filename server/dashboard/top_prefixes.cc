#include "server/dashboard/top_prefixes.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace seqkv {
namespace {

// Orders by visits, then recency, then key, so reports are deterministic.
bool Before(const PrefixVisits& a, const PrefixVisits& b) {
  return std::tie(a.visits, a.last_used_micros, b.key.high, b.key.low) >
         std::tie(b.visits, b.last_used_micros, a.key.high, a.key.low);
}

}  // namespace

absl::StatusOr<TopPrefixes> FindTopPrefixes(const Trie& trie,
                                            const std::string& name_space,
                                            size_t top) {
  if (top == 0 || top > kMaxTopPrefixes)
    return absl::InvalidArgumentError(
        absl::StrCat("top must be in [1, ", kMaxTopPrefixes, "], got ", top));
  TopPrefixes result;
  // A heap whose front is the weakest entry of the list so far.
  std::vector<PrefixVisits>& heap = result.prefixes;
  heap.reserve(top + 1);
  absl::Status failed;
  auto scanned = trie.ForEachNodeStats(
      [&](const NodeKey& key, uint64_t visits, int64_t last_used_micros) {
        ++result.nodes_scanned;
        if (visits == 0) return true;
        PrefixVisits candidate;
        candidate.key = key;
        candidate.visits = visits;
        candidate.last_used_micros = last_used_micros;
        if (heap.size() == top && !Before(candidate, heap.front())) return true;
        auto record = trie.ReadNode(key);
        if (!record.ok()) {
          failed = record.status();
          return false;
        }
        // A visit counted while the node was being removed leaves stats behind.
        if (!record->has_value()) return true;
        candidate.record = std::move(**record);
        if (!name_space.empty() && candidate.record.namespace_() != name_space)
          return true;
        heap.push_back(std::move(candidate));
        std::push_heap(heap.begin(), heap.end(), Before);
        if (heap.size() > top) {
          std::pop_heap(heap.begin(), heap.end(), Before);
          heap.pop_back();
        }
        return true;
      });
  if (!failed.ok()) return failed;
  if (!scanned.ok()) return scanned;
  std::sort(heap.begin(), heap.end(), Before);
  return result;
}

}  // namespace seqkv
