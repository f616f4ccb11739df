#include "storage/trie.h"

#include <xxhash.h>
#if defined(__x86_64__)
// XXH3 of large buffers through the library's run-time dispatch (AVX2 or
// AVX-512 where the CPU has them; the same hashes).
#include <xxh_x86dispatch.h>
#endif

#include <algorithm>
#include <cstring>
#include <deque>
#include <set>

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

// Marks a payload staged in RocksDB until its node commits (meta column).
constexpr std::string_view kStagedPrefix = "staged/";

constexpr std::string_view kPayloadRefsPrefix = "payload_refs/";

std::string PayloadRefsKey(std::string_view payload_key) {
  return absl::StrCat(std::string(kPayloadRefsPrefix),
                      std::string(payload_key));
}

// Deletes the payload `record` names: in `batch`, or (a file) once the
// batch has committed.
void DeletePayload(const NodeRecord& record, WriteBatch& batch,
                   std::vector<std::string>& files) {
  if (record.tokens_only() || record.payload_key().empty()) return;
  if (record.payload_in_file())
    files.push_back(record.payload_key());
  else
    batch.Delete(Column::kPayloads, record.payload_key());
}

std::string StagedKey(std::string_view payload_key) {
  return absl::StrCat(std::string(kStagedPrefix), std::string(payload_key));
}

Usage Negated(Usage usage) {
  return {-usage.chunks_stored, -usage.bytes_logical, -usage.bytes_stored,
          -usage.bytes_models};
}

bool SameTokens(const NodeRecord& record, std::span<const int32_t> tokens) {
  return record.tokens_size() == static_cast<int>(tokens.size()) &&
         std::equal(tokens.begin(), tokens.end(), record.tokens().begin());
}

}  // namespace

Usage NodeUsage(const NodeRecord& record) {
  if (record.tokens_only()) return {};
  return {1, static_cast<int64_t>(record.bytes_logical()),
          static_cast<int64_t>(record.bytes_stored())};
}

PendingNode NewPendingNode(const NewChunk& chunk, int64_t now_micros) {
  PendingNode node;
  node.key = ChildKey(chunk.parent, chunk.tokens);
  std::string payload_key = node.key.Bytes();
  char id[8];
  absl::big_endian::Store64(id, chunk.put_id);
  payload_key.append(id, 8);
  NodeRecord& record = node.record;
  record.set_parent_key(chunk.parent.Bytes());
  record.mutable_tokens()->Add(chunk.tokens.begin(), chunk.tokens.end());
  record.set_depth(chunk.depth);
  record.set_first_position(chunk.first_position);
  record.set_payload_key(std::move(payload_key));
  record.set_codec(std::string(chunk.codec));
  record.set_payload_token_major(chunk.token_major);
  record.set_bytes_logical(chunk.bytes_logical);
  record.set_created_unix_micros(now_micros);
  record.set_namespace_(std::string(chunk.name_space));
  record.set_model(std::string(chunk.model));
  record.set_codec_state_version(chunk.codec_state_version);
  return node;
}

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
  uint32_t best_length = 0;
  std::string best_key;
  auto scanned = store_->Scan(
      Column::kChildren, prefix,
      [&](std::string_view key, std::string_view value) {
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
          best_key = key.substr(prefix.size());
        }
        return true;
      });
  if (!scanned.ok()) return scanned;
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
  if (node.tokens_only())
    return absl::FailedPreconditionError("the chunk is held as tokens only");
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

void Trie::StageVisits(std::span<const NodeVisits> visits,
                       WriteBatch& batch) const {
  for (const NodeVisits& node : visits)
    batch.Merge(Column::kNodeStats, node.key.Bytes(),
                EncodeNodeStats({node.visits, node.last_used_micros,
                                 node.log_lookup_visits}));
}

