#include "server/eviction_index.h"

namespace seqkv {

absl::Status EvictionIndex::Load(const Trie& trie) {
  KvStore* store = trie.store();
  auto it = store->NewIterator(Column::kNodes);
  absl::MutexLock lock(&mutex_);
  nodes_.clear();
  leaves_.clear();
  NodeRecord record;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() != NodeKey::kSize ||
        !record.ParseFromArray(it->value().data(),
                               static_cast<int>(it->value().size())))
      return absl::DataLossError("a trie node record is corrupt");
    const NodeKey key = NodeKey::FromBytes(
        std::string_view(it->key().data(), it->key().size()));
    uint64_t visits = 0;
    int64_t last_used = 0;
    if (auto status = trie.ReadVisits(key, visits, last_used); !status.ok())
      return status;
    AddLocked(key, {NodeKey::FromBytes(record.parent_key()),
                    record.namespace_(), last_used, 0});
  }
  return FromRocks(it->status(), "load eviction index");
}

void EvictionIndex::AddLocked(const NodeKey& key, Entry entry) {
  auto [it, inserted] = nodes_.try_emplace(key, entry);
  if (!inserted) {
    // Known already (children counted before it arrived during Load).
    entry.children = it->second.children;
    it->second = entry;
  }
  if (it->second.children == 0)
    leaves_[entry.name_space].insert(LeafOf(key, it->second));
  if (auto parent = nodes_.find(entry.parent); parent != nodes_.end()) {
    if (parent->second.children++ == 0)
      leaves_[parent->second.name_space].erase(
          LeafOf(parent->first, parent->second));
  } else {
    // The parent is a root, or not loaded yet: remember the child count.
    Entry placeholder;
    placeholder.children = 1;
    placeholder.last_used = INT64_MIN;
    nodes_.try_emplace(entry.parent, placeholder);
  }
}

void EvictionIndex::Add(const NodeKey& key, const NodeRecord& record,
                        int64_t now_micros) {
  absl::MutexLock lock(&mutex_);
  AddLocked(key, {NodeKey::FromBytes(record.parent_key()), record.namespace_(),
                  now_micros, 0});
}

void EvictionIndex::Touch(std::span<const TrieNode> nodes, int64_t now_micros) {
  absl::MutexLock lock(&mutex_);
  for (const TrieNode& node : nodes) {
    auto it = nodes_.find(node.key);
    if (it == nodes_.end()) continue;
    Entry& entry = it->second;
    if (entry.children == 0) {
      auto& leaves = leaves_[entry.name_space];
      leaves.erase(LeafOf(it->first, entry));
      entry.last_used = now_micros;
      leaves.insert(LeafOf(it->first, entry));
    } else {
      entry.last_used = now_micros;
    }
  }
}

void EvictionIndex::Remove(const NodeKey& key) {
  absl::MutexLock lock(&mutex_);
  auto it = nodes_.find(key);
  if (it == nodes_.end()) return;
  const Entry entry = it->second;
  leaves_[entry.name_space].erase(LeafOf(key, entry));
  nodes_.erase(it);
  if (auto parent = nodes_.find(entry.parent); parent != nodes_.end()) {
    if (--parent->second.children == 0) {
      if (parent->second.last_used == INT64_MIN) {
        nodes_.erase(parent);  // a root placeholder
      } else {
        leaves_[parent->second.name_space].insert(
            LeafOf(parent->first, parent->second));
      }
    }
  }
}

std::optional<NodeKey> EvictionIndex::OldestLeaf(
    const std::string& name_space) const {
  absl::MutexLock lock(&mutex_);
  auto it = leaves_.find(name_space);
  if (it == leaves_.end() || it->second.empty()) return std::nullopt;
  const auto& [time, key] = *it->second.begin();
  return NodeKey{key.first, key.second};
}

size_t EvictionIndex::size() const {
  absl::MutexLock lock(&mutex_);
  return nodes_.size();
}

}  // namespace seqkv
