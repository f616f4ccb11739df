#include "server/content_index.h"

#include <algorithm>
#include <string>

#include "server/stored_chunk.h"
#include "xxhash.h"

namespace seqkv {

uint64_t ContentIndex::Scope(std::string_view name_space,
                             std::string_view model) {
  std::string scope(name_space);
  scope.push_back('\0');
  scope.append(model);
  return XXH3_64bits(scope.data(), scope.size());
}

uint64_t ContentIndex::WindowHash(uint64_t scope,
                                  std::span<const int32_t> window) {
  return XXH3_64bits_withSeed(window.data(), window.size_bytes(), scope);
}

void ContentIndex::Add(const NodeKey& key, const NodeRecord& record) {
  if (record.tokens_only() || record.reference_depth() >= kMaxReferenceDepth ||
      record.tokens_size() < static_cast<int>(kWindowTokens))
    return;
  const uint64_t scope = Scope(record.namespace_(), record.model());
  const std::span<const int32_t> tokens(record.tokens().data(),
                                        record.tokens_size());
  const size_t windows = tokens.size() - kWindowTokens + 1;
  std::vector<uint64_t> all(windows);
  for (size_t t = 0; t < windows; ++t)
    all[t] = WindowHash(scope, tokens.subspan(t, kWindowTokens));
  // Winnowing: the least hash of every kWinnow consecutive windows (the
  // rightmost of equal ones), and the first window.
  std::vector<uint64_t> hashes = {all[0]};
  std::vector<uint32_t> starts = {0};
  const size_t span = std::min<size_t>(kWinnow, windows);
  for (size_t first = 0; first + span <= windows; ++first) {
    size_t least = first;
    for (size_t t = first + 1; t < first + span; ++t)
      if (all[t] <= all[least]) least = t;
    if (starts.back() != least) {
      hashes.push_back(all[least]);
      starts.push_back(static_cast<uint32_t>(least));
    }
  }
  absl::MutexLock lock(&mutex_);
  auto [it, added] = windows_of_.try_emplace(key);
  if (!added) return;  // indexed already
  for (size_t i = 0; i < hashes.size(); ++i)
    places_[hashes[i]].push_back({key, starts[i]});
  count_ += hashes.size();
  it->second = std::move(hashes);
}

void ContentIndex::Remove(const NodeKey& key) {
  absl::MutexLock lock(&mutex_);
  auto it = windows_of_.find(key);
  if (it == windows_of_.end()) return;
  for (uint64_t hash : it->second) {
    auto found = places_.find(hash);
    if (found == places_.end()) continue;
    std::vector<Place>& places = found->second;
    places.erase(std::remove_if(places.begin(), places.end(),
                                [&](const Place& p) { return p.node == key; }),
                 places.end());
    if (places.empty()) places_.erase(found);
  }
  count_ -= it->second.size();
  windows_of_.erase(it);
}

std::vector<ContentIndex::Place> ContentIndex::Find(uint64_t hash,
                                                    size_t limit) const {
  absl::MutexLock lock(&mutex_);
  auto it = places_.find(hash);
  if (it == places_.end()) return {};
  // The latest first: a chunk stored recently is likelier still stored
  // when the Put commits.
  std::vector<Place> found;
  for (auto p = it->second.rbegin();
       p != it->second.rend() && found.size() < limit; ++p)
    found.push_back(*p);
  return found;
}

size_t ContentIndex::windows() const {
  absl::MutexLock lock(&mutex_);
  return count_;
}

}  // namespace seqkv