absl::Status Trie::RecordVisits(std::span<const NodeVisits> visits) {
  if (visits.empty()) return absl::OkStatus();
  WriteBatch batch(*store_);
  StageVisits(visits, batch);
  return store_->Write(batch, /*durable=*/false);
}

absl::Status Trie::ReadVisits(const NodeKey& key, uint64_t& visits,
                              int64_t& last_used_micros) const {
  auto value = store_->Get(Column::kNodeStats, key.Bytes());
  if (!value.ok()) return value.status();
  const NodeStats stats = DecodeNodeStats(value->value_or(""));
  visits = stats.visits;
  last_used_micros = stats.last_used_micros;
  return absl::OkStatus();
}

absl::Status Trie::ForEachNode(
    const std::function<void(const NodeKey& key, const NodeRecord& record,
                             const NodeStats& stats)>& visit) const {
  // Both columns are keyed by node key: walk them side by side rather than
  // reading each node's stats with a point lookup.
  auto it = store_->NewIterator(Column::kNodes);
  auto stats = store_->NewIterator(Column::kNodeStats);
  stats->SeekToFirst();
  NodeRecord record;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() != NodeKey::kSize ||
        !record.ParseFromArray(it->value().data(),
                               static_cast<int>(it->value().size())))
      return absl::DataLossError("a trie node record is corrupt");
    while (stats->Valid() && stats->key().compare(it->key()) < 0) stats->Next();
    NodeStats node_stats;
    if (stats->Valid() && stats->key() == it->key())
      node_stats = DecodeNodeStats(
          std::string_view(stats->value().data(), stats->value().size()));
    visit(NodeKey::FromBytes(
              std::string_view(it->key().data(), it->key().size())),
          record, node_stats);
  }
  if (!stats->status().ok())
    return FromRocks(stats->status(), "load node stats");
  return FromRocks(it->status(), "read the trie's nodes");
}

absl::Status Trie::ForEachNodeStats(
    const std::function<bool(const NodeKey& key, uint64_t visits,
                             int64_t last_used_micros)>& visit) const {
  return store_->Scan(Column::kNodeStats, "",
                      [&](std::string_view key, std::string_view value) {
                        if (key.size() != NodeKey::kSize) return true;
                        const NodeStats stats = DecodeNodeStats(value);
                        return visit(NodeKey::FromBytes(key), stats.visits,
                                     stats.last_used_micros);
                      });
}

absl::Status Trie::StagePayload(std::string_view bytes, NodeRecord& node) {
  node.set_bytes_stored(bytes.size());
  node.set_payload_checksum(XXH3_64bits(bytes.data(), bytes.size()));
  const uint64_t file_min_bytes = store_->payload_file_min_bytes();
  node.set_payload_in_file(file_min_bytes > 0 &&
                           bytes.size() >= file_min_bytes);
  if (node.payload_in_file()) {
    if (auto status = store_->CheckFreeSpace(bytes.size()); !status.ok())
      return status;
    return store_->payload_files().Write(node.payload_key(), bytes);
  }
  WriteBatch batch(*store_);
  batch.Put(Column::kPayloads, node.payload_key(), bytes);
  batch.Put(Column::kMeta, StagedKey(node.payload_key()), "");
  return store_->Write(batch, /*durable=*/false);
}

void Trie::DiscardPayloads(std::span<const PendingNode> nodes) {
  // Best effort: an orphan payload is invisible and costs only space (the
  // next start sweeps orphan files).
  WriteBatch batch(*store_);
  batch.MarkFreesSpace();
  for (const PendingNode& node : nodes) {
    if (node.record.payload_in_file()) {
      store_->payload_files().Remove(node.record.payload_key()).IgnoreError();
    } else {
      batch.Delete(Column::kPayloads, node.record.payload_key());
      batch.Delete(Column::kMeta, StagedKey(node.record.payload_key()));
    }
  }
  if (batch.Count() > 0) store_->Write(batch, /*durable=*/false).IgnoreError();
}

