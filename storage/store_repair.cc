#include "storage/store_repair.h"

#include <map>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "storage/trie.h"

namespace seqkv {
namespace {

using NodeMap = absl::flat_hash_map<NodeKey, NodeRecord>;

// Reads every node record; drops those that do not parse.
absl::StatusOr<NodeMap> ReadNodes(KvStore& store, RepairReport& report) {
  NodeMap nodes;
  WriteBatch unreadable(store);
  unreadable.MarkFreesSpace();
  auto it = store.NewIterator(Column::kNodes);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    ++report.nodes_checked;
    const std::string_view key(it->key().data(), it->key().size());
    NodeRecord record;
    if (key.size() != NodeKey::kSize ||
        !record.ParseFromArray(it->value().data(),
                               static_cast<int>(it->value().size()))) {
      unreadable.Delete(Column::kNodes, key);
      ++report.records_unreadable;
      continue;
    }
    nodes.emplace(NodeKey::FromBytes(key), std::move(record));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "read node records");
  if (unreadable.Count() > 0)
    if (auto status = store.Write(unreadable, /*durable=*/true); !status.ok())
      return status;
  return nodes;
}

// Whether the payload of `record` reads back intact, with the payloads it
// was coded against, and theirs (the records of referenced chunks are
// copies kept in the referrer's record).
bool DecodableFromPayloads(const Trie& trie, const NodeRecord& record) {
  if (record.tokens_only()) return true;
  if (!trie.ReadPayload(record).ok()) return false;
  for (const auto& reference : record.references())
    if (!DecodableFromPayloads(trie, reference.record())) return false;
  return true;
}

// A chunk can be served when it decodes from its payloads and the chunks
// before it are stored.
bool Servable(const Trie& trie, const NodeMap& nodes, const NodeKey& key,
              const NodeRecord& record,
              const absl::flat_hash_set<NodeKey>& removed) {
  if (record.depth() > 0) {
    const NodeKey parent = NodeKey::FromBytes(record.parent_key());
    if (!nodes.contains(parent) || removed.contains(parent)) return false;
  }
  return DecodableFromPayloads(trie, record);
}

}  // namespace

std::string RepairReport::Describe() const {
  return absl::StrCat(
      "checked ", nodes_checked, " chunk records\n", "removed ",
      records_unreadable, " unreadable chunk records\n", "removed ",
      nodes_removed,
      " chunks whose payload, a payload they were coded against, or parent "
      "chunk was lost, with the chunks below them\n",
      "rewrote ", reference_records_rewritten,
      " reference counts of payloads chunks are coded against\n", "removed ",
      index_entries_removed,
      " index and stats entries of chunks that are gone\n", "removed ",
      payloads_removed, " payloads no chunk names or references\n",
      "recounted the usage of ", usage_recounted, " namespaces\n");
}

