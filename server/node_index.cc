#include "server/node_index.h"

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <deque>

#include "proto/chunk_digest.h"

namespace seqkv {
namespace {

uint64_t TokensHashOf(const NodeRecord& record) {
  return ChunkDigest(
      {record.tokens().data(), static_cast<size_t>(record.tokens_size())});
}

// In memory only, so free to change: the chain hash of a root, and of a
// child from its parent's chain hash and its tokens hash.
uint64_t RootChain(const NodeKey& root) {
  const uint64_t words[2] = {root.high, root.low};
  return XXH3_64bits(words, sizeof(words));
}
uint64_t ChainHash(uint64_t parent_chain, uint64_t tokens_hash) {
  return XXH3_64bits_withSeed(&tokens_hash, sizeof(tokens_hash), parent_chain);
}

ChunkFacts FactsOf(const NodeRecord& record, uint32_t occurrences,
                   bool logical_bytes) {
  const uint32_t tokens = static_cast<uint32_t>(record.tokens_size());
  // Every chunk but a sequence's last is whole, and starts at depth x the
  // model's chunk size: a shorter one below the root is a trailing piece.
  const bool partial =
      record.depth() > 0 && tokens < record.first_position() / record.depth();
  return {.occurrences = occurrences,
          .partial = partial,
          .tokens = tokens,
          .first_position = static_cast<uint32_t>(record.first_position()),
          .bytes_stored =
              logical_bytes ? record.bytes_logical() : record.bytes_stored()};
}

}  // namespace

uint32_t TierOf(const NodeRecord& record) {
  if (record.tokens_only()) return kTokensOnlyTier;
  return std::min(record.lossy_tier(), kLossyTiers);
}

const char* TierName(uint32_t tier) {
  static_assert(kLossyTiers == 2, "name the tiers");
  switch (tier) {
    case 0:
      return "exact";
    case 1:
      return "lossy_1";
    case 2:
      return "lossy_2";
    default:
      return "tokens_only";
  }
}

NodeIndex::NodeIndex(NodeIndexOptions options)
    : options_(options), estimator_(options.estimator) {}

absl::Status NodeIndex::Load(const Trie& trie) {
  absl::MutexLock lock(&mutex_);
  nodes_.clear();
  chains_.clear();
  leaves_.clear();
  visits_.clear();
  namespaces_.clear();
  ghosts_.clear();
  ghost_order_.clear();
  auto status = trie.ForEachNode([&](const NodeKey& key,
                                     const NodeRecord& record,
                                     const NodeStats& stats) {
    content_.Add(key, record);
    // ForEachNode runs on this thread, under the lock taken above.
    mutex_.AssertHeld();
    const uint32_t occurrences = static_cast<uint32_t>(
        std::min<uint64_t>(stats.visits + 1, uint64_t{1} << 30));
    AddLocked(
        key,
        {.parent = NodeKey::FromBytes(record.parent_key()),
         .name_space = record.namespace_(),
         .last_used = stats.last_used_micros,
         .facts = FactsOf(record, occurrences, options_.rank_by_logical_bytes),
         .log_visits = stats.log_lookup_visits,
         .tokens_hash = TokensHashOf(record),
         .tier = TierOf(record),
         .bytes_stored = record.bytes_stored()},
        /*chain=*/false);
  });
  // Parents arrive in key order, not before their children: chain now
  // (on an error too: what loaded before damage is served).
  std::vector<NodeKey> keys;
  keys.reserve(nodes_.size());
  for (const auto& [key, entry] : nodes_)
    if (!entry.placeholder) keys.push_back(key);
  for (const NodeKey& key : keys) ChainLocked(key);
  return status;
}

void NodeIndex::ChainLocked(const NodeKey& key) {
  // Walk up to a chained node or a root, then chain on the way down.
  std::vector<NodeKey> path;
  NodeKey at = key;
  uint64_t chain = 0;
  while (true) {
    auto it = nodes_.find(at);
    if (it == nodes_.end() || it->second.placeholder) {
      chain = RootChain(at);
      break;
    }
    if (it->second.chained) {
      chain = it->second.chain_hash;
      break;
    }
    path.push_back(at);
    at = it->second.parent;
  }
  for (auto step = path.rbegin(); step != path.rend(); ++step) {
    Entry& entry = nodes_.find(*step)->second;
    chain = ChainHash(chain, entry.tokens_hash);
    entry.chain_hash = chain;
    entry.chained = true;
    chains_[chain] = {*step, entry.parent, entry.tokens_hash, entry.tier};
  }
}

double NodeIndex::RankLocked(const Entry& entry) {
  if (options_.retention == RetentionPolicy::kLru)
    return static_cast<double>(entry.last_used);
  return estimator_.Rank(entry.facts, entry.used_at);
}

void NodeIndex::ReRankLocked(const NodeKey& key, Entry& entry) {
  if (!IsLeaf(entry)) return;  // ranked when it becomes a leaf
  EraseLeafLocked(key, entry);
  InsertLeafLocked(key, entry);
}

void NodeIndex::InsertLeafLocked(const NodeKey& key, Entry& entry) {
  if (options_.retention == RetentionPolicy::kLru) {
    entry.rank = static_cast<double>(entry.last_used);
    entry.rank_class = 0;
  } else {
    entry.rank = estimator_.StandingRank(entry.facts, entry.used_at);
    entry.rank_class = PrefixEstimator::RankClassOf(entry.facts);
  }
  leaves_[entry.name_space][entry.rank_class].insert(LeafOf(key, entry));
}

void NodeIndex::EraseLeafLocked(const NodeKey& key, const Entry& entry) {
  leaves_[entry.name_space][entry.rank_class].erase(LeafOf(key, entry));
}

void NodeIndex::RememberGhostLocked(const NodeKey& key, const Entry& entry) {
  ghosts_[key] = {entry.facts.occurrences, entry.log_visits};
  ghost_order_.push_back(key);
  const size_t limit =
      std::max(options_.min_ghosts,
               static_cast<size_t>(options_.ghosts_per_chunk * nodes_.size()));
  while (ghosts_.size() > limit && !ghost_order_.empty()) {
    ghosts_.erase(ghost_order_.front());
    ghost_order_.pop_front();
  }
  // Entries of ghosts readmitted since stay in the order; keep it bounded.
  if (ghost_order_.size() > 2 * limit) {
    std::deque<NodeKey> order;
    for (const NodeKey& ghost : ghost_order_)
      if (ghosts_.contains(ghost)) order.push_back(ghost);
    ghost_order_.swap(order);
  }
}

void NodeIndex::CountTierLocked(const NodeKey& key, Entry& entry, int sign) {
  if (entry.placeholder) return;
  NamespaceState& state = namespaces_[entry.name_space];
  TierUsage& usage = state.stats.tiers[std::min(entry.tier, kTokensOnlyTier)];
  const uint64_t bytes = entry.tier == kTokensOnlyTier ? 0 : entry.bytes_stored;
  if (sign > 0) {
    ++usage.chunks;
    usage.bytes += bytes;
    if (entry.tier < kLossyTiers && entry.demotable_slot == kNotDemotable) {
      std::vector<NodeKey>& demotable = state.demotable[entry.tier];
      entry.demotable_slot = static_cast<int64_t>(demotable.size());
      demotable.push_back(key);
    }
    return;
  }
  --usage.chunks;
  usage.bytes -= bytes;
  if (entry.demotable_slot >= 0) {
    // Swap-remove, moving the last one into its slot.
    std::vector<NodeKey>& demotable = state.demotable[entry.tier];
    const size_t slot = static_cast<size_t>(entry.demotable_slot);
    const NodeKey last = demotable.back();
    demotable[slot] = last;
    demotable.pop_back();
    if (!(last == key))
      nodes_.find(last)->second.demotable_slot = entry.demotable_slot;
    entry.demotable_slot = kNotDemotable;
  }
}

void NodeIndex::CountChildLocked(const NodeKey& parent, uint32_t tier,
                                 int sign) {
  auto it = nodes_.find(parent);
  if (it == nodes_.end()) {
    if (sign < 0) return;
    // The parent is a root, or not loaded yet: remember the child count.
    it = nodes_.try_emplace(parent, Placeholder(Entry{})).first;
  }
  Entry& entry = it->second;
  if (tier == kTokensOnlyTier) {
    entry.tokens_only_children += sign;
  } else if (sign > 0) {
    if (IsLeaf(entry)) EraseLeafLocked(parent, entry);
    ++entry.children;
    if (tier == 0) ++entry.exact_children;
  } else {
    --entry.children;
    if (tier == 0) --entry.exact_children;
    if (IsLeaf(entry)) InsertLeafLocked(parent, entry);
  }
  if (entry.placeholder && entry.children == 0 &&
      entry.tokens_only_children == 0)
    nodes_.erase(it);
}

void NodeIndex::AddLocked(const NodeKey& key, Entry entry, bool chain) {
  auto [it, inserted] = nodes_.try_emplace(key, entry);
  if (!inserted) {
    // Known already (children counted before it arrived during Load).
    if (!it->second.placeholder) {
      if (IsLeaf(it->second)) EraseLeafLocked(key, it->second);
      --namespaces_[it->second.name_space].live;
      CountTierLocked(key, it->second, -1);
    }
    entry.children = it->second.children;
    entry.tokens_only_children = it->second.tokens_only_children;
    entry.exact_children = it->second.exact_children;
    it->second = entry;
  }
  ++namespaces_[entry.name_space].live;
  CountTierLocked(key, it->second, +1);
  if (entry.tier == kTokensOnlyTier)
    namespaces_[entry.name_space].tokens_only.push_back(key);
  if (IsLeaf(it->second)) InsertLeafLocked(key, it->second);
  CountChildLocked(entry.parent, entry.tier, +1);
  if (chain) ChainLocked(key);
}

void NodeIndex::Add(const NodeKey& key, const NodeRecord& record,
                    int64_t now_micros) {
  absl::MutexLock lock(&mutex_);
  content_.Add(key, record);
  ApplyQueuedVisitsLocked();
  NamespaceState& state = namespaces_[record.namespace_()];
  ++state.stats.chunks_inserted;
  // One turnover: as many chunks stored as the namespace holds with KV.
  state.turnovers += 1.0 / static_cast<double>(HeldWithKv(state));
  uint32_t occurrences = 1;
  // A Put counts as one lookup through the chunk it stores.
  double log_visits = estimator_.AddAt(-INFINITY, state.stats.lookups);
  if (auto ghost = ghosts_.find(key); ghost != ghosts_.end()) {
    // Stored again while remembered: it comes back with its history.
    occurrences = ghost->second.occurrences + 1;
    log_visits =
        estimator_.AddAt(ghost->second.log_visits, state.stats.lookups);
    ++state.stats.readmissions;
    ghosts_.erase(ghost);
  }
  ChunkFacts facts =
      FactsOf(record, occurrences, options_.rank_by_logical_bytes);
  estimator_.CountOccurrence(facts.partial, occurrences);
  AddLocked(key,
            {.parent = NodeKey::FromBytes(record.parent_key()),
             .name_space = record.namespace_(),
             .last_used = now_micros,
             .facts = facts,
             .used_at = state.turnovers,
             .log_visits = log_visits,
             .tokens_hash = TokensHashOf(record),
             .tier = TierOf(record),
             .bytes_stored = record.bytes_stored()},
            /*chain=*/true);
  KeepLogVisitsLocked(key, log_visits);
}

void NodeIndex::KeepLogVisitsLocked(const NodeKey& key, double log_visits) {
  NodeVisits& visits = visits_[key];
  visits.key = key;
  visits.log_lookup_visits = std::max(visits.log_lookup_visits, log_visits);
}

std::vector<NodeKey> NodeIndex::MatchWholeChunks(
    const NodeKey& root, std::span<const int32_t> tokens, uint32_t chunk_tokens,
    std::vector<uint32_t>* tiers) const {
  if (chunk_tokens == 0) return {};
  std::vector<uint64_t> digests(tokens.size() / chunk_tokens);
  for (size_t i = 0; i < digests.size(); ++i)
    digests[i] = ChunkDigest(tokens.subspan(i * chunk_tokens, chunk_tokens));
  return MatchChunkDigests(root, digests, tiers);
}

std::vector<NodeKey> NodeIndex::MatchChunkDigests(
    const NodeKey& root, std::span<const uint64_t> digests,
    std::vector<uint32_t>* tiers) const {
  std::vector<uint64_t> chain(digests.size());
  uint64_t hash = RootChain(root);
  for (size_t i = 0; i < digests.size(); ++i)
    chain[i] = hash = ChainHash(hash, digests[i]);
  std::vector<NodeKey> path;
  path.reserve(digests.size());
  absl::ReaderMutexLock lock(&mutex_);
  for (const uint64_t link : chain) chains_.prefetch(link);
  NodeKey parent = root;
  for (size_t i = 0; i < chain.size(); ++i) {
    auto it = chains_.find(chain[i]);
    // The checks make a chain-hash collision a miss, not a wrong hit.
    if (it == chains_.end() || it->second.parent != parent ||
        it->second.tokens_hash != digests[i])
      break;
    path.push_back(it->second.key);
    if (tiers != nullptr) tiers->push_back(it->second.tier);
    parent = it->second.key;
  }
  return path;
}

bool NodeIndex::TouchLocked(const NodeKey& key, int64_t now_micros) {
  auto it = nodes_.find(key);
  if (it == nodes_.end() || it->second.placeholder) return false;
  Entry& entry = it->second;
  // Queued visits arrive late: a use never moves a node back in time.
  if (now_micros <= entry.last_used) return true;
  entry.last_used = now_micros;
  entry.used_at = namespaces_[entry.name_space].turnovers;
  ReRankLocked(it->first, entry);
  return true;
}

void NodeIndex::Touch(std::span<const NodeKey> keys, int64_t now_micros) {
  absl::MutexLock lock(&mutex_);
  for (const NodeKey& key : keys) TouchLocked(key, now_micros);
}

void NodeIndex::Visit(std::span<const NodeKey> keys, int64_t now_micros,
                      std::span<const std::string> lookup_of) {
  if (keys.empty() && lookup_of.empty()) return;
  QueuedVisit visit{{keys.begin(), keys.end()},
                    now_micros,
                    {lookup_of.begin(), lookup_of.end()}};
  absl::MutexLock lock(&queue_mutex_);
  queued_visits_.push_back(std::move(visit));
}

void NodeIndex::ApplyVisitLocked(const QueuedVisit& visit) {
  for (const std::string& name_space : visit.lookup_of) {
    NamespaceState& state = namespaces_[name_space];
    ++state.stats.lookups;
    state.log_lookups =
        estimator_.AddAt(state.log_lookups, state.stats.lookups);
  }
  const bool lookup = !visit.lookup_of.empty();
  for (const NodeKey& key : visit.keys) {
    auto it = nodes_.find(key);
    if (it == nodes_.end() || it->second.placeholder) continue;  // removed
    Entry& entry = it->second;
    const NamespaceState& state = namespaces_[entry.name_space];
    if (lookup) {
      entry.log_visits =
          estimator_.AddAt(entry.log_visits, state.stats.lookups);
      estimator_.CountOccurrence(entry.facts.partial,
                                 ++entry.facts.occurrences);
      if (entry.tier == kTokensOnlyTier) entry.looked_up_as_tokens = true;
    }
    // Queued visits arrive late: a use never moves a node back in time;
    // a lookup's new occurrence class still re-ranks it.
    const bool later = visit.now_micros > entry.last_used;
    if (later) entry.last_used = visit.now_micros;
    if (later || lookup) {
      entry.used_at = state.turnovers;
      ReRankLocked(key, entry);
    }
    NodeVisits& visits = visits_[key];
    visits.key = key;
    ++visits.visits;
    visits.last_used_micros =
        std::max(visits.last_used_micros, visit.now_micros);
    visits.log_lookup_visits =
        std::max(visits.log_lookup_visits, entry.log_visits);
  }
}

void NodeIndex::ApplyQueuedVisitsLocked() {
  std::deque<QueuedVisit> queued;
  {
    absl::MutexLock lock(&queue_mutex_);
    queued.swap(queued_visits_);
  }
  for (const QueuedVisit& visit : queued) ApplyVisitLocked(visit);
}

std::vector<NodeVisits> NodeIndex::TakeVisits() {
  // One queued lookup per hold of the lock, so that lookups never wait for
  // a whole second's worth; a visit leaves the queue only under the lock,
  // so whoever holds it sees every visit either applied or queued.
  size_t queued = 0;
  {
    absl::MutexLock lock(&queue_mutex_);
    queued = queued_visits_.size();
  }
  for (; queued > 0; --queued) {
    absl::MutexLock lock(&mutex_);
    QueuedVisit visit;
    {
      absl::MutexLock queue_lock(&queue_mutex_);
      if (queued_visits_.empty()) break;
      visit = std::move(queued_visits_.front());
      queued_visits_.pop_front();
    }
    ApplyVisitLocked(visit);
  }
  absl::flat_hash_map<NodeKey, NodeVisits> taken;
  {
    absl::MutexLock lock(&mutex_);
    ApplyQueuedVisitsLocked();
    taken.swap(visits_);
  }
  std::vector<NodeVisits> result;
  result.reserve(taken.size());
  for (auto& [key, visits] : taken) result.push_back(visits);
  return result;
}

void NodeIndex::Remove(const NodeKey& key) {
  absl::MutexLock lock(&mutex_);
  content_.Remove(key);
  ApplyQueuedVisitsLocked();  // none may count for it after it is gone
  auto it = nodes_.find(key);
  if (it == nodes_.end() || it->second.placeholder) return;
  if (IsLeaf(it->second)) EraseLeafLocked(key, it->second);
  CountTierLocked(key, it->second, -1);
  const Entry entry = it->second;
  if (auto link = chains_.find(entry.chain_hash);
      entry.chained && link != chains_.end() && link->second.key == key)
    chains_.erase(link);
  visits_.erase(key);
  --namespaces_[entry.name_space].live;
  RememberGhostLocked(key, entry);
  if (entry.children > 0 || entry.tokens_only_children > 0) {
    // Its children still name it as their parent.
    it->second = Placeholder(entry);
  } else {
    nodes_.erase(it);
  }
  CountChildLocked(entry.parent, entry.tier, -1);
}

bool NodeIndex::ChangeTier(const NodeKey& key, const NodeRecord& record) {
  absl::MutexLock lock(&mutex_);
  ApplyQueuedVisitsLocked();
  auto it = nodes_.find(key);
  if (it == nodes_.end() || it->second.placeholder) return false;
  ChangeTierLocked(key, it->second, record);
  return true;
}

bool NodeIndex::Readmit(const NodeKey& key, const NodeRecord& record,
                        int64_t now_micros) {
  absl::MutexLock lock(&mutex_);
  ApplyQueuedVisitsLocked();
  auto it = nodes_.find(key);
  if (it == nodes_.end() || it->second.placeholder) return false;
  content_.Remove(key);
  content_.Add(key, record);
  Entry& entry = it->second;
  NamespaceState& state = namespaces_[entry.name_space];
  ++state.stats.chunks_inserted;
  state.turnovers += 1.0 / static_cast<double>(HeldWithKv(state));
  // As Add, the Put counts as a lookup through the chunk, unless a lookup
  // counted it while it was held as tokens only: the Put that stores the
  // rest of a prompt follows its Lookup, and one request is one occurrence.
  if (!entry.looked_up_as_tokens) {
    entry.log_visits = estimator_.AddAt(entry.log_visits, state.stats.lookups);
    estimator_.CountOccurrence(entry.facts.partial, ++entry.facts.occurrences);
    KeepLogVisitsLocked(key, entry.log_visits);
  }
  entry.looked_up_as_tokens = false;
  entry.last_used = std::max(entry.last_used, now_micros);
  entry.used_at = state.turnovers;
  ChangeTierLocked(key, entry, record);
  return true;
}

void NodeIndex::ChangeTierLocked(const NodeKey& key, Entry& entry,
                                 const NodeRecord& record) {
  const uint32_t old_tier = entry.tier;
  const uint32_t new_tier = TierOf(record);
  NamespaceState& state = namespaces_[entry.name_space];
  if (IsLeaf(entry)) EraseLeafLocked(key, entry);
  CountTierLocked(key, entry, -1);
  entry.tier = new_tier;
  entry.bytes_stored = record.bytes_stored();
  if (!options_.rank_by_logical_bytes)
    entry.facts.bytes_stored = record.bytes_stored();
  // Stored again as its Put had it: demotable again.
  if (new_tier == 0) entry.demotable_slot = kNotDemotable;
  CountTierLocked(key, entry, +1);
  if (new_tier > old_tier && new_tier <= kLossyTiers) ++state.stats.demotions;
  // Stored again while its tokens were kept: back at full fidelity.
  if (old_tier == kTokensOnlyTier && new_tier == 0) ++state.stats.readmissions;
  if (new_tier == kTokensOnlyTier && old_tier != kTokensOnlyTier)
    state.tokens_only.push_back(key);
  if (IsLeaf(entry)) InsertLeafLocked(key, entry);
  if (auto link = chains_.find(entry.chain_hash);
      entry.chained && link != chains_.end() && link->second.key == key)
    link->second.tier = new_tier;
  if ((old_tier == kTokensOnlyTier) != (new_tier == kTokensOnlyTier)) {
    const NodeKey parent = entry.parent;  // `entry` may move below
    CountChildLocked(parent, old_tier, -1);
    CountChildLocked(parent, new_tier, +1);
  } else if ((old_tier == 0) != (new_tier == 0)) {
    if (auto parent = nodes_.find(entry.parent); parent != nodes_.end()) {
      if (new_tier == 0) {
        ++parent->second.exact_children;
      } else {
        --parent->second.exact_children;
      }
    }
  }
}

std::vector<uint32_t> NodeIndex::Tiers(std::span<const NodeKey> keys) const {
  std::vector<uint32_t> tiers;
  tiers.reserve(keys.size());
  absl::ReaderMutexLock lock(&mutex_);
  for (const NodeKey& key : keys) {
    auto it = nodes_.find(key);
    tiers.push_back(it == nodes_.end() || it->second.placeholder
                        ? kTokensOnlyTier
                        : it->second.tier);
  }
  return tiers;
}

void NodeIndex::CountGhostHit(const std::string& name_space) {
  absl::MutexLock lock(&mutex_);
  ++namespaces_[name_space].stats.ghost_hits;
}

std::optional<NodeKey> NodeIndex::NextDemotion(const std::string& name_space,
                                               uint32_t tier) {
  absl::MutexLock lock(&mutex_);
  ApplyQueuedVisitsLocked();
  auto state = namespaces_.find(name_space);
  if (tier >= kLossyTiers || state == namespaces_.end() ||
      state->second.demotable[tier].empty())
    return std::nullopt;
  const std::vector<NodeKey>& demotable = state->second.demotable[tier];
  // Sampling, as Redis approximates LRU: ranking every chunk, inner ones
  // included, would cost each visit an ordered-set update.
  constexpr int kSamples = 16;
  std::optional<NodeKey> best;
  double best_rank = 0;
  for (int i = 0, sampled = 0; i < 4 * kSamples && sampled < kSamples; ++i) {
    sample_state_ ^= sample_state_ << 13;
    sample_state_ ^= sample_state_ >> 7;
    sample_state_ ^= sample_state_ << 17;
    const NodeKey& key = demotable[sample_state_ % demotable.size()];
    const Entry& entry = nodes_.find(key)->second;
    if (tier == 0 && entry.exact_children > 0) continue;
    ++sampled;
    const double rank = RankLocked(entry);
    if (!best || rank < best_rank) best = key, best_rank = rank;
  }
  return best;
}

void NodeIndex::KeepTier(const NodeKey& key) {
  absl::MutexLock lock(&mutex_);
  auto it = nodes_.find(key);
  if (it == nodes_.end() || it->second.placeholder) return;
  CountTierLocked(key, it->second, -1);
  it->second.demotable_slot = kKeepTier;
  CountTierLocked(key, it->second, +1);
}

std::vector<NodeKey> NodeIndex::ExcessTokensOnly(
    const std::string& name_space) {
  absl::MutexLock lock(&mutex_);
  std::vector<NodeKey> excess;
  auto state = namespaces_.find(name_space);
  if (state == namespaces_.end()) return excess;
  uint64_t held = state->second.stats.tiers[kTokensOnlyTier].chunks;
  const uint64_t limit = std::max<uint64_t>(
      options_.min_ghosts,
      static_cast<uint64_t>(options_.ghosts_per_chunk *
                            static_cast<double>(HeldWithKv(state->second))));
  std::deque<NodeKey>& order = state->second.tokens_only;
  while (held > limit && !order.empty()) {
    const NodeKey key = order.front();
    order.pop_front();
    auto it = nodes_.find(key);
    if (it == nodes_.end() || it->second.placeholder ||
        it->second.tier != kTokensOnlyTier)
      continue;  // removed or upgraded since
    excess.push_back(key);
    --held;
  }
  return excess;
}

bool NodeIndex::HasTokensOnlyChildren(const NodeKey& key) const {
  absl::ReaderMutexLock lock(&mutex_);
  auto it = nodes_.find(key);
  return it != nodes_.end() && it->second.tokens_only_children > 0;
}

std::optional<NodeKey> NodeIndex::NextVictim(const std::string& name_space) {
  absl::MutexLock lock(&mutex_);
  ApplyQueuedVisitsLocked();
  auto it = leaves_.find(name_space);
  if (it == leaves_.end()) return std::nullopt;
  const LeafKey* least = nullptr;
  double least_rank = 0;
  for (uint32_t rank_class = 0; rank_class < it->second.size(); ++rank_class) {
    const std::set<LeafKey>& leaves = it->second[rank_class];
    if (leaves.empty()) continue;
    const double rank =
        leaves.begin()->first + (options_.retention == RetentionPolicy::kLru
                                     ? 0
                                     : estimator_.LogReuse(rank_class));
    if (least == nullptr || rank < least_rank)
      least = &*leaves.begin(), least_rank = rank;
  }
  if (least == nullptr) return std::nullopt;
  return NodeKey{least->second.first, least->second.second};
}

double NodeIndex::Probability(const NodeKey& key) const {
  absl::ReaderMutexLock lock(&mutex_);
  auto it = nodes_.find(key);
  if (it == nodes_.end() || it->second.placeholder) return 0;
  auto state = namespaces_.find(it->second.name_space);
  if (state == namespaces_.end() || state->second.stats.lookups == 0) return 0;
  return std::min(1.0,
                  std::exp2(it->second.log_visits - state->second.log_lookups));
}

LearnedState NodeIndex::Learned() {
  absl::MutexLock lock(&mutex_);
  ApplyQueuedVisitsLocked();
  LearnedState learned{.reached = estimator_.reached()};
  for (const auto& [name, state] : namespaces_)
    if (state.stats.lookups > 0)
      learned.clocks[name] = {state.stats.lookups, state.log_lookups};
  return learned;
}

void NodeIndex::RestoreLearned(const LearnedState& learned) {
  absl::MutexLock lock(&mutex_);
  // Ranks keep p̂(reuse) apart from their order (LogReuse is looked up when
  // leaves are compared), so nothing needs re-ranking.
  estimator_.RestoreReached(learned.reached);
  for (const auto& [name, clock] : learned.clocks) {
    NamespaceState& state = namespaces_[name];
    state.stats.lookups = clock.lookups;
    state.log_lookups = clock.log_lookups;
  }
}

std::vector<double> NodeIndex::ReuseProbabilities(bool partial) const {
  absl::ReaderMutexLock lock(&mutex_);
  std::vector<double> probabilities;
  for (uint32_t k = 1; k < PrefixEstimator::kClasses; ++k)
    probabilities.push_back(estimator_.ReuseProbability(partial, k));
  return probabilities;
}

std::map<std::string, RetentionStats> NodeIndex::Stats() {
  absl::MutexLock lock(&mutex_);
  ApplyQueuedVisitsLocked();
  std::map<std::string, RetentionStats> stats;
  for (const auto& [name, state] : namespaces_) stats[name] = state.stats;
  return stats;
}

size_t NodeIndex::ghost_count() const {
  absl::MutexLock lock(&mutex_);
  return ghosts_.size();
}

size_t NodeIndex::size() const {
  absl::MutexLock lock(&mutex_);
  return nodes_.size();
}

}  // namespace seqkv