absl::StatusOr<CommitResult> Trie::Commit(std::span<const PendingNode> nodes,
                                          const CommitOptions& options) {
  CommitResult result;
  WriteBatch batch(*store_);
  std::vector<PendingNode> raced;
  // Payload files of nodes upgraded in place, deleted once committed.
  std::vector<std::string> replaced_files;
  Usage upgrade_delta;
  std::string value;
  std::vector<NodeRecord> released;
  std::vector<std::string> referenced;
  std::map<std::string, Usage> settled;
  for (const PendingNode& node : nodes) {
    auto existing = ReadNode(node.key);
    if (!existing.ok()) return existing.status();
    if (existing->has_value()) {
      const NodeRecord& stored = **existing;
      if (node.upgrades && (stored.tokens_only() || stored.lossy_tier() > 0) &&
          stored.payload_key() == *node.upgrades) {
        node.record.SerializeToString(&value);
        batch.Put(Column::kNodes, node.key.Bytes(), value);
        if (!node.record.payload_in_file())
          batch.Delete(Column::kMeta, StagedKey(node.record.payload_key()));
        if (auto status = CheckReferences(node.record, referenced);
            !status.ok())
          return status;
        if (!stored.tokens_only()) released.push_back(stored);
        upgrade_delta += NodeUsage(node.record);
        upgrade_delta += Negated(NodeUsage(stored));
        ++result.upgraded;
        result.bytes_stored_upgraded += node.record.bytes_stored();
        continue;
      }
      raced.push_back(node);
      result.raced_keys.insert(node.key);
      continue;
    }
    if (auto status = CheckReferences(node.record, referenced); !status.ok())
      return status;
    const std::string key = node.key.Bytes();
    node.record.SerializeToString(&value);
    batch.Put(Column::kNodes, key, value);
    const auto tokens = node.record.tokens();
    batch.Put(Column::kChildren,
              ChildIndexKey(NodeKey::FromBytes(node.record.parent_key()),
                            tokens.empty() ? 0 : tokens[0], node.key),
              TokenBytes({tokens.data(), static_cast<size_t>(tokens.size())}));
    batch.Merge(Column::kNodeStats, key,
                EncodeNodeStats(
                    {.visits = 0,
                     .last_used_micros = node.record.created_unix_micros()}));
    if (!node.record.payload_in_file())
      batch.Delete(Column::kMeta, StagedKey(node.record.payload_key()));
    ++result.added;
    result.bytes_stored_added += node.record.bytes_stored();
    result.bytes_logical_added += node.record.bytes_logical();
  }
  result.raced = static_cast<uint32_t>(raced.size());
  Usage delta{result.added, static_cast<int64_t>(result.bytes_logical_added),
              static_cast<int64_t>(result.bytes_stored_added)};
  delta += upgrade_delta;
  Usage owner_delta;
  const std::string owner =
      options.new_model ? options.new_model->owner() : std::string();
  if (options.new_model) {
    const int64_t model_bytes = static_cast<int64_t>(
        ModelRegistry::AddToBatch(*options.new_model, batch));
    // Only owned models are charged; the owner's usage is staged once.
    if (owner == options.name_space)
      delta.bytes_models += model_bytes;
    else if (!owner.empty())
      owner_delta.bytes_models = model_bytes;
  }
  const Usage used = usage_.Get(options.name_space);
  const uint64_t added =
      static_cast<uint64_t>(delta.bytes_stored + delta.bytes_models);
  if (options.quota_bytes > 0 &&
      static_cast<uint64_t>(std::max<int64_t>(0, used.charged_bytes())) +
              added >
          options.quota_bytes)
    return absl::ResourceExhaustedError(absl::StrCat(
        "namespace '", options.name_space,
        "' is over its quota: ", used.charged_bytes(), " bytes stored + ",
        added, " new > ", options.quota_bytes, options.quota_note));
  if (auto status =
          SettlePayloads(released, referenced, batch, replaced_files, settled);
      !status.ok())
    return status;
  settled[options.name_space] += delta;
  if (owner_delta.bytes_models != 0) settled[owner] += owner_delta;
  for (const auto& [ns, change] : settled) usage_.Stage(ns, change, batch);
  if (auto status = store_->Write(batch, /*durable=*/true); !status.ok())
    return status;
  for (const auto& [ns, change] : settled) usage_.Apply(ns, change);
  DiscardPayloads(raced);
  // A file that fails to go is an orphan the next start deletes.
  for (const std::string& key : replaced_files)
    store_->payload_files().Remove(key).IgnoreError();
  return result;
}

