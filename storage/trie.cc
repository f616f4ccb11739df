#include "storage/trie.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <deque>

#include "absl/base/internal/endian.h"
#include "absl/strings/str_cat.h"

namespace seqkv {
namespace {

std::string TokenBytes(std::span<const int32_t> tokens) {
  return std::string(reinterpret_cast<const char*>(tokens.data()),
                     tokens.size() * sizeof(int32_t));
}

// Order tokens as unsigned so negative ids (never valid, but) sort sanely.
void AppendToken(std::string& out, int32_t token) {
  char buffer[4];
  absl::big_endian::Store32(buffer, static_cast<uint32_t>(token) ^ 0x80000000u);
  out.append(buffer, 4);
}

std::string ChildPrefix(const NodeKey& parent, int32_t first_token) {
  std::string prefix = parent.Bytes();
  AppendToken(prefix, first_token);
  return prefix;
}

bool SameTokens(const NodeRecord& record, std::span<const int32_t> tokens) {
  return record.tokens_size() == static_cast<int>(tokens.size()) &&
         std::equal(tokens.begin(), tokens.end(), record.tokens().begin());
}

}  // namespace

std::string ChildIndexKey(const NodeKey& parent, int32_t first_token,
                          const NodeKey& child) {
  std::string key = ChildPrefix(parent, first_token);
  child.AppendTo(key);
  return key;
}

absl::StatusOr<std::optional<NodeRecord>> Trie::ReadNode(
    const NodeKey& key) const {
  auto value = store_->Get(Column::kNodes, key.Bytes());
  if (!value.ok()) return value.status();
  if (!value->has_value()) return std::optional<NodeRecord>();
  NodeRecord record;
  if (!record.ParseFromString(**value))
    return absl::DataLossError(
        absl::StrCat("trie node ", key.Hex(), " is corrupt"));
  return std::optional<NodeRecord>(std::move(record));
}

absl::StatusOr<std::optional<TrieNode>> Trie::BestChild(
    const NodeKey& parent, std::span<const int32_t> tokens) const {
  const std::string prefix = ChildPrefix(parent, tokens[0]);
  auto it = store_->NewIterator(Column::kChildren);
  uint32_t best_length = 0;
  std::string best_key;
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    const rocksdb::Slice value = it->value();
    const size_t count =
        std::min(value.size() / sizeof(int32_t), tokens.size());
    uint32_t length = 0;
    while (length < count) {
      int32_t token;
      std::memcpy(&token, value.data() + length * sizeof(int32_t), 4);
      if (token != tokens[length]) break;
      ++length;
    }
    if (length > best_length) {
      best_length = length;
      best_key = it->key().ToString().substr(prefix.size());
    }
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scan children");
  if (best_length == 0) return std::optional<TrieNode>();
  if (best_key.size() != NodeKey::kSize)
    return absl::DataLossError("children index entry is corrupt");
  TrieNode node;
  node.key = NodeKey::FromBytes(best_key);
  auto record = ReadNode(node.key);
  if (!record.ok()) return record.status();
  if (!record->has_value())
    return absl::DataLossError(
        absl::StrCat("children index names missing node ", node.key.Hex()));
  node.record = std::move(**record);
  node.matched_tokens = best_length;
  return std::optional<TrieNode>(std::move(node));
}

absl::StatusOr<TrieMatch> Trie::Match(const NodeKey& root,
                                      std::span<const int32_t> tokens,
                                      uint32_t chunk_tokens) const {
  TrieMatch match;
  NodeKey parent = root;
  size_t position = 0;
  while (position < tokens.size()) {
    const auto rest = tokens.subspan(position);
    if (rest.size() >= chunk_tokens) {
      // The common case: a whole chunk, found by its key alone.
      const auto chunk = rest.first(chunk_tokens);
      NodeKey key = ChildKey(parent, chunk);
      auto record = ReadNode(key);
      if (!record.ok()) return record.status();
      if (record->has_value() && SameTokens(**record, chunk)) {
        match.nodes.push_back({key, std::move(**record), chunk_tokens});
        match.matched_tokens += chunk_tokens;
        parent = key;
        position += chunk_tokens;
        continue;
      }
    }
    auto child = BestChild(
        parent, rest.first(std::min<size_t>(rest.size(), chunk_tokens)));
    if (!child.ok()) return child.status();
    if (child->has_value()) {
      match.matched_tokens += (*child)->matched_tokens;
      match.nodes.push_back(std::move(**child));
    }
    break;
  }
  return match;
}

absl::StatusOr<PayloadBytes> Trie::ReadPayload(const NodeRecord& node) const {
  PayloadBytes bytes;
  if (node.payload_in_file()) {
    auto read = store_->payload_files().Read(node.payload_key());
    if (absl::IsNotFound(read.status()))
      return absl::DataLossError("a trie node's payload is missing");
    if (!read.ok()) return read.status();
    bytes = std::move(*read);
  } else {
    // With a checksum of its own, the payload skips RocksDB's CRC32C, which
    // Debian's portable build computes in software at about 1 GB/s.
    auto value = store_->Get(Column::kPayloads, node.payload_key(),
                             /*verify_checksums=*/!node.has_payload_checksum());
    if (!value.ok()) return value.status();
    if (!value->has_value())
      return absl::DataLossError("a trie node's payload is missing");
    bytes = PayloadBytes(std::move(**value));
  }
  const std::string_view view = bytes.view();
  if (node.has_payload_checksum() &&
      XXH3_64bits(view.data(), view.size()) != node.payload_checksum())
    return absl::DataLossError("a trie node's payload fails its checksum");
  return bytes;
}

absl::Status Trie::ReadPayloadInto(
    const NodeRecord& node, std::span<const std::span<char>> pieces) const {
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> hash(
      XXH3_createState(), &XXH3_freeState);
  if (!hash) return absl::ResourceExhaustedError("out of memory");
  XXH3_64bits_reset(hash.get());
  auto check = [&](std::span<const char> piece) {
    XXH3_64bits_update(hash.get(), piece.data(), piece.size());
  };
  if (node.payload_in_file()) {
    auto status =
        store_->payload_files().ReadInto(node.payload_key(), pieces, check);
    if (absl::IsNotFound(status))
      return absl::DataLossError("a trie node's payload is missing");
    if (!status.ok()) return status;
  } else {
    auto value = store_->Get(Column::kPayloads, node.payload_key(),
                             /*verify_checksums=*/!node.has_payload_checksum());
    if (!value.ok()) return value.status();
    if (!value->has_value())
      return absl::DataLossError("a trie node's payload is missing");
    std::string_view rest = **value;
    size_t expected = 0;
    for (std::span<char> piece : pieces) expected += piece.size();
    if (rest.size() != expected)
      return absl::DataLossError(absl::StrCat("a trie node's payload has ",
                                              rest.size(), " bytes, expected ",
                                              expected));
    for (std::span<char> piece : pieces) {
      std::memcpy(piece.data(), rest.data(), piece.size());
      rest.remove_prefix(piece.size());
      check(piece);
    }
  }
  if (node.has_payload_checksum() &&
      XXH3_64bits_digest(hash.get()) != node.payload_checksum())
    return absl::DataLossError("a trie node's payload fails its checksum");
  return absl::OkStatus();
}

absl::Status Trie::RecordVisits(std::span<const NodeVisits> visits) {
  if (visits.empty()) return absl::OkStatus();
  rocksdb::WriteBatch batch;
  for (const NodeVisits& node : visits)
    batch.Merge(store_->handle(Column::kNodeStats), node.key.Bytes(),
                EncodeNodeStats(node.visits, node.last_used_micros));
  return store_->WriteUnlogged(batch);
}

absl::Status Trie::ReadVisits(const NodeKey& key, uint64_t& visits,
                              int64_t& last_used_micros) const {
  auto value = store_->Get(Column::kNodeStats, key.Bytes());
  if (!value.ok()) return value.status();
  DecodeNodeStats(value->value_or(""), visits, last_used_micros);
  return absl::OkStatus();
}

absl::Status Trie::StagePayload(std::string_view bytes, NodeRecord& node) {
  node.set_payload_checksum(XXH3_64bits(bytes.data(), bytes.size()));
  const uint64_t file_min_bytes = store_->payload_file_min_bytes();
  node.set_payload_in_file(file_min_bytes > 0 &&
                           bytes.size() >= file_min_bytes);
  if (node.payload_in_file())
    return store_->payload_files().Write(node.payload_key(), bytes);
  return store_->Put(Column::kPayloads, node.payload_key(), bytes);
}

void Trie::DiscardPayloads(std::span<const PendingNode> nodes) {
  // Best effort: an orphan payload is invisible and costs only space (the
  // next start sweeps orphan files).
  rocksdb::WriteBatch batch;
  for (const PendingNode& node : nodes) {
    if (node.record.payload_in_file())
      store_->payload_files().Remove(node.record.payload_key()).IgnoreError();
    else
      batch.Delete(store_->handle(Column::kPayloads),
                   node.record.payload_key());
  }
  if (batch.Count() > 0) store_->Write(batch, /*durable=*/false).IgnoreError();
}

absl::StatusOr<CommitResult> Trie::Commit(std::span<const PendingNode> nodes,
                                          const CommitHook& finalize) {
  CommitResult result;
  rocksdb::WriteBatch batch;
  std::vector<PendingNode> raced;
  std::string value;
  for (const PendingNode& node : nodes) {
    auto existing = ReadNode(node.key);
    if (!existing.ok()) return existing.status();
    if (existing->has_value()) {
      raced.push_back(node);
      result.raced_keys.insert(node.key);
      continue;
    }
    const std::string key = node.key.Bytes();
    node.record.SerializeToString(&value);
    batch.Put(store_->handle(Column::kNodes), key, value);
    const auto tokens = node.record.tokens();
    batch.Put(store_->handle(Column::kChildren),
              ChildIndexKey(NodeKey::FromBytes(node.record.parent_key()),
                            tokens.empty() ? 0 : tokens[0], node.key),
              TokenBytes({tokens.data(), static_cast<size_t>(tokens.size())}));
    batch.Merge(store_->handle(Column::kNodeStats), key,
                EncodeNodeStats(0, node.record.created_unix_micros()));
    ++result.added;
    result.bytes_stored_added += node.record.bytes_stored();
    result.bytes_logical_added += node.record.bytes_logical();
  }
  result.raced = static_cast<uint32_t>(raced.size());
  if (finalize) {
    if (auto status = finalize(result, batch); !status.ok()) return status;
  }
  if (auto status = store_->Write(batch, /*durable=*/true); !status.ok())
    return status;
  DiscardPayloads(raced);
  return result;
}

void Trie::RemoveNode(const NodeKey& key, const NodeRecord& record,
                      NodeRemovals& removals) const {
  rocksdb::WriteBatch& batch = removals.batch;
  const std::string key_bytes = key.Bytes();
  batch.Delete(store_->handle(Column::kNodes), key_bytes);
  batch.Delete(store_->handle(Column::kNodeStats), key_bytes);
  if (record.payload_in_file())
    removals.payload_files.push_back(record.payload_key());
  else
    batch.Delete(store_->handle(Column::kPayloads), record.payload_key());
  batch.Delete(
      store_->handle(Column::kChildren),
      ChildIndexKey(NodeKey::FromBytes(record.parent_key()),
                    record.tokens().empty() ? 0 : record.tokens(0), key));
}

absl::StatusOr<SubtreeRemoval> Trie::RemoveSubtree(
    const NodeKey& root, std::span<const int32_t> tokens, uint32_t chunk_tokens,
    NodeRemovals& removals) {
  SubtreeRemoval removal;
  std::deque<NodeKey> frontier;
  if (tokens.empty()) {
    frontier.push_back(root);
  } else {
    auto match = Match(root, tokens, chunk_tokens);
    if (!match.ok()) return match.status();
    // Only a prefix that ends exactly at a node's end names a subtree.
    if (match->matched_tokens != tokens.size() ||
        match->nodes.back().matched_tokens !=
            static_cast<uint32_t>(match->nodes.back().record.tokens_size()))
      return removal;
    frontier.push_back(match->nodes.back().key);
    const TrieNode& top = match->nodes.back();
    RemoveNode(top.key, top.record, removals);
    removal.keys.push_back(top.key);
    ++removal.chunks;
    removal.bytes_stored += top.record.bytes_stored();
    removal.bytes_logical += top.record.bytes_logical();
  }
  while (!frontier.empty()) {
    const std::string prefix = frontier.front().Bytes();
    frontier.pop_front();
    auto it = store_->NewIterator(Column::kChildren);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      const std::string child_bytes =
          it->key().ToString().substr(NodeKey::kSize + 4);
      if (child_bytes.size() != NodeKey::kSize)
        return absl::DataLossError("children index entry is corrupt");
      const NodeKey child = NodeKey::FromBytes(child_bytes);
      auto record = ReadNode(child);
      if (!record.ok()) return record.status();
      if (!record->has_value()) {
        removals.batch.Delete(store_->handle(Column::kChildren), it->key());
        continue;
      }
      RemoveNode(child, **record, removals);
      removal.keys.push_back(child);
      ++removal.chunks;
      removal.bytes_stored += (*record)->bytes_stored();
      removal.bytes_logical += (*record)->bytes_logical();
      frontier.push_back(child);
    }
    if (!it->status().ok()) return FromRocks(it->status(), "scan children");
  }
  return removal;
}

absl::Status Trie::CommitRemovals(NodeRemovals& removals) {
  if (auto status = store_->Write(removals.batch, /*durable=*/true);
      !status.ok())
    return status;
  // A file that fails to go is an orphan the next start deletes.
  for (const std::string& key : removals.payload_files)
    store_->payload_files().Remove(key).IgnoreError();
  removals.batch.Clear();
  removals.payload_files.clear();
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Trie::SweepOrphanPayloadFiles() {
  const PayloadFiles& files = store_->payload_files();
  std::vector<std::string> keys;
  if (auto status =
          files.ForEach([&](std::string_view key) { keys.emplace_back(key); });
      !status.ok())
    return status;
  uint64_t removed = 0;
  for (const std::string& key : keys) {
    // A payload key starts with the key of the node it was written for.
    if (key.size() >= NodeKey::kSize) {
      auto record = ReadNode(NodeKey::FromBytes(key));
      if (!record.ok()) return record.status();
      if (record->has_value() && (*record)->payload_in_file() &&
          (*record)->payload_key() == key)
        continue;
    }
    if (auto status = files.Remove(key); !status.ok()) return status;
    ++removed;
  }
  return removed;
}

}  // namespace seqkv
