#include "server/cache_engine.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <utility>

#include "absl/base/internal/endian.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "proto/layout_convert.h"
#include "server/chunk_layout.h"
#include "spdlog/spdlog.h"

namespace seqkv {
namespace {

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The token ids of a request, from `tokens` or `packed_tokens` (copied
// into `storage`), checked: not both set, a whole number of ids, none
// negative, at most `max_tokens`, and not empty unless `allow_empty`.
template <typename Request>
absl::StatusOr<std::span<const int32_t>> TokensOf(
    const Request& request, uint32_t max_tokens, bool allow_empty,
    std::vector<int32_t>& storage) {
  const std::string& packed = request.packed_tokens();
  std::span<const int32_t> tokens(request.tokens().data(),
                                  static_cast<size_t>(request.tokens_size()));
  if (!packed.empty()) {
    if (!tokens.empty())
      return absl::InvalidArgumentError(
          "tokens and packed_tokens are both set; send one");
    if (packed.size() % sizeof(int32_t) != 0)
      return absl::InvalidArgumentError(
          absl::StrCat("packed_tokens has ", packed.size(),
                       " bytes, not a whole number of int32 ids"));
    if (packed.size() / sizeof(int32_t) > max_tokens)
      return absl::InvalidArgumentError(
          absl::StrCat("packed_tokens has ", packed.size() / sizeof(int32_t),
                       " ids, more than the limit of ", max_tokens));
    storage.resize(packed.size() / sizeof(int32_t));
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(storage.data(), packed.data(), packed.size());
    } else {
      for (size_t i = 0; i < storage.size(); ++i)
        storage[i] = static_cast<int32_t>(
            absl::little_endian::Load32(packed.data() + i * sizeof(int32_t)));
    }
    tokens = storage;
  }
  if (tokens.empty() && !allow_empty)
    return absl::InvalidArgumentError("tokens is empty");
  if (tokens.size() > max_tokens)
    return absl::InvalidArgumentError(
        absl::StrCat("tokens has ", tokens.size(),
                     " ids, more than the limit of ", max_tokens));
  // A branch-free scan of the sign bits first (an OR vectorizes with any
  // instruction set); the position only on error.
  uint32_t signs = 0;
  for (const int32_t token : tokens) signs |= static_cast<uint32_t>(token);
  if (signs >> 31 != 0) {
    const size_t i = std::find_if(tokens.begin(), tokens.end(),
                                  [](int32_t token) { return token < 0; }) -
                     tokens.begin();
    return absl::InvalidArgumentError(
        absl::StrCat("tokens[", i, "] is negative (", tokens[i], ")"));
  }
  return tokens;
}

std::span<const int32_t> Span(
    const google::protobuf::RepeatedField<int32_t>& r) {
  return {r.data(), static_cast<size_t>(r.size())};
}

// Fills `messages`, which hold tokens [from, to) of the chunk `record`
// names in wire order, one after another. A chunk stored verbatim in wire
// order is read straight into them; other payloads are decoded into a
// chunk, then moved into wire order.
absl::Status ReadToMessages(const Trie& trie, ChunkBufferPool& buffers,
                            const Codec& codec, const KvLayout& layout,
                            const NodeRecord& record, uint32_t from,
                            uint32_t to, std::span<ChunkBuffer> messages) {
  const ChunkInfo info{&layout, static_cast<uint32_t>(record.tokens_size()),
                       record.first_position(), Span(record.tokens())};
  const size_t token_bytes = layout.bytes_per_token();
  if (record.payload_token_major()) {
    // The tokens outside the range are read too: the checksum covers them.
    ChunkBuffer before = buffers.Acquire(size_t{from} * token_bytes);
    ChunkBuffer after =
        buffers.Acquire(size_t{info.num_tokens - to} * token_bytes);
    std::vector<std::span<char>> pieces;
    pieces.emplace_back(before.str());
    for (ChunkBuffer& message : messages) pieces.emplace_back(message.str());
    pieces.emplace_back(after.str());
    return trie.ReadPayloadInto(record, pieces);
  }
  auto payload = trie.ReadPayload(record);
  if (!payload.ok()) return payload.status();
  std::span<const std::byte> chunk = std::as_bytes(std::span(payload->view()));
  ChunkBuffer decoded;
  if (!codec.stores_chunk_verbatim()) {
    decoded = buffers.Acquire(info.num_bytes());
    if (auto status = codec.Decode(info, payload->view(), decoded.bytes());
        !status.ok())
      return absl::DataLossError(
          absl::StrCat("its payload does not decode: ", status.message()));
    chunk = decoded.bytes();
  } else if (chunk.size() != info.num_bytes()) {
    return absl::DataLossError(absl::StrCat(
        "payload has ", chunk.size(), " bytes, expected ", info.num_bytes()));
  }
  for (ChunkBuffer& message : messages) {
    const uint32_t count =
        static_cast<uint32_t>(message.bytes().size() / token_bytes);
    ChunkToTokenMajor(layout, info.num_tokens, chunk, from, from + count,
                      message.bytes());
    from += count;
  }
  return absl::OkStatus();
}

// Dimensions and dtype must agree; RoPE only when the caller states one.
bool SameStoredLayout(const KvLayout& registered, const KvLayout& given) {
  KvLayout a = registered, b = given;
  if (b.rope.style == RopeStyle::kNone) a.rope = b.rope;
  return a == b;
}

}  // namespace

CacheEngine::CacheEngine(KvStore* store, EngineOptions options)
    : store_(store),
      options_(std::move(options)),
      chunk_buffers_(options_.chunk_buffer_pool_bytes),
      trie_(store),
      models_(store),
      stats_(store),
      next_put_id_(static_cast<uint64_t>(NowMicros())),
      pool_(options_.codec_threads) {}

CacheEngine::~CacheEngine() {
  stop_flushing_.Notify();
  if (visit_flusher_.joinable()) visit_flusher_.join();
  FlushVisits();
  stats_.Save().IgnoreError();
}

absl::Status CacheEngine::Start() {
  if (auto status = stats_.Load(); !status.ok()) return status;
  if (auto status = index_.Load(trie_); !status.ok()) return status;
  auto orphans = trie_.SweepOrphanPayloadFiles();
  if (!orphans.ok()) return orphans.status();
  if (*orphans > 0)
    spdlog::info(
        "deleted {} payload files no chunk refers to (left by a "
        "crash or a failed removal)",
        *orphans);
  MarkBusy();  // the idle time counts from the start
  visit_flusher_ = std::thread([this] {
    while (!stop_flushing_.WaitForNotificationWithTimeout(absl::Seconds(1))) {
      FlushVisits();
      ReportIdleOnce();
    }
  });
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
  chunk_buffers_.ReleaseIdle();
  if (options_.on_idle) options_.on_idle();
  idle_releases_.fetch_add(1, std::memory_order_relaxed);
}

void CacheEngine::FlushVisits() {
  const std::vector<NodeVisits> visits = index_.TakeVisits();
  // Visits are statistics: losing some to an error is acceptable.
  if (auto status = trie_.RecordVisits(visits); !status.ok())
    spdlog::warn("recording {} node visits failed: {}", visits.size(),
                 status.ToString());
}

void CacheEngine::SetLimits(std::map<std::string, NamespaceLimit> limits,
                            uint64_t capacity_bytes) {
  {
    absl::MutexLock lock(&limits_mutex_);
    limits_ = std::move(limits);
    capacity_bytes_ = capacity_bytes;
  }
  std::lock_guard<std::mutex> lock(trie_.write_mutex());
  EnforceLimitsLocked().IgnoreError();
}

NamespaceLimit CacheEngine::LimitFor(const std::string& name_space) const {
  absl::MutexLock lock(&limits_mutex_);
  auto it = limits_.find(name_space);
  return it == limits_.end() ? NamespaceLimit{} : it->second;
}

uint64_t CacheEngine::QuotaFor(const std::string& name_space) const {
  return LimitFor(name_space).quota_bytes;
}

uint64_t CacheEngine::capacity_bytes() const {
  absl::MutexLock lock(&limits_mutex_);
  return capacity_bytes_;
}

absl::Status CacheEngine::CheckQuotaLocked(const std::string& name_space,
                                           uint64_t added_bytes) {
  const NamespaceLimit limit = LimitFor(name_space);
  if (!limit.reject || limit.quota_bytes == 0) return absl::OkStatus();
  const int64_t used = stats_.usage(name_space).bytes_stored;
  if (static_cast<uint64_t>(used) + added_bytes > limit.quota_bytes)
    return absl::ResourceExhaustedError(absl::StrCat(
        "namespace '", name_space, "' is over its quota: ", used,
        " bytes stored + ", added_bytes, " new > ", limit.quota_bytes));
  return absl::OkStatus();
}

absl::Status CacheEngine::EnforceLimitsLocked() {
  const uint64_t capacity = capacity_bytes();
  NodeRemovals removals;
  std::map<std::string, Usage> deltas;
  std::vector<NodeKey> victims;
  auto usage_of = [&](const std::string& ns) {
    Usage usage = stats_.usage(ns);
    const Usage& delta = deltas[ns];
    usage.bytes_stored += delta.bytes_stored;
    return usage.bytes_stored;
  };
  // Evicts the least recently used leaf of `ns`; false when it has none.
  auto evict_one = [&](const std::string& ns) -> absl::StatusOr<bool> {
    auto victim = index_.OldestLeaf(ns);
    if (!victim) return false;
    auto record = trie_.ReadNode(*victim);
    if (!record.ok()) return record.status();
    index_.Remove(*victim);
    if (!record->has_value()) return true;  // already gone
    trie_.RemoveLeaf(*victim, **record, removals);
    Usage& delta = deltas[ns];
    delta.chunks_stored -= 1;
    delta.bytes_logical -= static_cast<int64_t>((*record)->bytes_logical());
    delta.bytes_stored -= static_cast<int64_t>((*record)->bytes_stored());
    victims.push_back(*victim);
    return true;
  };
  std::map<std::string, NamespaceLimit> limits;
  {
    absl::MutexLock lock(&limits_mutex_);
    limits = limits_;
  }
  for (const auto& [ns, limit] : limits) {
    if (limit.quota_bytes == 0 || limit.reject) continue;
    while (static_cast<uint64_t>(std::max<int64_t>(0, usage_of(ns))) >
           limit.quota_bytes) {
      auto evicted = evict_one(ns);
      if (!evicted.ok()) return evicted.status();
      if (!*evicted) break;
    }
  }
  if (capacity > 0) {
    // Fair across tenants: always take from the namespace storing the most.
    while (true) {
      int64_t total = 0, largest = -1;
      std::string largest_ns;
      for (const auto& [ns, stats] : stats_.SnapshotAll()) {
        const int64_t used = usage_of(ns);
        total += used;
        if (used > largest) largest = used, largest_ns = ns;
      }
      if (total <= static_cast<int64_t>(capacity) || largest <= 0) break;
      auto evicted = evict_one(largest_ns);
      if (!evicted.ok()) return evicted.status();
      if (!*evicted) break;
    }
  }
  if (victims.empty()) return absl::OkStatus();
  for (const auto& [ns, delta] : deltas)
    stats_.StageUsage(ns, delta, removals.batch);
  if (auto status = trie_.CommitRemovals(removals); !status.ok()) return status;
  for (const auto& [ns, delta] : deltas) {
    stats_.ApplyUsage(ns, delta);
    if (delta.chunks_stored < 0)
      stats_.CountEvictions(ns, static_cast<uint64_t>(-delta.chunks_stored));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Codec>> CacheEngine::CodecFor(
    const std::shared_ptr<const Model>& model, const std::string& spec) {
  // The key holds the model's address; the entry keeps the model alive so
  // the address cannot be reused by another model.
  const std::string key =
      absl::StrCat(reinterpret_cast<uintptr_t>(model.get()), "|", spec);
  {
    absl::MutexLock lock(&codecs_mutex_);
    if (auto it = codecs_.find(key); it != codecs_.end()) return it->second;
  }
  auto codec = CreateCodec(spec, model->context);
  if (!codec.ok()) return codec.status();
  // Pairs the codec with its model: the aliasing constructor shares the
  // model's ownership and points at the codec.
  auto holder = std::make_shared<
      std::pair<std::shared_ptr<const Model>, std::unique_ptr<Codec>>>(
      model, std::move(*codec));
  std::shared_ptr<const Codec> shared(holder, holder->second.get());
  absl::MutexLock lock(&codecs_mutex_);
  codecs_.emplace(key, shared);
  return shared;
}

absl::StatusOr<std::pair<std::vector<NodeKey>, uint32_t>>
CacheEngine::MatchKeys(const NodeKey& root, const Model& model,
                       std::span<const int32_t> tokens) const {
  std::vector<NodeKey> keys =
      index_.MatchWholeChunks(root, tokens, model.chunk_tokens);
  uint32_t matched = static_cast<uint32_t>(keys.size()) * model.chunk_tokens;
  if (matched < tokens.size()) {
    // A partial chunk at the end, or one the index does not hold yet.
    auto rest = trie_.Match(keys.empty() ? root : keys.back(),
                            tokens.subspan(matched), model.chunk_tokens);
    if (!rest.ok()) return rest.status();
    for (const TrieNode& node : rest->nodes) keys.push_back(node.key);
    matched += rest->matched_tokens;
  }
  return std::make_pair(std::move(keys), matched);
}

absl::StatusOr<std::pair<TrieMatch, std::string>> CacheEngine::MatchInScope(
    const ReadScope& scope, const Model& model,
    std::span<const int32_t> tokens) {
  std::pair<TrieMatch, std::string> best;
  for (const std::string& ns : scope.namespaces) {
    auto match =
        trie_.Match(RootKey(ns, model.fingerprint), tokens, model.chunk_tokens);
    if (!match.ok()) return match.status();
    if (match->matched_tokens > best.first.matched_tokens ||
        best.second.empty()) {
      best = {std::move(*match), ns};
    }
  }
  return best;
}

absl::StatusOr<LookupOutcome> CacheEngine::Lookup(
    const ReadScope& scope, const v1::LookupRequest& request) {
  if (request.model().empty())
    return absl::InvalidArgumentError("model is empty");
  const std::string& packed_digests = request.chunk_digests();
  if (packed_digests.size() % sizeof(uint64_t) != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("chunk_digests has ", packed_digests.size(),
                     " bytes, not a whole number of 8-byte digests"));
  std::vector<uint64_t> digests(packed_digests.size() / sizeof(uint64_t));
  for (size_t i = 0; i < digests.size(); ++i)
    digests[i] = absl::little_endian::Load64(packed_digests.data() +
                                             i * sizeof(uint64_t));
  std::vector<int32_t> unpacked;
  auto checked = TokensOf(request, options_.max_tokens,
                          /*allow_empty=*/!digests.empty(), unpacked);
  if (!checked.ok()) return checked.status();
  const std::span<const int32_t> tokens = *checked;
  auto model = models_.Find(request.model());
  if (!model.ok()) return model.status();
  const uint64_t digested_tokens =
      uint64_t{digests.size()} * (*model)->chunk_tokens;
  if (digested_tokens + tokens.size() > options_.max_tokens)
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk_digests and tokens stand for ", digested_tokens + tokens.size(),
        " ids, more than the limit of ", options_.max_tokens));
  std::vector<NodeKey> best_keys;
  LookupOutcome outcome;
  for (const std::string& ns : scope.namespaces) {
    const NodeKey root = RootKey(ns, (*model)->fingerprint);
    std::vector<NodeKey> keys = index_.MatchChunkDigests(root, digests);
    uint32_t matched =
        static_cast<uint32_t>(keys.size()) * (*model)->chunk_tokens;
    if (keys.size() == digests.size() && !tokens.empty()) {
      auto rest = MatchKeys(keys.empty() ? root : keys.back(), **model, tokens);
      if (!rest.ok()) return rest.status();
      keys.insert(keys.end(), rest->first.begin(), rest->first.end());
      matched += rest->second;
    }
    if (matched > outcome.matched_tokens) {
      best_keys = std::move(keys);
      outcome = {matched, ns};
    }
  }
  index_.Visit(best_keys, NowMicros());
  if (request.alignment() > 1)
    outcome.matched_tokens -= outcome.matched_tokens % request.alignment();
  if (outcome.matched_tokens == 0) outcome.name_space.clear();
  stats_.CountLookup(scope.namespaces.front(), digested_tokens + tokens.size(),
                     outcome.matched_tokens);
  return outcome;
}

absl::StatusOr<std::unique_ptr<PutSession>> CacheEngine::BeginPut(
    const std::string& name_space, const v1::PutHeader& header) {
  MarkBusy();
  if (header.model().empty())
    return absl::InvalidArgumentError("header.model is empty");
  std::vector<int32_t> unpacked;
  auto checked = TokensOf(header, options_.max_tokens, false, unpacked);
  if (!checked.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("header.", checked.status().message()));
  const std::span<const int32_t> tokens = *checked;
  std::shared_ptr<const Model> model;
  bool new_model = false;
  auto found = models_.Find(header.model());
  if (found.ok()) {
    model = *found;
    if (header.has_layout()) {
      auto layout = LayoutFromProto(header.layout());
      if (!layout.ok()) return layout.status();
      if (!SameStoredLayout(model->context.layout, *layout))
        return absl::FailedPreconditionError(absl::StrCat(
            "header.layout differs from the layout registered for model '",
            header.model(), "': ",
            DescribeLayoutDifference(model->context.layout, *layout)));
    }
  } else if (found.status().code() == absl::StatusCode::kNotFound) {
    if (!header.has_layout())
      return absl::NotFoundError(absl::StrCat(
          "unknown model '", header.model(),
          "': send header.layout with the first Put or call RegisterModel"));
    ModelRecord record;
    record.set_name(header.model());
    *record.mutable_layout() = header.layout();
    record.set_chunk_tokens(options_.default_chunk_tokens);
    record.set_created_unix_micros(NowMicros());
    auto built = ModelRegistry::FromRecord(std::move(record));
    if (!built.ok()) return built.status();
    model = *built;
    new_model = true;
  } else {
    return found.status();
  }
  {
    std::lock_guard<std::mutex> lock(trie_.write_mutex());
    if (auto status = CheckQuotaLocked(name_space, 1); !status.ok())
      return status;
  }
  std::string spec = header.codec();
  if (spec.empty()) spec = model->record.default_codec();
  if (spec.empty()) spec = options_.default_codec;
  auto codec = CodecFor(model, spec);
  if (!codec.ok())
    return absl::Status(
        codec.status().code(),
        absl::StrCat("header.codec: ", codec.status().message()));
  return std::make_unique<PutSession>(
      this, name_space, model, new_model, *codec,
      std::vector<int32_t>(tokens.begin(), tokens.end()));
}

absl::Status CacheEngine::Get(
    const ReadScope& scope, const v1::GetRequest& request, size_t message_bytes,
    const std::function<bool(const v1::GetHeader&)>& on_header,
    const std::function<bool(std::string&)>& on_data) {
  MarkBusy();
  absl::Cleanup busy_until_done = [this] { MarkBusy(); };
  if (request.model().empty())
    return absl::InvalidArgumentError("model is empty");
  std::vector<int32_t> unpacked;
  auto checked = TokensOf(request, options_.max_tokens, false, unpacked);
  if (!checked.ok()) return checked.status();
  const std::span<const int32_t> tokens = *checked;
  auto found = models_.Find(request.model());
  if (!found.ok()) return found.status();
  const Model& model = **found;
  const KvLayout& layout = model.context.layout;
  auto match = MatchInScope(scope, model, tokens);
  if (!match.ok()) return match.status();
  uint32_t matched = match->first.matched_tokens;
  if (request.alignment() > 1) matched -= matched % request.alignment();
  const uint32_t begin = request.begin_token();
  const uint32_t end = request.end_token() == 0 ? matched : request.end_token();
  if (begin > end || end > matched)
    return absl::OutOfRangeError(absl::StrCat("token range [", begin, ", ", end,
                                              ") is outside the ", matched,
                                              " stored tokens that match"));
  v1::GetHeader header;
  header.set_model(model.record.name());
  *header.mutable_layout() = model.record.layout();
  header.set_matched_tokens(matched);
  header.set_begin_token(begin);
  header.set_end_token(end);
  header.set_data_bytes(uint64_t{end - begin} * layout.bytes_per_token());
  header.set_namespace_(matched > 0 ? match->second : "");
  if (!on_header(header)) return absl::CancelledError("client went away");

  // The pieces of matched chunks that fall in [begin, end).
  struct Segment {
    const TrieNode* node;
    uint32_t from, to;  // token offsets inside the chunk
    std::shared_ptr<const Codec> codec;
  };
  std::vector<Segment> segments;
  uint32_t node_start = 0;
  for (const TrieNode& node : match->first.nodes) {
    const uint32_t from = std::max(begin, node_start);
    const uint32_t to = std::min(end, node_start + node.matched_tokens);
    if (from < to) {
      auto codec = CodecFor(*found, node.record.codec());
      if (!codec.ok())
        return absl::DataLossError(absl::StrCat(
            "stored chunk uses codec '", node.record.codec(),
            "' which this server cannot build: ", codec.status().message()));
      segments.push_back({&node, from - node_start, to - node_start, *codec});
    }
    node_start += node.matched_tokens;
  }
  // Decode on the worker pool, one chunk ahead of the one being sent, into
  // the messages' own buffers: whole tokens per message where a token fits
  // one, so nothing is copied again to split them.
  const size_t token_bytes = layout.bytes_per_token();
  const uint32_t tokens_per_message =
      static_cast<uint32_t>(std::max<size_t>(1, message_bytes / token_bytes));
  struct DecodeJob {
    std::vector<ChunkBuffer> messages;
    absl::Status status;
    absl::Notification done;
  };
  auto start_decode = [&](const Segment& segment) {
    auto job = std::make_unique<DecodeJob>();
    for (uint32_t first = segment.from; first < segment.to;
         first += tokens_per_message)
      job->messages.push_back(chunk_buffers_.Acquire(
          std::min(segment.to - first, tokens_per_message) * token_bytes));
    pool_.Submit([this, &layout, &segment, raw = job.get()] {
      const NodeRecord& record = segment.node->record;
      raw->status =
          ReadToMessages(trie_, chunk_buffers_, *segment.codec, layout, record,
                         segment.from, segment.to, raw->messages);
      if (!raw->status.ok() && RemovedUnderRead(segment.node->key, record))
        raw->status = absl::AbortedError(
            absl::StrCat("stored chunk ", segment.node->key.Hex(),
                         " was deleted or evicted while this Get read it; "
                         "retry the Get"));
      else if (!raw->status.ok())
        raw->status =
            absl::Status(raw->status.code(),
                         absl::StrCat("stored chunk ", segment.node->key.Hex(),
                                      ": ", raw->status.message()));
      raw->done.Notify();
    });
    return job;
  };
  std::unique_ptr<DecodeJob> next =
      segments.empty() ? nullptr : start_decode(segments[0]);
  for (size_t i = 0; i < segments.size(); ++i) {
    std::unique_ptr<DecodeJob> current = std::exchange(next, nullptr);
    if (i + 1 < segments.size()) next = start_decode(segments[i + 1]);
    current->done.WaitForNotification();
    absl::Status status = current->status;
    for (ChunkBuffer& buffer : current->messages) {
      if (!status.ok()) break;
      std::string& message = buffer.str();
      if (message.size() <= message_bytes) {
        if (!on_data(message))
          status = absl::CancelledError("client went away");
        continue;
      }
      // A token larger than a message is sent in slices.
      for (size_t offset = 0; status.ok() && offset < message.size();
           offset += message_bytes) {
        std::string piece = message.substr(offset, message_bytes);
        if (!on_data(piece)) status = absl::CancelledError("client went away");
      }
    }
    if (!status.ok()) {
      if (next) next->done.WaitForNotification();  // it points at segments
      return status;
    }
  }
  std::vector<NodeKey> keys;
  for (const TrieNode& node : match->first.nodes) keys.push_back(node.key);
  index_.Visit(keys, NowMicros());
  stats_.CountGet(scope.namespaces.front(), end - begin);
  return absl::OkStatus();
}

bool CacheEngine::RemovedUnderRead(const NodeKey& key,
                                   const NodeRecord& record) const {
  auto now = trie_.ReadNode(key);
  // Gone, or stored again by a later Put under another payload key.
  return now.ok() &&
         (!now->has_value() || (*now)->payload_key() != record.payload_key());
}

absl::StatusOr<v1::DeleteResponse> CacheEngine::Delete(
    const std::string& name_space, const v1::DeleteRequest& request) {
  MarkBusy();
  if (request.model().empty())
    return absl::InvalidArgumentError("model is empty");
  std::vector<int32_t> unpacked;
  auto checked = TokensOf(request, options_.max_tokens, true, unpacked);
  if (!checked.ok()) return checked.status();
  const std::span<const int32_t> tokens = *checked;
  auto model = models_.Find(request.model());
  if (!model.ok()) return model.status();
  std::lock_guard<std::mutex> lock(trie_.write_mutex());
  NodeRemovals removals;
  auto removal = trie_.RemoveSubtree(RootKey(name_space, (*model)->fingerprint),
                                     tokens, (*model)->chunk_tokens, removals);
  if (!removal.ok()) return removal.status();
  const Usage delta{-static_cast<int64_t>(removal->chunks),
                    -static_cast<int64_t>(removal->bytes_logical),
                    -static_cast<int64_t>(removal->bytes_stored)};
  stats_.StageUsage(name_space, delta, removals.batch);
  if (auto status = trie_.CommitRemovals(removals); !status.ok()) return status;
  stats_.ApplyUsage(name_space, delta);
  for (const NodeKey& key : removal->keys) index_.Remove(key);
  v1::DeleteResponse response;
  response.set_chunks_deleted(removal->chunks);
  response.set_bytes_freed(removal->bytes_stored);
  return response;
}

absl::StatusOr<v1::RegisterModelResponse> CacheEngine::RegisterModel(
    v1::RegisterModelRequest request) {
  if (request.model().empty())
    return absl::InvalidArgumentError("model is empty");
  if (!request.has_layout())
    return absl::InvalidArgumentError("layout is missing");
  if (request.chunk_tokens() > 65536)
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk_tokens must be at most 65536, got ", request.chunk_tokens()));
  ModelRecord record;
  record.set_name(request.model());
  *record.mutable_layout() = request.layout();
  record.set_chunk_tokens(request.chunk_tokens() == 0
                              ? options_.default_chunk_tokens
                              : request.chunk_tokens());
  record.set_default_codec(request.default_codec());
  record.mutable_codec_state()->swap(*request.mutable_codec_state());
  record.set_created_unix_micros(NowMicros());
  const uint32_t chunk_tokens = record.chunk_tokens();
  // The default codec must work with the model's state as it will be.
  auto check = [](const Model& model) -> absl::Status {
    const std::string& spec = model.record.default_codec();
    if (spec.empty()) return absl::OkStatus();
    auto codec = CreateCodec(spec, model.context);
    if (codec.ok()) return absl::OkStatus();
    return absl::Status(
        codec.status().code(),
        absl::StrCat("default_codec: ", codec.status().message()));
  };
  std::lock_guard<std::mutex> lock(trie_.write_mutex());
  auto created = models_.Register(std::move(record), check);
  if (!created.ok()) return created.status();
  v1::RegisterModelResponse response;
  response.set_model(request.model());
  response.set_chunk_tokens(chunk_tokens);
  response.set_created(*created);
  return response;
}

absl::StatusOr<v1::GetModelResponse> CacheEngine::GetModel(
    const std::string& name) {
  auto model = models_.Find(name);
  if (!model.ok()) return model.status();
  v1::GetModelResponse response;
  response.set_model(name);
  *response.mutable_layout() = (*model)->record.layout();
  response.set_chunk_tokens((*model)->chunk_tokens);
  response.set_default_codec((*model)->record.default_codec());
  for (const auto& [key, blob] : (*model)->context.codec_state)
    response.add_codec_state_keys(key);
  return response;
}

// --- PutSession ---

PutSession::PutSession(CacheEngine* engine, std::string name_space,
                       std::shared_ptr<const Model> model, bool new_model,
                       std::shared_ptr<const Codec> codec,
                       std::vector<int32_t> tokens)
    : engine_(engine),
      name_space_(std::move(name_space)),
      model_(std::move(model)),
      new_model_(new_model),
      codec_(std::move(codec)),
      tokens_(std::move(tokens)),
      put_id_(engine->next_put_id_.fetch_add(1)),
      parent_(RootKey(name_space_, model_->fingerprint)) {}

PutSession::~PutSession() {
  engine_->MarkBusy();
  Collect(0).IgnoreError();  // tasks point into this session
  if (!finished_) engine_->trie_.DiscardPayloads(staged_);
}

absl::Status PutSession::Collect(size_t keep) {
  absl::Status first_error;
  while (in_flight_.size() > keep) {
    std::unique_ptr<EncodeJob> job = std::move(in_flight_.front());
    in_flight_.pop_front();
    job->done.WaitForNotification();
    if (job->status.ok()) {
      staged_.push_back(std::move(job->node));
    } else if (first_error.ok()) {
      // Its payload may be half written; discard it with the rest.
      staged_.push_back(std::move(job->node));
      first_error = job->status;
    }
  }
  return first_error;
}

absl::Status PutSession::Append(std::string_view bytes) {
  const KvLayout& layout = model_->context.layout;
  const size_t token_bytes = layout.bytes_per_token();
  const uint64_t expected = uint64_t{tokens_.size()} * token_bytes;
  if (bytes_received_ + bytes.size() > expected)
    return absl::InvalidArgumentError(absl::StrCat(
        "data exceeds the ", expected, " bytes that ", tokens_.size(),
        " tokens of layout ", layout.DebugString(), " need"));
  bytes_received_ += bytes.size();
  // Tokens go straight from the message into their places in the chunk;
  // only a token split across messages is copied twice.
  while (!bytes.empty()) {
    if (!chunk_) {
      chunk_size_ = std::min<uint32_t>(model_->chunk_tokens,
                                       tokens_.size() - next_token_);
      chunk_ = engine_->chunk_buffers_.Acquire(chunk_size_ * token_bytes);
      chunk_filled_ = 0;
    }
    if (!partial_token_.empty() || bytes.size() < token_bytes) {
      const size_t take =
          std::min(bytes.size(), token_bytes - partial_token_.size());
      partial_token_.append(bytes.substr(0, take));
      bytes.remove_prefix(take);
      if (partial_token_.size() < token_bytes) break;
      PlaceTokens(std::as_bytes(std::span(partial_token_)), 1);
      partial_token_.clear();
    } else {
      const uint32_t count = static_cast<uint32_t>(std::min<size_t>(
          bytes.size() / token_bytes, chunk_size_ - chunk_filled_));
      PlaceTokens(std::as_bytes(std::span(bytes.data(), count * token_bytes)),
                  count);
      bytes.remove_prefix(count * token_bytes);
    }
    if (chunk_filled_ == chunk_size_) {
      if (auto status = FlushChunk(); !status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

void PutSession::PlaceTokens(std::span<const std::byte> token_major,
                             uint32_t count) {
  const KvLayout& layout = model_->context.layout;
  if (codec_->stores_chunk_verbatim()) {
    // Kept in wire order, so that a Get reads it straight into messages.
    std::memcpy(
        chunk_.bytes().data() + chunk_filled_ * layout.bytes_per_token(),
        token_major.data(), token_major.size());
  } else {
    ScatterTokens(layout, chunk_size_, chunk_filled_, count, token_major,
                  chunk_.bytes());
  }
  chunk_filled_ += count;
}

absl::Status PutSession::FlushChunk() {
  const KvLayout& layout = model_->context.layout;
  const uint32_t count = chunk_size_;
  const std::span<const int32_t> chunk_tokens(tokens_.data() + next_token_,
                                              count);
  const NodeKey key = ChildKey(parent_, chunk_tokens);
  auto existing = engine_->trie_.ReadNode(key);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) {
    const auto& stored = (*existing)->tokens();
    if (!std::equal(chunk_tokens.begin(), chunk_tokens.end(), stored.begin(),
                    stored.end()))
      return absl::InternalError(
          absl::StrCat("hash collision on trie node ", key.Hex()));
    ++deduped_;
    path_.push_back(key);
    chunk_.reset();
  } else {
    auto job = std::make_unique<EncodeJob>();
    job->node.key = key;
    std::string payload_key = key.Bytes();
    char id[8];
    absl::big_endian::Store64(id, put_id_);
    payload_key.append(id, 8);
    NodeRecord& record = job->node.record;
    record.set_parent_key(parent_.Bytes());
    record.mutable_tokens()->Add(chunk_tokens.begin(), chunk_tokens.end());
    record.set_depth(next_token_ / model_->chunk_tokens);
    record.set_first_position(next_token_);
    record.set_payload_key(payload_key);
    record.set_codec(codec_->spec());
    record.set_payload_token_major(codec_->stores_chunk_verbatim());
    record.set_bytes_logical(uint64_t{count} * layout.bytes_per_token());
    record.set_created_unix_micros(NowMicros());
    record.set_namespace_(name_space_);
    record.set_model(model_->record.name());
    job->chunk = std::move(chunk_);
    EncodeJob* raw = job.get();
    engine_->pool_.Submit([this, raw,
                           info = ChunkInfo{&layout, count, next_token_,
                                            chunk_tokens}] {
      const std::span<const std::byte> chunk = raw->chunk.bytes();
      std::string payload;
      std::string_view stored;
      if (codec_->stores_chunk_verbatim()) {
        stored = {reinterpret_cast<const char*>(chunk.data()), chunk.size()};
      } else {
        raw->status = codec_->Encode(info, chunk, payload);
        stored = payload;
      }
      if (raw->status.ok()) {
        raw->node.record.set_bytes_stored(stored.size());
        raw->status = engine_->trie_.StagePayload(stored, raw->node.record);
      }
      raw->chunk.reset();
      raw->done.Notify();
    });
    in_flight_.push_back(std::move(job));
    if (auto status = Collect(kMaxChunksInFlight); !status.ok()) return status;
  }
  parent_ = key;
  next_token_ += count;
  return absl::OkStatus();
}

absl::StatusOr<v1::PutResponse> PutSession::Finish() {
  const KvLayout& layout = model_->context.layout;
  const uint64_t expected = uint64_t{tokens_.size()} * layout.bytes_per_token();
  if (bytes_received_ != expected)
    return absl::InvalidArgumentError(absl::StrCat(
        "stream ended after ", bytes_received_, " of the ", expected,
        " data bytes that ", tokens_.size(), " tokens need"));
  // Every chunk was handed off when its last token arrived.
  if (auto status = Collect(0); !status.ok()) return status;
  std::lock_guard<std::mutex> lock(engine_->trie_.write_mutex());
  if (new_model_) {
    // Another Put may have registered the model since this one began.
    auto found = engine_->models_.Find(model_->record.name());
    if (found.ok()) {
      if (!((*found)->context.layout == model_->context.layout) ||
          (*found)->chunk_tokens != model_->chunk_tokens)
        return absl::FailedPreconditionError(
            absl::StrCat("model '", model_->record.name(),
                         "' was registered meanwhile with another layout"));
      new_model_ = false;
    } else if (found.status().code() != absl::StatusCode::kNotFound) {
      return found.status();
    }
  }
  Usage delta;
  auto committed = engine_->trie_.Commit(
      staged_, [&](const CommitResult& result, rocksdb::WriteBatch& batch) {
        if (auto status = engine_->CheckQuotaLocked(name_space_,
                                                    result.bytes_stored_added);
            !status.ok())
          return status;
        delta = {result.added, static_cast<int64_t>(result.bytes_logical_added),
                 static_cast<int64_t>(result.bytes_stored_added)};
        engine_->stats_.StageUsage(name_space_, delta, batch);
        if (new_model_) engine_->models_.AddToBatch(model_->record, batch);
        return absl::OkStatus();
      });
  if (!committed.ok()) return committed.status();
  finished_ = true;
  engine_->stats_.ApplyUsage(name_space_, delta);
  if (new_model_) engine_->models_.Remember(model_);
  const int64_t now = NowMicros();
  for (const PendingNode& node : staged_)
    if (!committed->raced_keys.contains(node.key))
      engine_->index_.Add(node.key, node.record, now);
  engine_->index_.Touch(path_, now);
  if (auto status = engine_->EnforceLimitsLocked(); !status.ok())
    spdlog::warn("eviction after a Put failed: {}", status.ToString());
  const uint32_t deduped = deduped_ + committed->raced;
  engine_->stats_.CountPut(name_space_, tokens_.size(), deduped, expected,
                           committed->bytes_logical_added);
  v1::PutResponse response;
  response.set_tokens(static_cast<uint32_t>(tokens_.size()));
  response.set_chunks_new(committed->added);
  response.set_chunks_deduped(deduped);
  response.set_bytes_logical(expected);
  response.set_bytes_stored(committed->bytes_stored_added);
  response.set_codec(codec_->spec());
  return response;
}

}  // namespace seqkv