NodeRecord Trie::DropPayload(const NodeKey& key, const NodeRecord& record,
                             NodeRemovals& removals) const {
  NodeRecord kept = record;
  kept.set_tokens_only(true);
  kept.clear_payload_key();
  kept.set_bytes_stored(0);
  kept.clear_payload_checksum();
  kept.set_payload_in_file(false);
  kept.set_payload_token_major(false);
  if (record.tokens_only()) return kept;
  // Without a payload it needs none of the chunks it was coded against.
  kept.clear_references();
  kept.clear_reference_runs();
  kept.set_copied_tokens(0);
  WriteBatch& batch = removals.batch_;
  batch.Put(Column::kNodes, key.Bytes(), kept.SerializeAsString());
  removals.released_.push_back(record);
  removals.usage_deltas_[record.namespace_()] += Negated(NodeUsage(record));
  return kept;
}

absl::Status Trie::ReplacePayload(const NodeKey& key,
                                  std::string_view expected_payload_key,
                                  const NodeRecord& replacement) {
  const PayloadReplacement one{key, std::string(expected_payload_key),
                               replacement};
  auto replaced = ReplacePayloads({&one, 1});
  if (!replaced.ok()) return replaced.status();
  if (!(*replaced)[0])
    return absl::FailedPreconditionError(
        absl::StrCat("node ", key.Hex(), " changed meanwhile"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<bool>> Trie::ReplacePayloads(
    std::span<const PayloadReplacement> replacements) {
  std::vector<bool> replaced(replacements.size(), false);
  std::vector<NodeRecord> old(replacements.size());
  absl::flat_hash_set<NodeKey> seen;
  WriteBatch batch(*store_);
  // The usage records hold totals: one per namespace, after every change.
  std::map<std::string, Usage> deltas;
  std::vector<NodeRecord> released;
  std::vector<std::string> referenced, files;
  for (size_t i = 0; i < replacements.size(); ++i) {
    const PayloadReplacement& swap = replacements[i];
    if (!seen.insert(swap.key).second) continue;
    auto stored = ReadNode(swap.key);
    if (!stored.ok()) return stored.status();
    if (!stored->has_value() ||
        (*stored)->payload_key() != swap.expected_payload_key)
      continue;
    old[i] = std::move(**stored);
    const NodeRecord& was = old[i];
    const NodeRecord& now = swap.replacement;
    batch.Put(Column::kNodes, swap.key.Bytes(), now.SerializeAsString());
    if (!now.tokens_only() && !now.payload_in_file())
      batch.Delete(Column::kMeta, StagedKey(now.payload_key()));
    if (auto status = CheckReferences(now, referenced); !status.ok())
      return status;
    if (!was.tokens_only()) released.push_back(was);
    Usage& delta = deltas[was.namespace_()];
    delta += NodeUsage(now);
    delta += Negated(NodeUsage(was));
    replaced[i] = true;
  }
  if (deltas.empty()) return replaced;
  if (auto status = SettlePayloads(released, referenced, batch, files, deltas);
      !status.ok())
    return status;
  for (const auto& [ns, delta] : deltas) usage_.Stage(ns, delta, batch);
  if (auto status = store_->Write(batch, /*durable=*/true); !status.ok())
    return status;
  for (const auto& [ns, delta] : deltas) usage_.Apply(ns, delta);
  for (const std::string& key : files)
    store_->payload_files().Remove(key).IgnoreError();
  return replaced;
}

void Trie::RemoveNode(const NodeKey& key, const NodeRecord& record,
                      NodeRemovals& removals) const {
  WriteBatch& batch = removals.batch_;
  const std::string key_bytes = key.Bytes();
  batch.Delete(Column::kNodes, key_bytes);
  batch.Delete(Column::kNodeStats, key_bytes);
  if (!record.tokens_only()) removals.released_.push_back(record);
  batch.Delete(
      Column::kChildren,
      ChildIndexKey(NodeKey::FromBytes(record.parent_key()),
                    record.tokens().empty() ? 0 : record.tokens(0), key));
  removals.usage_deltas_[record.namespace_()] += Negated(NodeUsage(record));
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
    if (match->matched_tokens != tokens.size()) return removal;
    TrieNode& top = match->nodes.back();
    if (top.matched_tokens != static_cast<uint32_t>(top.record.tokens_size())) {
      // The match met a longer partial chunk that starts with the query's
      // last tokens; a sibling holding exactly those may be stored too.
      const NodeKey parent = match->nodes.size() > 1
                                 ? match->nodes[match->nodes.size() - 2].key
                                 : root;
      const auto tail = tokens.subspan(tokens.size() - top.matched_tokens);
      const NodeKey key = ChildKey(parent, tail);
      auto sibling = ReadNode(key);
      if (!sibling.ok()) return sibling.status();
      if (!sibling->has_value() ||
          !std::equal(tail.begin(), tail.end(), (*sibling)->tokens().begin(),
                      (*sibling)->tokens().end()))
        return removal;
      top = {key, **std::move(sibling), static_cast<uint32_t>(tail.size())};
    }
    frontier.push_back(top.key);
    RemoveNode(top.key, top.record, removals);
    removal.keys.push_back(top.key);
    ++removal.chunks;
    removal.bytes_stored += top.record.bytes_stored();
    removal.bytes_logical += top.record.bytes_logical();
  }
  if (auto status = RemoveDescendants(std::move(frontier), removals, removal);
      !status.ok())
    return status;
  return removal;
}

absl::StatusOr<SubtreeRemoval> Trie::RemoveSubtreeOf(
    const NodeKey& key, std::string_view payload_key, NodeRemovals& removals) {
  SubtreeRemoval removal;
  auto record = ReadNode(key);
  if (!record.ok()) return record.status();
  if (!record->has_value() || (*record)->payload_key() != payload_key)
    return removal;
  RemoveNode(key, **record, removals);
  removal.keys.push_back(key);
  ++removal.chunks;
  removal.bytes_stored += (*record)->bytes_stored();
  removal.bytes_logical += (*record)->bytes_logical();
  if (auto status = RemoveDescendants({key}, removals, removal); !status.ok())
    return status;
  return removal;
}

absl::Status Trie::RemoveDescendants(std::deque<NodeKey> frontier,
                                     NodeRemovals& removals,
                                     SubtreeRemoval& removal) {
  while (!frontier.empty()) {
    const std::string prefix = frontier.front().Bytes();
    frontier.pop_front();
    absl::Status failed;
    auto scanned = store_->Scan(
        Column::kChildren, prefix, [&](std::string_view key, std::string_view) {
          const std::string_view child_bytes = key.substr(NodeKey::kSize + 4);
          if (child_bytes.size() != NodeKey::kSize) {
            failed = absl::DataLossError("children index entry is corrupt");
            return false;
          }
          const NodeKey child = NodeKey::FromBytes(child_bytes);
          auto record = ReadNode(child);
          if (!record.ok()) {
            failed = record.status();
            return false;
          }
          if (!record->has_value()) {
            removals.batch_.Delete(Column::kChildren, key);
            return true;
          }
          RemoveNode(child, **record, removals);
          removal.keys.push_back(child);
          ++removal.chunks;
          removal.bytes_stored += (*record)->bytes_stored();
          removal.bytes_logical += (*record)->bytes_logical();
          frontier.push_back(child);
          return true;
        });
    if (!failed.ok()) return failed;
    if (!scanned.ok()) return scanned;
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Trie::IsReferenced(std::string_view payload_key) const {
  auto refs = store_->Get(Column::kMeta, PayloadRefsKey(payload_key));
  if (!refs.ok()) return refs.status();
  return refs->has_value();
}

absl::Status Trie::CheckReferences(const NodeRecord& record,
                                   std::vector<std::string>& referenced) const {
  for (const auto& reference : record.references()) {
    // Alive while its node names it, or while other chunks keep it.
    auto source = ReadNode(NodeKey::FromBytes(reference.node_key()));
    if (!source.ok()) return source.status();
    const std::string& payload_key = reference.record().payload_key();
    bool alive = source->has_value() && (*source)->payload_key() == payload_key;
    if (!alive) {
      auto kept = IsReferenced(payload_key);
      if (!kept.ok()) return kept.status();
      alive = *kept;
    }
    if (!alive)
      return absl::AbortedError(
          "a chunk the Put's chunk was coded against was removed meanwhile; "
          "retry the Put");
    referenced.push_back(payload_key);
  }
  return absl::OkStatus();
}

absl::Status Trie::SettlePayloads(
    std::span<const NodeRecord> released,
    std::span<const std::string> referenced, WriteBatch& batch,
    std::vector<std::string>& files,
    std::map<std::string, Usage>& usage_deltas) const {
  if (referenced.empty() && released.empty()) return absl::OkStatus();
  struct Refs {
    PayloadRefsRecord record;
    bool stored = false;  // a record is on disk
  };
  std::map<std::string, Refs> refs;
  auto load =
      [&](const std::string& key) -> absl::StatusOr<PayloadRefsRecord*> {
    auto it = refs.find(key);
    if (it != refs.end()) return &it->second.record;
    Refs loaded;
    auto stored = store_->Get(Column::kMeta, PayloadRefsKey(key));
    if (!stored.ok()) return stored.status();
    loaded.stored = stored->has_value();
    if (loaded.stored && !loaded.record.ParseFromString(**stored))
      return absl::DataLossError("a payload's reference record is corrupt");
    return &refs.emplace(key, std::move(loaded)).first->second.record;
  };
  for (const std::string& key : referenced) {
    auto record = load(key);
    if (!record.ok()) return record.status();
    (*record)->set_count((*record)->count() + 1);
  }
  // A payload that goes lets go of the payloads it was coded against; one
  // kept for its referrers keeps them too, until it goes.
  std::vector<std::string> let_go;
  for (const NodeRecord& node : released) {
    if (node.payload_key().empty()) continue;
    auto record = load(node.payload_key());
    if (!record.ok()) return record.status();
    if ((*record)->count() == 0) {
      DeletePayload(node, batch, files);
      for (const auto& reference : node.references())
        let_go.push_back(reference.record().payload_key());
      continue;
    }
    // Kept for its referrers, and still charged where it was.
    (*record)->set_detached(true);
    (*record)->set_payload_in_file(node.payload_in_file());
    (*record)->set_bytes_stored(node.bytes_stored());
    (*record)->set_namespace_(node.namespace_());
    (*record)->clear_holds();
    for (const auto& reference : node.references())
      (*record)->add_holds(reference.record().payload_key());
    usage_deltas[node.namespace_()].bytes_stored +=
        static_cast<int64_t>(node.bytes_stored());
  }
  while (!let_go.empty()) {
    const std::string key = std::move(let_go.back());
    let_go.pop_back();
    auto record = load(key);
    if (!record.ok()) return record.status();
    PayloadRefsRecord& refs_of = **record;
    if (refs_of.count() == 0) continue;  // not counted: nothing to undo
    refs_of.set_count(refs_of.count() - 1);
    if (refs_of.count() > 0 || !refs_of.detached()) continue;
    // Its last referrer went with its node gone: it goes too.
    NodeRecord payload;
    payload.set_payload_key(key);
    payload.set_payload_in_file(refs_of.payload_in_file());
    DeletePayload(payload, batch, files);
    usage_deltas[refs_of.namespace_()].bytes_stored -=
        static_cast<int64_t>(refs_of.bytes_stored());
    for (const std::string& held : refs_of.holds()) let_go.push_back(held);
    refs_of.Clear();
  }
  for (const auto& [key, refs_of] : refs) {
    if (refs_of.record.count() > 0)
      batch.Put(Column::kMeta, PayloadRefsKey(key),
                refs_of.record.SerializeAsString());
    else if (refs_of.stored)
      batch.Delete(Column::kMeta, PayloadRefsKey(key));
  }
  return absl::OkStatus();
}

absl::Status Trie::CommitRemovals(NodeRemovals& removals) {
  if (removals.empty()) return absl::OkStatus();
  // Removals go through on a full disk: they are how space comes back.
  removals.batch_.MarkFreesSpace();
  if (auto status =
          SettlePayloads(removals.released_, {}, removals.batch_,
                         removals.payload_files_, removals.usage_deltas_);
      !status.ok())
    return status;
  for (const auto& [name_space, delta] : removals.usage_deltas_)
    usage_.Stage(name_space, delta, removals.batch_);
  if (auto status = store_->Write(removals.batch_, /*durable=*/true);
      !status.ok())
    return status;
  for (const auto& [name_space, delta] : removals.usage_deltas_)
    usage_.Apply(name_space, delta);
  // A file that fails to go is an orphan the next start deletes.
  for (const std::string& key : removals.payload_files_)
    store_->payload_files().Remove(key).IgnoreError();
  removals.batch_.Clear();
  removals.payload_files_.clear();
  removals.usage_deltas_.clear();
  removals.released_.clear();
  return absl::OkStatus();
}

absl::StatusOr<Trie::ReferenceRebuild> Trie::RebuildPayloadReferences(
    std::span<const NodeRecord* const> nodes, WriteBatch& batch,
    std::vector<std::string>& files) const {
  ReferenceRebuild result;
  std::map<std::string, PayloadRefsRecord> detached;
  std::map<std::string, std::string> stored;  // payload key -> record bytes
  if (auto status = store_->Scan(
          Column::kMeta, kPayloadRefsPrefix,
          [&](std::string_view key, std::string_view value) {
            const std::string payload_key(
                key.substr(kPayloadRefsPrefix.size()));
            stored[payload_key] = std::string(value);
            PayloadRefsRecord record;
            // One that does not parse is rewritten from the chunks.
            if (record.ParseFromArray(value.data(),
                                      static_cast<int>(value.size())) &&
                record.detached())
              detached[payload_key] = std::move(record);
            return true;
          });
      !status.ok())
    return status;
  // Payloads the chunks name, and the records of the chunks they were coded
  // against (referrers keep copies, and those copies their sources'), from
  // which a detached payload whose record was lost is described again.
  std::set<std::string> named;
  std::map<std::string, const NodeRecord*> sources;
  std::vector<const NodeRecord*> pending(nodes.begin(), nodes.end());
  for (const NodeRecord* node : nodes)
    if (!node->tokens_only()) named.insert(node->payload_key());
  while (!pending.empty()) {
    const NodeRecord* record = pending.back();
    pending.pop_back();
    for (const auto& reference : record->references())
      if (sources.emplace(reference.record().payload_key(), &reference.record())
              .second)
        pending.push_back(&reference.record());
  }
  for (auto it = detached.begin(); it != detached.end();)
    it = named.contains(it->first) ? detached.erase(it) : std::next(it);
  std::map<std::string, uint64_t> counts;
  for (bool changed = true; changed;) {
    changed = false;
    counts.clear();
    for (const NodeRecord* node : nodes)
      for (const auto& reference : node->references())
        ++counts[reference.record().payload_key()];
    for (const auto& [key, record] : detached)
      for (const std::string& held : record.holds()) ++counts[held];
    for (const auto& [key, count] : counts) {
      if (named.contains(key) || detached.contains(key)) continue;
      auto source = sources.find(key);
      if (source == sources.end()) continue;
      PayloadRefsRecord& record = detached[key];
      record.set_detached(true);
      record.set_payload_in_file(source->second->payload_in_file());
      record.set_bytes_stored(source->second->bytes_stored());
      record.set_namespace_(source->second->namespace_());
      for (const auto& reference : source->second->references())
        record.add_holds(reference.record().payload_key());
      changed = true;
    }
    for (auto it = detached.begin(); it != detached.end();) {
      if (counts[it->first] > 0) {
        ++it;
        continue;
      }
      NodeRecord payload;
      payload.set_payload_key(it->first);
      payload.set_payload_in_file(it->second.payload_in_file());
      DeletePayload(payload, batch, files);
      ++result.payloads_deleted;
      it = detached.erase(it);
      changed = true;
    }
  }
  for (const auto& [key, count] : counts) {
    if (count == 0) continue;
    auto it = detached.find(key);
    PayloadRefsRecord record =
        it != detached.end() ? it->second : PayloadRefsRecord();
    record.set_count(count);
    std::string bytes = record.SerializeAsString();
    auto was = stored.find(key);
    if (was != stored.end() && was->second == bytes) continue;
    batch.Put(Column::kMeta, PayloadRefsKey(key), bytes);
    ++result.records_rewritten;
  }
  for (const auto& [key, bytes] : stored) {
    auto it = counts.find(key);
    if (it != counts.end() && it->second > 0) continue;
    batch.Delete(Column::kMeta, PayloadRefsKey(key));
    ++result.records_rewritten;
  }
  for (const auto& [key, record] : detached)
    result.detached_usage[record.namespace_()].bytes_stored +=
        static_cast<int64_t>(record.bytes_stored());
  return result;
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
    // Kept for the chunks coded against it after its node let go of it.
    auto refs = store_->Get(Column::kMeta, PayloadRefsKey(key));
    if (!refs.ok()) return refs.status();
    if (refs->has_value()) continue;
    if (auto status = files.Remove(key); !status.ok()) return status;
    ++removed;
  }
  return removed;
}

absl::StatusOr<uint64_t> Trie::SweepStagedPayloads() {
  std::vector<std::string> staged;
  if (auto status =
          store_->Scan(Column::kMeta, kStagedPrefix,
                       [&](std::string_view key, std::string_view) {
                         staged.emplace_back(key.substr(kStagedPrefix.size()));
                         return true;
                       });
      !status.ok())
    return status;
  WriteBatch batch(*store_);
  batch.MarkFreesSpace();
  uint64_t removed = 0;
  for (const std::string& payload_key : staged) {
    // A payload key starts with the key of the node it was staged for.
    bool committed = false;
    if (payload_key.size() >= NodeKey::kSize) {
      auto record = ReadNode(NodeKey::FromBytes(
          std::string_view(payload_key).substr(0, NodeKey::kSize)));
      if (!record.ok()) return record.status();
      committed = record->has_value() && !(*record)->payload_in_file() &&
                  (*record)->payload_key() == payload_key;
    }
    if (!committed) {
      batch.Delete(Column::kPayloads, payload_key);
      ++removed;
    }
    batch.Delete(Column::kMeta, StagedKey(payload_key));
  }
  if (batch.Count() > 0)
    if (auto status = store_->Write(batch, /*durable=*/true); !status.ok())
      return status;
  return removed;
}

}  // namespace seqkv
