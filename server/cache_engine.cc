#include "server/cache_engine.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "server/stored_chunk.h"
#include "spdlog/spdlog.h"
#include "storage/estimator_record.h"

namespace seqkv {
namespace {

// [begin, end) of a match in runs of one tier and codec.
std::vector<ServedRange> ServedRanges(std::span<const TrieNode> nodes,
                                      uint32_t begin, uint32_t end) {
  std::vector<ServedRange> ranges;
  uint32_t start = 0;
  for (const TrieNode& node : nodes) {
    const uint32_t from = std::max(begin, start);
    const uint32_t to = std::min(end, start + node.matched_tokens);
    start += node.matched_tokens;
    if (from >= to) continue;
    if (!ranges.empty() && ranges.back().end_token == from &&
        ranges.back().lossy_tier == node.record.lossy_tier() &&
        ranges.back().codec == node.record.codec()) {
      ranges.back().end_token = to;
    } else {
      ranges.push_back(
          {from, to, node.record.lossy_tier(), node.record.codec()});
    }
  }
  return ranges;
}

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Dimensions and dtype must agree; RoPE only when the caller states one.
bool SameStoredLayout(const KvLayout& registered, const KvLayout& given) {
  KvLayout a = registered, b = given;
  if (b.rope.style == RopeStyle::kNone) a.rope = b.rope;
  return a == b;
}

// Whether registering `spec` over `model` would change what is stored.
bool RegistrationChanges(const Model& model, const ModelSpec& spec) {
  if (!(model.context.layout == spec.layout) ||
      model.chunk_tokens != spec.chunk_tokens)
    return true;
  if (!spec.default_codec.empty() &&
      spec.default_codec != model.record.default_codec())
    return true;
  for (const auto& [key, blob] : spec.codec_state) {
    auto it = model.context.codec_state.find(key);
    if (it == model.context.codec_state.end() || it->second != blob)
      return true;
  }
  return false;
}

}  // namespace

CacheEngine::CacheEngine(KvStore* store, EngineOptions options)
    : options_(std::move(options)),
      store_(store),
      memory_(options_.memory),
      chunk_buffers_(options_.chunk_buffer_pool_bytes, &memory_),
      index_(options_.index),
      trie_(store),
      models_(store, &trie_.mutable_usage()),
      stats_(store, &trie_.usage()),
      retention_(&trie_, &index_, &stats_),
      next_put_id_(static_cast<uint64_t>(NowMicros())),
      pool_(options_.codec_threads) {
  retention_.SetDefaultTiers(options_.tiers);
}

CacheEngine::~CacheEngine() {
  stop_flushing_.Notify();
  if (visit_flusher_.joinable()) visit_flusher_.join();
  FlushVisits();
  SaveCounters();
}

absl::Status CacheEngine::Start() {
  // Damage (DATA_LOSS) leaves what loaded before it and a read-only store.
  auto loaded = [this](absl::Status status, std::string_view what) {
    if (!absl::IsDataLoss(status)) return status;
    store_->MarkDamaged(
        absl::StrCat("loading ", std::string(what), ": ", status.message()));
    return absl::OkStatus();
  };
  if (auto status = loaded(trie_.Load(), "usage"); !status.ok()) return status;
  if (auto status = loaded(stats_.Load(), "counters"); !status.ok())
    return status;
  if (auto status = loaded(index_.Load(trie_), "the trie's nodes");
      !status.ok())
    return status;
  // Learned statistics only: a damaged record is learned again.
  if (auto status = RestoreLearned(); absl::IsDataLoss(status))
    spdlog::warn("what retention learned is lost ({}); learning it again",
                 status.ToString());
  else if (!status.ok())
    return status;
  // On a damaged store a payload's node may be unreadable, not absent.
  if (store_->damage().empty()) {
    auto orphans = trie_.SweepOrphanPayloadFiles();
    if (!orphans.ok()) return orphans.status();
    if (*orphans > 0)
      spdlog::info(
          "deleted {} payload files no chunk refers to (left by a "
          "crash or a failed removal)",
          *orphans);
    auto staged = trie_.SweepStagedPayloads();
    if (!staged.ok()) return staged.status();
    if (*staged > 0)
      spdlog::info(
          "deleted {} staged payloads of Puts a crash cut off before they "
          "committed",
          *staged);
  }
  MarkBusy();  // the idle time counts from the start
  counters_saved_at_ = absl::Now();
  visit_flusher_ = std::thread([this] {
    while (!stop_flushing_.WaitForNotificationWithTimeout(absl::Seconds(1))) {
      FlushVisits();
      store_->Heal();
      if (absl::Now() - counters_saved_at_ >= options_.counters_save_interval) {
        SaveCounters();
        counters_saved_at_ = absl::Now();
      }
      ReportIdleOnce();
    }
  });
  // A damaged store is read-only: nothing to demote.
  if (store_->damage().empty()) demoter_.Start();
  return absl::OkStatus();
}

void CacheEngine::SaveCounters() {
  if (!store_->damage().empty()) return;  // read-only: nothing is written
  if (auto status = stats_.Save(); !status.ok())
    spdlog::warn("saving request counters failed: {}", status.ToString());
}

absl::Status CacheEngine::RestoreLearned() {
  auto record = LoadEstimatorRecord(*store_);
  if (!record.ok()) return record.status();
  if (!record->has_value()) return absl::OkStatus();
  // A record of other sizes (another build's class count) restores what
  // fits; the rest is learned again.
  LearnedState learned;
  const auto& whole = (*record)->reached_whole();
  const auto& partial = (*record)->reached_partial();
  for (size_t k = 0; k < learned.reached[0].size(); ++k) {
    if (k < static_cast<size_t>(whole.size())) learned.reached[0][k] = whole[k];
    if (k < static_cast<size_t>(partial.size()))
      learned.reached[1][k] = partial[k];
  }
  for (const auto& [name, clock] : (*record)->lookup_clocks())
    learned.clocks[name] = {clock.lookups(), clock.log_lookups()};
  index_.RestoreLearned(learned);
  return absl::OkStatus();
}

void CacheEngine::MarkBusy() {
  last_busy_micros_.store(NowMicros(), std::memory_order_relaxed);
}

void CacheEngine::ReportIdleOnce() {
  const int64_t last_busy = last_busy_micros_.load(std::memory_order_relaxed);
  if (last_busy == reported_idle_after_micros_ ||
      NowMicros() - last_busy < absl::ToInt64Microseconds(options_.idle_after))
    return;
  reported_idle_after_micros_ = last_busy;
  decoded_chunks_.Clear();
  chunk_buffers_.ReleaseIdle();
  if (options_.on_idle) options_.on_idle();
  idle_releases_.fetch_add(1, std::memory_order_relaxed);
}

void CacheEngine::FlushVisits() {
  const std::vector<NodeVisits> visits = index_.TakeVisits();
  if (visits.empty() || !store_->damage().empty()) return;
  // The lookup clocks the decayed counts in node stats are relative to go
  // in the same batch, so that a crash keeps both or neither.
  WriteBatch batch(*store_);
  trie_.StageVisits(visits, batch);
  const LearnedState learned = index_.Learned();
  EstimatorRecord record;
  for (uint64_t reached : learned.reached[0]) record.add_reached_whole(reached);
  for (uint64_t reached : learned.reached[1])
    record.add_reached_partial(reached);
  for (const auto& [name, clock] : learned.clocks) {
    auto& saved = (*record.mutable_lookup_clocks())[name];
    saved.set_lookups(clock.lookups);
    saved.set_log_lookups(clock.log_lookups);
  }
  StageEstimatorRecord(record, batch);
  // Statistics: losing some to an error is acceptable.
  if (auto status = store_->Write(batch, /*durable=*/false); !status.ok()) {
    absl::MutexLock lock(&visit_warning_mutex_);
    visits_lost_ += visits.size();
    const absl::Time now = absl::Now();
    if (now - visit_warned_at_ >= absl::Minutes(1)) {
      spdlog::warn(
          "recording node visits failed ({} visits lost since the last "
          "warning; next warning in a minute at most): {}",
          visits_lost_, status.ToString());
      visit_warned_at_ = now;
      visits_lost_ = 0;
    }
  }
}

void CacheEngine::SetLimits(std::map<std::string, NamespaceLimit> limits,
                            uint64_t capacity_bytes) {
  retention_.SetLimits(std::move(limits), capacity_bytes);
  absl::MutexLock lock(&write_mutex_);
  EvictLocked();
}

void CacheEngine::EvictLocked() {
  if (auto status = retention_.Evict(); !status.ok())
    spdlog::warn("eviction failed: {}", status.ToString());
}

absl::StatusOr<std::shared_ptr<const Model>> CacheEngine::ResolveModel(
    const ModelScope& models, const std::string& name) {
  std::vector<ModelId> candidates{{models.tenant, name}};
  if (auto it = models.shared.find(name); it != models.shared.end())
    candidates.push_back({it->second, name});
  candidates.push_back({"", name});
  for (const ModelId& id : candidates) {
    auto model = models_.Find(id);
    if (model.ok() || model.status().code() != absl::StatusCode::kNotFound)
      return model;
  }
  // The same answer whether or not another tenant has a model so named.
  return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
}

absl::StatusOr<std::pair<std::vector<NodeKey>, uint32_t>>
CacheEngine::MatchKeys(const NodeKey& root, const Model& model,
                       std::span<const int32_t> tokens,
                       std::vector<uint32_t>* tiers) const {
  std::vector<NodeKey> keys =
      index_.MatchWholeChunks(root, tokens, model.chunk_tokens, tiers);
  uint32_t matched = static_cast<uint32_t>(keys.size()) * model.chunk_tokens;
  if (matched < tokens.size()) {
    // A partial chunk at the end, or one the index does not hold yet.
    auto rest = trie_.Match(keys.empty() ? root : keys.back(),
                            tokens.subspan(matched), model.chunk_tokens);
    if (!rest.ok()) return rest.status();
    for (const TrieNode& node : rest->nodes) {
      keys.push_back(node.key);
      if (tiers != nullptr) tiers->push_back(TierOf(node.record));
    }
    matched += rest->matched_tokens;
  }
  return std::make_pair(std::move(keys), matched);
}

absl::StatusOr<std::pair<TrieMatch, std::string>> CacheEngine::MatchInScope(
    const ReadScope& scope, const Model& model, std::span<const int32_t> tokens,
    bool exact_only) const {
  std::pair<TrieMatch, std::string> best;
  for (const std::string& ns : scope.namespaces) {
    auto match =
        trie_.Match(RootKey(ns, model.fingerprint), tokens, model.chunk_tokens);
    if (!match.ok()) return match.status();
    // Served up to the first chunk without KV (or not exact, if asked).
    auto served_end = std::find_if(
        match->nodes.begin(), match->nodes.end(), [&](const TrieNode& node) {
          return node.record.tokens_only() ||
                 (exact_only && node.record.lossy_tier() > 0);
        });
    match->nodes.erase(served_end, match->nodes.end());
    match->matched_tokens = 0;
    for (const TrieNode& node : match->nodes)
      match->matched_tokens += node.matched_tokens;
    if (match->matched_tokens > best.first.matched_tokens ||
        best.second.empty()) {
      best = {std::move(*match), ns};
    }
  }
  return best;
}

absl::StatusOr<PrefixProbability> CacheEngine::ProbabilityOf(
    const std::string& name_space, const std::string& model_name,
    std::span<const int32_t> tokens) {
  auto model = ResolveModel({.tenant = name_space}, model_name);
  if (!model.ok()) return model.status();
  if (tokens.size() > options_.max_tokens)
    return absl::InvalidArgumentError(
        absl::StrCat("tokens has ", tokens.size(),
                     " ids, more than the limit of ", options_.max_tokens));
  auto match =
      MatchKeys(RootKey(name_space, (*model)->fingerprint), **model, tokens);
  if (!match.ok()) return match.status();
  PrefixProbability result{.matched_tokens = match->second};
  if (!match->first.empty())
    result.probability = index_.Probability(match->first.back());
  return result;
}

absl::StatusOr<LookupOutcome> CacheEngine::Lookup(const ReadScope& scope,
                                                  const LookupQuery& query) {
  if (query.model.empty()) return absl::InvalidArgumentError("model is empty");
  if (query.tokens.empty() && query.chunk_digests.empty())
    return absl::InvalidArgumentError("tokens is empty");
  auto model = ResolveModel(scope.models, query.model);
  if (!model.ok()) return model.status();
  const uint64_t digested_tokens =
      uint64_t{query.chunk_digests.size()} * (*model)->chunk_tokens;
  if (digested_tokens + query.tokens.size() > options_.max_tokens)
    return absl::InvalidArgumentError(
        absl::StrCat("chunk_digests and tokens stand for ",
                     digested_tokens + query.tokens.size(),
                     " ids, more than the limit of ", options_.max_tokens));
  const uint32_t chunk_tokens = (*model)->chunk_tokens;
  // The namespace matching the most tokens (tokens-only chunks included:
  // their statistics count visits too), and the one serving the most.
  std::vector<NodeKey> visited_keys;
  std::string visited_ns;
  uint32_t visited_matched = 0, visited_with_kv = 0;
  std::vector<NodeKey> best_keys;
  LookupOutcome outcome;
  for (const std::string& ns : scope.namespaces) {
    const NodeKey root = RootKey(ns, (*model)->fingerprint);
    std::vector<uint32_t> tiers;
    std::vector<NodeKey> keys =
        index_.MatchChunkDigests(root, query.chunk_digests, &tiers);
    uint32_t matched = static_cast<uint32_t>(keys.size()) * chunk_tokens;
    if (keys.size() == query.chunk_digests.size() && !query.tokens.empty()) {
      auto rest = MatchKeys(keys.empty() ? root : keys.back(), **model,
                            query.tokens, &tiers);
      if (!rest.ok()) return rest.status();
      keys.insert(keys.end(), rest->first.begin(), rest->first.end());
      matched += rest->second;
    }
    // Tokens before the first chunk whose tier `stops`: every chunk but the
    // last is whole.
    auto tokens_before = [&](auto stops) {
      for (size_t i = 0; i < tiers.size(); ++i)
        if (stops(tiers[i]))
          return std::min(matched, static_cast<uint32_t>(i) * chunk_tokens);
      return matched;
    };
    const uint32_t with_kv =
        tokens_before([](uint32_t tier) { return tier == kTokensOnlyTier; });
    const uint32_t exact =
        tokens_before([](uint32_t tier) { return tier != 0; });
    const uint32_t served = query.exact_only ? exact : with_kv;
    if (served > outcome.matched_tokens) {
      outcome = {.matched_tokens = served,
                 .matched_tokens_exact = exact,
                 .name_space = ns};
      best_keys.assign(
          keys.begin(),
          keys.begin() + (served + chunk_tokens - 1) / chunk_tokens);
    }
    if (matched > visited_matched) {
      visited_matched = matched, visited_with_kv = with_kv;
      visited_keys = std::move(keys);
      visited_ns = ns;
    }
  }
  index_.Visit(visited_keys, NowMicros(), scope.namespaces);
  if (visited_matched > visited_with_kv) index_.CountGhostHit(visited_ns);
  if (!best_keys.empty()) {
    outcome.probability = index_.Probability(best_keys.back());
    if (query.head_chunks > 0)
      outcome.head_probability = index_.Probability(
          best_keys[std::min<size_t>(query.head_chunks, best_keys.size()) - 1]);
  }
  if (query.alignment > 1) {
    outcome.matched_tokens -= outcome.matched_tokens % query.alignment;
    outcome.matched_tokens_exact -=
        outcome.matched_tokens_exact % query.alignment;
  }
  if (outcome.matched_tokens == 0) outcome.name_space.clear();
  stats_.CountLookup(scope.namespaces.front(),
                     digested_tokens + query.tokens.size(),
                     outcome.matched_tokens);
  return outcome;
}

absl::StatusOr<std::unique_ptr<PutSession>> CacheEngine::BeginPut(
    const std::string& name_space, const ModelScope& models, PutSpec spec) {
  MarkBusy();
  // A full disk or a damaged store refuses before the data is sent.
  if (auto status = store_->CheckFreeSpace(0); !status.ok()) return status;
  if (spec.model.empty())
    return absl::InvalidArgumentError("header.model is empty");
  if (spec.tokens.empty())
    return absl::InvalidArgumentError("header.tokens is empty");
  if (spec.tokens.size() > options_.max_tokens)
    return absl::InvalidArgumentError(
        absl::StrCat("header.tokens has ", spec.tokens.size(),
                     " ids, more than the limit of ", options_.max_tokens));
  std::shared_ptr<const Model> model;
  bool new_model = false;
  auto found = ResolveModel(models, spec.model);
  if (found.ok()) {
    model = *found;
    if (spec.layout && !SameStoredLayout(model->context.layout, *spec.layout))
      return absl::FailedPreconditionError(absl::StrCat(
          "header.layout differs from the layout registered for model '",
          spec.model, "': ",
          DescribeLayoutDifference(model->context.layout, *spec.layout)));
  } else if (found.status().code() == absl::StatusCode::kNotFound) {
    if (!spec.layout)
      return absl::NotFoundError(absl::StrCat(
          "unknown model '", spec.model,
          "': send header.layout with the first Put or call RegisterModel"));
    auto built =
        ModelRegistry::FromSpec(models.tenant,
                                {.name = spec.model,
                                 .layout = *spec.layout,
                                 .chunk_tokens = options_.default_chunk_tokens},
                                NowMicros());
    if (!built.ok()) return built.status();
    model = *built;
    new_model = true;
    if (auto status = retention_.CheckModelQuota(
            models.tenant, static_cast<int64_t>(model->record_bytes));
        !status.ok())
      return status;
  } else {
    return found.status();
  }
  if (auto status = CheckChunkBytes(model->record.name(), model->context.layout,
                                    model->chunk_tokens);
      !status.ok())
    return status;
  if (auto status = retention_.CheckQuota(name_space, 1); !status.ok())
    return status;
  std::string codec_spec = std::move(spec.codec);
  if (codec_spec.empty()) codec_spec = model->record.default_codec();
  if (codec_spec.empty()) codec_spec = options_.default_codec;
  auto codec = codecs_.CodecFor(model, codec_spec);
  if (!codec.ok())
    return absl::Status(
        codec.status().code(),
        absl::StrCat("header.codec: ", codec.status().message()));
  return std::make_unique<PutSession>(
      PutSession::Resources{.trie = &trie_,
                            .buffers = &chunk_buffers_,
                            .pool = &pool_,
                            .on_done = [this] { MarkBusy(); },
                            .planner = options_.references.split_dedup ||
                                               options_.references.cross_prefix
                                           ? &planner_
                                           : nullptr,
                            .decoding = {.trie = &trie_,
                                         .codecs = &codecs_,
                                         .buffers = &chunk_buffers_,
                                         .cache = &decoded_chunks_}},
      PutSession::Target{.name_space = name_space,
                         .model = std::move(model),
                         .new_model = new_model,
                         .codec = *std::move(codec),
                         .tokens = std::move(spec.tokens),
                         .put_id = next_put_id_.fetch_add(1)});
}

absl::StatusOr<PutSummary> CacheEngine::FinishPut(PutSession& session) {
  if (auto status = session.Seal(); !status.ok()) return status;
  const PutSession::Target& put = session.target();
  const Model& model = *put.model;
  absl::MutexLock lock(&write_mutex_);
  bool new_model = put.new_model;
  if (new_model) {
    // Another call may have registered the model since this one began.
    auto found = models_.Find({model.owner(), model.record.name()});
    if (found.ok()) {
      if (!((*found)->context.layout == model.context.layout) ||
          (*found)->chunk_tokens != model.chunk_tokens)
        return absl::FailedPreconditionError(
            absl::StrCat("model '", model.record.name(),
                         "' was registered meanwhile with another layout"));
      // The chunks were encoded without the state it registered.
      if ((*found)->codec_state_version() != 0 ||
          !(*found)->context.codec_state.empty())
        return absl::AbortedError(absl::StrCat(
            "model '", model.record.name(),
            "' was registered with codec state during this Put; retry it"));
      new_model = false;
    } else if (found.status().code() != absl::StatusCode::kNotFound) {
      return found.status();
    } else if (auto status = retention_.CheckModelQuota(
                   model.owner(), static_cast<int64_t>(model.record_bytes));
               !status.ok()) {
      return status;
    }
  }
  // The commit checks the quota again, under the trie's lock; its refusal
  // says where the quota comes from, as CheckQuota's does.
  const uint64_t quota = retention_.RefusingQuotaFor(put.name_space);
  auto committed =
      trie_.Commit(session.staged(),
                   {.name_space = put.name_space,
                    .quota_bytes = quota,
                    .quota_note = retention_.QuotaNote(put.name_space, quota),
                    .new_model = new_model ? &model : nullptr});
  if (!committed.ok()) return committed.status();
  session.MarkCommitted();
  if (new_model) models_.Remember(put.model);
  const int64_t now = NowMicros();
  for (const PendingNode& node : session.staged())
    if (!committed->raced_keys.contains(node.key) &&
        !(node.upgrades && index_.Readmit(node.key, node.record, now)))
      index_.Add(node.key, node.record, now);
  index_.Touch(session.stored_path(), now);
  EvictLocked();
  demoter_.Wake();
  const uint32_t deduped =
      static_cast<uint32_t>(session.stored_path().size()) + committed->raced;
  const uint64_t data_bytes = session.data_bytes();
  PutReuse reuse;
  uint32_t tokens_stored = 0;
  for (const PendingNode& node : session.staged()) {
    if (committed->raced_keys.contains(node.key)) continue;
    const NodeRecord& record = node.record;
    tokens_stored += record.tokens_size();
    reuse.tokens_split_deduped += record.copied_tokens();
    for (const auto& run : record.reference_runs())
      reuse.tokens_cross_prefix += run.num_tokens();
    reuse.bytes_stored += record.bytes_stored();
    if (HasReferences(record)) {
      ++reuse.chunks_with_references;
      reuse.reference_bytes_logical += record.bytes_logical();
      reuse.reference_bytes_stored += record.bytes_stored();
    }
  }
  reuse.tokens_new =
      tokens_stored - reuse.tokens_split_deduped - reuse.tokens_cross_prefix;
  reuse.tokens_deduped =
      static_cast<uint32_t>(put.tokens.size()) - tokens_stored;
  stats_.CountPut(put.name_space, put.tokens.size(), deduped, data_bytes,
                  committed->bytes_logical_added, reuse);
  return PutSummary{.tokens = static_cast<uint32_t>(put.tokens.size()),
                    .chunks_new = committed->added + committed->upgraded,
                    .chunks_deduped = deduped,
                    .bytes_logical = data_bytes,
                    .bytes_stored = committed->bytes_stored_added +
                                    committed->bytes_stored_upgraded,
                    .codec = put.codec->spec(),
                    .reuse = reuse};
}

absl::Status CacheEngine::Get(
    const ReadScope& scope, const GetQuery& query, size_t message_bytes,
    const std::function<bool(const GetPlan&)>& on_plan,
    const std::function<bool(std::string&)>& on_data) {
  return GetMatch(scope, query, message_bytes, &on_plan, &on_data, nullptr);
}

absl::Status CacheEngine::GetInto(
    const ReadScope& scope, const GetQuery& query,
    const std::function<absl::StatusOr<std::span<std::byte>>(const GetPlan&)>&
        destination) {
  return GetMatch(scope, query, 0, nullptr, nullptr, &destination);
}

absl::Status CacheEngine::GetMatch(
    const ReadScope& scope, const GetQuery& query, size_t message_bytes,
    const std::function<bool(const GetPlan&)>* on_plan,
    const std::function<bool(std::string&)>* on_data,
    const std::function<absl::StatusOr<std::span<std::byte>>(const GetPlan&)>*
        destination) {
  MarkBusy();
  absl::Cleanup busy_until_done = [this] { MarkBusy(); };
  if (query.model.empty()) return absl::InvalidArgumentError("model is empty");
  if (query.tokens.empty())
    return absl::InvalidArgumentError("tokens is empty");
  auto model = ResolveModel(scope.models, query.model);
  if (!model.ok()) return model.status();
  const KvLayout& layout = (*model)->context.layout;
  auto match = MatchInScope(scope, **model, query.tokens, query.exact_only);
  if (!match.ok()) return match.status();
  uint32_t matched = match->first.matched_tokens;
  if (query.alignment > 1) matched -= matched % query.alignment;
  const uint32_t begin = query.begin_token;
  const uint32_t end = query.end_token == 0 ? matched : query.end_token;
  if (begin > end || end > matched)
    return absl::OutOfRangeError(absl::StrCat("token range [", begin, ", ", end,
                                              ") is outside the ", matched,
                                              " stored tokens that match"));
  const GetPlan plan{
      .model = (*model)->record.name(),
      .layout = layout,
      .matched_tokens = matched,
      .begin_token = begin,
      .end_token = end,
      .data_bytes = uint64_t{end - begin} * layout.bytes_per_token(),
      .name_space = matched > 0 ? match->second : "",
      .served = ServedRanges(match->first.nodes, begin, end)};
  const TrieNode* damaged = nullptr;
  absl::Status read;
  if (destination != nullptr) {
    auto bytes = (*destination)(plan);
    if (!bytes.ok()) return bytes.status();
    read = reader_.ReadInto(*model, match->first.nodes, begin, end, *bytes,
                            &damaged);
  } else {
    if (!(*on_plan)(plan)) return absl::CancelledError("client went away");
    read = reader_.Read(*model, match->first.nodes, begin, end, message_bytes,
                        *on_data, &damaged);
  }
  if (auto status = read; !status.ok()) {
    if (damaged != nullptr) Quarantine(*damaged, status);
    return status;
  }
  std::vector<NodeKey> keys;
  for (const TrieNode& node : match->first.nodes) keys.push_back(node.key);
  index_.Visit(keys, NowMicros());
  stats_.CountGet(scope.namespaces.front(), end - begin);
  return absl::OkStatus();
}

void CacheEngine::Quarantine(const TrieNode& node, const absl::Status& why) {
  absl::MutexLock lock(&write_mutex_);
  NodeRemovals removals = trie_.StartRemovals();
  auto removal =
      trie_.RemoveSubtreeOf(node.key, node.record.payload_key(), removals);
  if (removal.ok() && removal->chunks > 0) {
    if (auto status = trie_.CommitRemovals(removals); !status.ok())
      removal = status;
  }
  if (!removal.ok()) {
    spdlog::error("could not quarantine damaged chunk {}: {} (found: {})",
                  node.key.Hex(), removal.status().ToString(), why.ToString());
    return;
  }
  if (removal->chunks == 0) return;  // removed or replaced meanwhile
  for (const NodeKey& key : removal->keys) index_.Remove(key);
  stats_.CountQuarantined(node.record.namespace_(), 1);
  spdlog::error(
      "quarantined damaged chunk {} of namespace '{}' (removed with the {} "
      "chunks stored below it; a Put stores it afresh): {}",
      node.key.Hex(), node.record.namespace_(), removal->chunks - 1,
      why.ToString());
}

absl::StatusOr<DeleteSummary> CacheEngine::Delete(
    const std::string& name_space, const ModelScope& models,
    const std::string& model_name, std::span<const int32_t> tokens) {
  MarkBusy();
  if (model_name.empty()) return absl::InvalidArgumentError("model is empty");
  auto model = ResolveModel(models, model_name);
  if (!model.ok()) return model.status();
  absl::MutexLock lock(&write_mutex_);
  NodeRemovals removals = trie_.StartRemovals();
  auto removal = trie_.RemoveSubtree(RootKey(name_space, (*model)->fingerprint),
                                     tokens, (*model)->chunk_tokens, removals);
  if (!removal.ok()) return removal.status();
  if (auto status = trie_.CommitRemovals(removals); !status.ok()) return status;
  for (const NodeKey& key : removal->keys) index_.Remove(key);
  return DeleteSummary{.chunks_deleted = removal->chunks,
                       .bytes_freed = removal->bytes_stored};
}

absl::StatusOr<RegisterOutcome> CacheEngine::RegisterModel(
    const ModelScope& models, ModelSpec spec) {
  if (spec.name.empty()) return absl::InvalidArgumentError("model is empty");
  if (spec.chunk_tokens > 65536)
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk_tokens must be at most 65536, got ", spec.chunk_tokens));
  if (spec.chunk_tokens == 0) spec.chunk_tokens = options_.default_chunk_tokens;
  const uint32_t chunk_tokens = spec.chunk_tokens;
  if (auto status = spec.layout.Validate(); !status.ok()) return status;
  if (auto status = CheckChunkBytes(spec.name, spec.layout, chunk_tokens);
      !status.ok())
    return status;
  // The default codec must work with the model's state as it will be.
  auto check = [](const Model& model) -> absl::Status {
    const std::string& codec_spec = model.record.default_codec();
    if (codec_spec.empty()) return absl::OkStatus();
    auto codec = CreateCodec(codec_spec, model.context);
    if (codec.ok()) return absl::OkStatus();
    return absl::Status(
        codec.status().code(),
        absl::StrCat("default_codec: ", codec.status().message()));
  };
  absl::MutexLock lock(&write_mutex_);
  auto resolved = ResolveModel(models, spec.name);
  if (!resolved.ok() && resolved.status().code() != absl::StatusCode::kNotFound)
    return resolved.status();
  // The caller's own model, or a new one of the caller's.
  ModelId id{models.tenant, spec.name};
  if (resolved.ok() && (*resolved)->owner() != models.tenant) {
    const Model& seen = **resolved;
    if (seen.owner().empty() && models.may_change_unowned) {
      id.owner.clear();
    } else if (!RegistrationChanges(seen, spec)) {
      return RegisterOutcome{.chunk_tokens = chunk_tokens, .created = false};
    } else {
      return absl::PermissionDeniedError(
          seen.owner().empty()
              ? absl::StrCat("model '", spec.name,
                             "' was stored before models had owners; only "
                             "tenant 'default' may change it")
              : absl::StrCat("model '", spec.name, "' is shared with tenant '",
                             models.tenant, "' by tenant '", seen.owner(),
                             "'; only '", seen.owner(), "' may change it"));
    }
  }
  auto charge = [&](int64_t added_bytes) {
    return retention_.CheckModelQuota(id.owner, added_bytes);
  };
  auto created = models_.Register(id, std::move(spec), check, charge);
  if (!created.ok()) return created.status();
  return RegisterOutcome{.chunk_tokens = chunk_tokens, .created = *created};
}

absl::Status CacheEngine::CheckChunkBytes(const std::string& name,
                                          const KvLayout& layout,
                                          uint32_t chunk_tokens) const {
  const uint64_t chunk_bytes =
      uint64_t{layout.bytes_per_token()} * chunk_tokens;
  if (chunk_bytes <= options_.max_chunk_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "a chunk of model '", name, "' (", chunk_tokens, " tokens of ",
      layout.bytes_per_token(), " bytes) is ", chunk_bytes,
      " bytes, over this server's --max_chunk_bytes (",
      options_.max_chunk_bytes,
      "); register the model with fewer "
      "chunk_tokens"));
}

absl::StatusOr<ModelInfo> CacheEngine::GetModel(const ModelScope& models,
                                                const std::string& name) {
  auto model = ResolveModel(models, name);
  if (!model.ok()) return model.status();
  ModelInfo info{.name = name,
                 .layout = (*model)->context.layout,
                 .chunk_tokens = (*model)->chunk_tokens,
                 .default_codec = (*model)->record.default_codec()};
  for (const auto& [key, blob] : (*model)->context.codec_state)
    info.codec_state_keys.push_back(key);
  return info;
}

}  // namespace seqkv