absl::StatusOr<RepairReport> RepairStore(const KvStoreOptions& options) {
  RepairReport report;
  if (auto status = KvStore::Repair(options); !status.ok()) return status;
  KvStoreOptions open_options = options;
  open_options.reserved_disk_bytes = 0;  // a repair mostly deletes
  auto opened = KvStore::Open(open_options);
  if (!opened.ok()) return opened.status();
  KvStore& store = **opened;
  if (const std::string damage = store.damage(); !damage.empty())
    return absl::DataLossError(
        absl::StrCat("still damaged after RocksDB's repair: ", damage));
  Trie trie(&store);
  if (auto status = trie.Load(); !status.ok()) return status;
  auto nodes = ReadNodes(store, report);
  if (!nodes.ok()) return nodes.status();

  // Reference counts as `staying` has them; detached payloads nothing
  // needs any more go.
  std::map<std::string, Usage> detached_usage;
  auto rebuild_references = [&](const auto& staying_if) -> absl::Status {
    std::vector<const NodeRecord*> staying;
    for (const auto& [key, record] : *nodes)
      if (staying_if(key)) staying.push_back(&record);
    WriteBatch references(store);
    references.MarkFreesSpace();
    std::vector<std::string> detached_files;
    auto rebuilt =
        trie.RebuildPayloadReferences(staying, references, detached_files);
    if (!rebuilt.ok()) return rebuilt.status();
    if (auto status = store.Write(references, /*durable=*/true); !status.ok())
      return status;
    for (const std::string& key : detached_files)
      store.payload_files().Remove(key).IgnoreError();
    report.reference_records_rewritten += rebuilt->records_rewritten;
    report.payloads_removed += rebuilt->payloads_deleted;
    detached_usage = std::move(rebuilt->detached_usage);
    return absl::OkStatus();
  };
  // First, so that the removals below settle true counts: a payload whose
  // count was lost would otherwise go with its chunk while others are
  // coded against it.
  if (auto status = rebuild_references([](const NodeKey&) { return true; });
      !status.ok())
    return status;

  // Chunks that cannot be served go with everything below them; a removal
  // can orphan more (a child whose index entry was lost), so repeat.
  absl::flat_hash_set<NodeKey> removed;
  for (bool changed = true; changed;) {
    changed = false;
    for (const auto& [key, record] : *nodes) {
      if (removed.contains(key) || Servable(trie, *nodes, key, record, removed))
        continue;
      NodeRemovals removals = trie.StartRemovals();
      auto removal = trie.RemoveSubtreeOf(key, record.payload_key(), removals);
      if (!removal.ok()) return removal.status();
      if (auto status = trie.CommitRemovals(removals); !status.ok())
        return status;
      removed.insert(key);
      for (const NodeKey& gone : removal->keys) removed.insert(gone);
      changed = true;
    }
  }
  report.nodes_removed = removed.size();

  if (auto status = rebuild_references(
          [&](const NodeKey& key) { return !removed.contains(key); });
      !status.ok())
    return status;

  // Index and stats entries of chunks that are gone; the index entries of
  // those that stay are written again, in case theirs were lost.
  WriteBatch index(store);
  index.MarkFreesSpace();
  auto survives = [&](std::string_view key_bytes) {
    if (key_bytes.size() != NodeKey::kSize) return false;
    const NodeKey key = NodeKey::FromBytes(key_bytes);
    return nodes->contains(key) && !removed.contains(key);
  };
  if (auto status =
          store.Scan(Column::kChildren, "",
                     [&](std::string_view key, std::string_view) {
                       if (key.size() != 2 * NodeKey::kSize + 4 ||
                           !survives(key.substr(NodeKey::kSize + 4))) {
                         index.Delete(Column::kChildren, key);
                         ++report.index_entries_removed;
                       }
                       return true;
                     });
      !status.ok())
    return status;
  if (auto status = store.Scan(Column::kNodeStats, "",
                               [&](std::string_view key, std::string_view) {
                                 if (!survives(key)) {
                                   index.Delete(Column::kNodeStats, key);
                                   ++report.index_entries_removed;
                                 }
                                 return true;
                               });
      !status.ok())
    return status;
  // Detached payloads stay charged to their namespaces.
  std::map<std::string, Usage> usage = detached_usage;
  absl::flat_hash_set<std::string> payload_keys;
  for (const auto& [key, record] : *nodes) {
    if (removed.contains(key)) continue;
    const auto& tokens = record.tokens();
    index.Put(Column::kChildren,
              ChildIndexKey(NodeKey::FromBytes(record.parent_key()),
                            tokens.empty() ? 0 : tokens[0], key),
              std::string_view(reinterpret_cast<const char*>(tokens.data()),
                               tokens.size() * sizeof(int32_t)));
    usage[record.namespace_()] += NodeUsage(record);
    if (!record.payload_in_file() && !record.tokens_only())
      payload_keys.insert(record.payload_key());
  }

  // Payloads no chunk names.
  auto files = trie.SweepOrphanPayloadFiles();
  if (!files.ok()) return files.status();
  auto staged = trie.SweepStagedPayloads();
  if (!staged.ok()) return staged.status();
  report.payloads_removed += *files + *staged;
  absl::Status referenced_error;
  if (auto status = store.Scan(Column::kPayloads, "",
                               [&](std::string_view key, std::string_view) {
                                 if (payload_keys.contains(std::string(key)))
                                   return true;
                                 // Kept for the chunks coded against it.
                                 auto referenced = trie.IsReferenced(key);
                                 if (!referenced.ok()) {
                                   referenced_error = referenced.status();
                                   return false;
                                 }
                                 if (!*referenced) {
                                   index.Delete(Column::kPayloads, key);
                                   ++report.payloads_removed;
                                 }
                                 return true;
                               });
      !status.ok())
    return status;
  if (!referenced_error.ok()) return referenced_error;

  // Usage as the chunks that stay add up.
  for (const auto& [name_space, now] : trie.usage().GetAll())
    usage.try_emplace(name_space);
  for (const auto& [name_space, target] : usage) {
    const Usage now = trie.usage().Get(name_space);
    if (now.chunks_stored == target.chunks_stored &&
        now.bytes_logical == target.bytes_logical &&
        now.bytes_stored == target.bytes_stored)
      continue;
    trie.usage().Stage(name_space,
                       Usage{target.chunks_stored - now.chunks_stored,
                             target.bytes_logical - now.bytes_logical,
                             target.bytes_stored - now.bytes_stored},
                       index);
    ++report.usage_recounted;
  }
  if (auto status = store.Write(index, /*durable=*/true); !status.ok())
    return status;
  return report;
}

}  // namespace seqkv
