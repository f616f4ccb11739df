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

absl::StatusOr<TopPrefixes> FindTopPrefixes(const KvStore& store,
                                            const std::string& name_space,
                                            size_t top) {
  if (top == 0 || top > kMaxTopPrefixes)
    return absl::InvalidArgumentError(
        absl::StrCat("top must be in [1, ", kMaxTopPrefixes, "], got ", top));
  TopPrefixes result;
  // A heap whose front is the weakest entry of the list so far.
  std::vector<PrefixVisits>& heap = result.prefixes;
  heap.reserve(top + 1);
  auto it = store.NewIterator(Column::kNodeStats);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    ++result.nodes_scanned;
    if (it->key().size() != NodeKey::kSize) continue;
    PrefixVisits candidate;
    DecodeNodeStats(std::string_view(it->value().data(), it->value().size()),
                    candidate.visits, candidate.last_used_micros);
    if (candidate.visits == 0) continue;
    candidate.key = NodeKey::FromBytes(
        std::string_view(it->key().data(), it->key().size()));
    if (heap.size() == top && !Before(candidate, heap.front())) continue;
    auto value = store.Get(
        Column::kNodes, std::string_view(it->key().data(), it->key().size()));
    if (!value.ok()) return value.status();
    // A visit counted while the node was being removed leaves stats behind.
    if (!value->has_value()) continue;
    if (!candidate.record.ParseFromString(**value))
      return absl::DataLossError(
          absl::StrCat("trie node ", candidate.key.Hex(), " is corrupt"));
    if (!name_space.empty() && candidate.record.namespace_() != name_space)
      continue;
    heap.push_back(std::move(candidate));
    std::push_heap(heap.begin(), heap.end(), Before);
    if (heap.size() > top) {
      std::pop_heap(heap.begin(), heap.end(), Before);
      heap.pop_back();
    }
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scan node stats");
  std::sort(heap.begin(), heap.end(), Before);
  return result;
}

}  // namespace seqkv
