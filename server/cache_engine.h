// The server's data path, independent of gRPC: Put → trie → codec → RocksDB
// and back. It speaks in domain types (token spans, layouts, codec specs);
// server/kvcache_service converts the wire API to them. The jobs live in
// their own files: PutSession (assembling and encoding a Put),
// ChunkReader (the Get pipeline), Retention (limits and eviction),
// CodecCache; the engine ties them to the trie and commits.
//
// Thread-safe: any number of calls run at once. Writes that check the trie
// before changing it (a Put's commit, Delete, eviction, model registration)
// are serialized by one writer lock.
#ifndef SEQKV_SERVER_CACHE_ENGINE_H_
#define SEQKV_SERVER_CACHE_ENGINE_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "codec/kv_layout.h"
#include "server/chunk_buffer_pool.h"
#include "server/codec_cache.h"
#include "server/demoter.h"
#include "server/memory_budget.h"
#include "server/node_index.h"
#include "server/put_session.h"
#include "server/read_path.h"
#include "server/reference_planner.h"
#include "server/retention.h"
#include "server/stats.h"
#include "server/tiers.h"
#include "server/worker_pool.h"
#include "storage/kv_store.h"
#include "storage/model_registry.h"
#include "storage/trie.h"

namespace seqkv {

struct EngineOptions {
  uint32_t default_chunk_tokens = 256;
  std::string default_codec = "lossless";
  // Longest sequence one Put or lookup may carry.
  uint32_t max_tokens = 1 << 21;
  // Threads that encode and decode chunks (0: one per hardware thread).
  size_t codec_threads = 0;
  // Retention policy and the probabilistic trie's estimator.
  NodeIndexOptions index;
  // Fidelity tiers of namespaces whose limit sets none, and when demotion
  // to the lossy ones starts.
  TierPolicy tiers;
  DemoterOptions demotion;
  // Whether Puts code new chunks against stored ones: a sibling sharing
  // their head (split dedup), the same tokens after other prefixes
  // (cross-prefix residuals). Only codecs that code against references.
  ReferenceOptions references;
  // Decoded chunks that others were coded against, kept for the next Gets
  // and Puts that decode them (DecodedChunkCache).
  size_t decoded_chunk_cache_bytes = size_t{128} << 20;
  // Idle chunk buffers kept for the next Puts and Gets (ChunkBufferPool).
  size_t chunk_buffer_pool_bytes = size_t{256} << 20;
  // The memory Puts, Gets and registrations may hold at once (the idle
  // chunk buffers included), and how long a request waits for it.
  MemoryBudgetOptions memory;
  // The largest chunk a model may define (layout bytes per token x its
  // chunk_tokens): a chunk is the unit a Put assembles in memory.
  uint64_t max_chunk_bytes = uint64_t{256} << 20;
  // Once no Put, Get or Delete has run for `idle_after` (and again only
  // after the next one), the engine frees its idle chunk buffers and calls
  // `on_idle` on a background thread. The server hands the allocator's
  // freed memory back to the kernel there.
  std::function<void()> on_idle;
  absl::Duration idle_after = absl::Seconds(10);
  // How often request counters are saved (and once more at destruction),
  // so that a crash loses at most this much of them.
  absl::Duration counters_save_interval = absl::Seconds(10);
};

// Which models a request may use, by name: the caller's own first, then
// those the config shares with it, then those stored before models had
// owners (every tenant sees them, as every tenant did). Any other tenant's
// model is NOT_FOUND, as if it did not exist.
struct ModelScope {
  std::string tenant;  // owns the models the request creates
  // Model name → the tenant that owns it and shares it with this one.
  std::map<std::string, std::string, std::less<>> shared;
  // Whether the request may change the models stored before owners.
  bool may_change_unowned = false;
};

// Where a request reads: its own namespace first, then shared ones.
struct ReadScope {
  std::vector<std::string> namespaces;
  ModelScope models;
};

struct LookupQuery {
  std::string model;
  // The prompt's leading whole chunks as ChunkDigests (may be empty), then
  // the ids after them.
  std::span<const uint64_t> chunk_digests;
  std::span<const int32_t> tokens;
  // Round the match down to a multiple of this (0 or 1: token-granular).
  uint32_t alignment = 0;
  // Count only chunks held as they were Put (not demoted to a lossy tier).
  bool exact_only = false;
  // > 0: report the P̂ of the deepest matched chunk among the first this
  // many (LookupOutcome::head_probability).
  uint32_t head_chunks = 0;
};

struct LookupOutcome {
  // Tokens matched by chunks that hold KV (at any tier, or only exact ones
  // when the query asked so), and of them the leading ones held exactly.
  uint32_t matched_tokens = 0;
  uint32_t matched_tokens_exact = 0;
  std::string name_space;  // empty when nothing matched
  // P̂ of the deepest matched chunk (NodeIndex::Probability); 0 for none.
  double probability = 0;
  // P̂ of the deepest matched chunk among the query's first head_chunks
  // (a cluster's placement head: how hot it is); 0 for none or unasked.
  double head_probability = 0;
};

// How likely a stored prefix is (PrefixProbability below).
struct PrefixProbability {
  // Tokens of the query the namespace stores, as whole chunks and a
  // trailing partial one.
  uint32_t matched_tokens = 0;
  // P̂ of the deepest stored chunk of the query: the share of the
  // namespace's lookups that pass through it (1 for an empty match: every
  // lookup starts at the root).
  double probability = 1;
};

struct PutSpec {
  std::string model;
  std::vector<int32_t> tokens;
  // Registers the model with its first Put; must match it afterwards.
  std::optional<KvLayout> layout;
  std::string codec;  // empty: the model's default, then the server's
};

struct PutSummary {
  uint32_t tokens = 0;
  uint32_t chunks_new = 0;
  uint32_t chunks_deduped = 0;
  uint64_t bytes_logical = 0;
  uint64_t bytes_stored = 0;
  std::string codec;
  PutReuse reuse;
};

struct GetQuery {
  std::string model;
  std::span<const int32_t> tokens;
  uint32_t alignment = 0;
  // Token range of the match to send; end 0 means all of it.
  uint32_t begin_token = 0;
  uint32_t end_token = 0;
  // Serve only chunks held as they were Put.
  bool exact_only = false;
};

// Tokens of a Get served from chunks of one tier and codec.
struct ServedRange {
  uint32_t begin_token = 0;
  uint32_t end_token = 0;
  uint32_t lossy_tier = 0;  // 0: as the Put stored it
  std::string codec;
};

// What a Get sends, announced before its data.
struct GetPlan {
  std::string model;
  KvLayout layout;
  uint32_t matched_tokens = 0;
  uint32_t begin_token = 0;
  uint32_t end_token = 0;
  uint64_t data_bytes = 0;
  std::string name_space;  // empty when nothing matched
  // [begin_token, end_token) by tier, in order.
  std::vector<ServedRange> served;
};

struct DeleteSummary {
  uint32_t chunks_deleted = 0;
  uint64_t bytes_freed = 0;
};

struct RegisterOutcome {
  uint32_t chunk_tokens = 0;
  bool created = false;
};

struct ModelInfo {
  std::string name;
  KvLayout layout;
  uint32_t chunk_tokens = 0;
  std::string default_codec;
  std::vector<std::string> codec_state_keys;
};

class CacheEngine {
 public:
  // `store` must outlive the engine.
  CacheEngine(KvStore* store, EngineOptions options);
  ~CacheEngine();
  CacheEngine(const CacheEngine&) = delete;
  CacheEngine& operator=(const CacheEngine&) = delete;

  // Loads usage, counters and the node index, deletes orphan payloads
  // (files, and RocksDB values staged by a Put a crash cut off), and starts
  // the background thread (visits, counters, recovery from a full disk).
  // Call once, before serving. Damage found while loading (DATA_LOSS) does
  // not fail it: the store turns read-only, serves what it can read and
  // reports the damage in storage_health(); nothing is swept then.
  absl::Status Start();

  // Writes the visits counted since the last flush to the store, with what
  // the index learned (done every second on a background thread, and at
  // destruction).
  void FlushVisits();

  // The longest stored prefix of the query over the namespaces of `scope`.
  // Reads no payload; counts a visit to each matched node.
  absl::StatusOr<LookupOutcome> Lookup(const ReadScope& scope,
                                       const LookupQuery& query);

  // Checks the model (registering it as the caller's from `spec.layout`
  // when `models` has none of that name), the codec and the namespace's
  // quota, and returns a session that takes
  // the data. FinishPut commits it.
  absl::StatusOr<std::unique_ptr<PutSession>> BeginPut(
      const std::string& name_space, const ModelScope& models, PutSpec spec);
  // Commits every chunk `session` staged, with the namespace's usage and a
  // new model, in one atomic durable write, then evicts what the limits
  // require. Nothing is stored on error.
  absl::StatusOr<PutSummary> FinishPut(PutSession& session);

  // Streams the match: `on_plan` once, then `on_data` with token-major
  // bytes of at most `message_bytes` (see ChunkReader::Read). A false
  // return from either stops the stream with CANCELLED.
  absl::Status Get(const ReadScope& scope, const GetQuery& query,
                   size_t message_bytes,
                   const std::function<bool(const GetPlan&)>& on_plan,
                   const std::function<bool(std::string&)>& on_data);
  // The same into memory the caller provides (a client's shared region):
  // `destination` gets the plan and returns where its data_bytes go
  // (exactly that many bytes), or an error that ends the Get before
  // anything is read. See ChunkReader::ReadInto.
  absl::Status GetInto(
      const ReadScope& scope, const GetQuery& query,
      const std::function<absl::StatusOr<std::span<std::byte>>(const GetPlan&)>&
          destination);

  // Removes the node `tokens` reaches (chunk-aligned, or ending at a stored
  // partial chunk) and everything below it; empty `tokens`: the model's
  // whole tree in the namespace.
  absl::StatusOr<DeleteSummary> Delete(const std::string& name_space,
                                       const ModelScope& models,
                                       const std::string& model,
                                       std::span<const int32_t> tokens);

  // The stored prefix of `tokens` in `name_space` under the tenant's model
  // `model`, and its P̂; counts no visit. For operators: d_T of two
  // sequences is -log2 of this for their longest common prefix.
  absl::StatusOr<PrefixProbability> ProbabilityOf(
      const std::string& name_space, const std::string& model,
      std::span<const int32_t> tokens);

  // Registers or updates the model `models` gives that name (see
  // ModelRegistry::Register): the caller's own, or a new one of the
  // caller's when it sees none. A model another tenant shares, or one
  // stored before owners without `may_change_unowned`, is read-only:
  // registering it again unchanged is OK, changing it PERMISSION_DENIED.
  // The default codec must build with the state; the records count
  // against the caller's quota. chunk_tokens 0: the server's default.
  absl::StatusOr<RegisterOutcome> RegisterModel(const ModelScope& models,
                                                ModelSpec spec);
  absl::StatusOr<ModelInfo> GetModel(const ModelScope& models,
                                     const std::string& name);

  // Quotas per namespace and the global capacity (0: unlimited), enforced
  // at once and at every later write; call again after a config reload.
  void SetLimits(std::map<std::string, NamespaceLimit> limits,
                 uint64_t capacity_bytes);
  // The quota of `name_space` in bytes, 0 when it has none.
  uint64_t QuotaFor(const std::string& name_space) const {
    return retention_.LimitFor(name_space).quota_bytes;
  }
  uint64_t capacity_bytes() const { return retention_.capacity_bytes(); }

  // Memory the engine holds for reuse, and how often it gave it back.
  MemoryBudget& memory_budget() { return memory_; }
  size_t chunk_buffers_idle_bytes() const {
    return chunk_buffers_.idle_bytes();
  }
  uint64_t idle_releases() const {
    return idle_releases_.load(std::memory_order_relaxed);
  }
  DecodedChunkCache::Counts decoded_chunks() const {
    return decoded_chunks_.counts();
  }

  // Whether writes are taken (disk space, damage) and why not.
  StoreHealth storage_health() const { return store_->health(); }

  StatsRegistry& stats() { return stats_; }
  const Trie& trie() const { return trie_; }
  NodeIndex& index() { return index_; }
  Demoter& demoter() { return demoter_; }
  Retention& retention() { return retention_; }
  const EngineOptions& options() const { return options_; }

 private:
  // The keys of the nodes `tokens` matches below `root`, and how many
  // tokens matched: from the node index while it knows the chunks, then
  // from the trie. With `tiers`, appends each key's tier.
  absl::StatusOr<std::pair<std::vector<NodeKey>, uint32_t>> MatchKeys(
      const NodeKey& root, const Model& model, std::span<const int32_t> tokens,
      std::vector<uint32_t>* tiers = nullptr) const;
  // Longest match over the namespaces of `scope`, with node records, of
  // chunks that hold KV (held as they were Put, with `exact_only`).
  absl::StatusOr<std::pair<TrieMatch, std::string>> MatchInScope(
      const ReadScope& scope, const Model& model,
      std::span<const int32_t> tokens, bool exact_only) const;

  // RESOURCE_EXHAUSTED when a chunk of `model` is over max_chunk_bytes.
  absl::Status CheckChunkBytes(const std::string& name, const KvLayout& layout,
                               uint32_t chunk_tokens) const;
  // The model `name` means to a request with `models`, or NOT_FOUND.
  absl::StatusOr<std::shared_ptr<const Model>> ResolveModel(
      const ModelScope& models, const std::string& name);

  // Evicts what the limits require; logs a failure.
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mutex_);
  // Removes `node`, whose payload a Get found damaged (`why`), and the
  // chunks below it, so that lookups stop matching it and the next Put
  // stores it afresh; counts and logs it.
  void Quarantine(const TrieNode& node, const absl::Status& why);
  // Get and GetInto: messages through `on_data`, or `destination`'s bytes.
  absl::Status GetMatch(
      const ReadScope& scope, const GetQuery& query, size_t message_bytes,
      const std::function<bool(const GetPlan&)>* on_plan,
      const std::function<bool(std::string&)>* on_data,
      const std::function<absl::StatusOr<std::span<std::byte>>(const GetPlan&)>*
          destination);
  // Saves the request counters; logs a failure.
  void SaveCounters();
  // Restores what the node index learned before a restart (FlushVisits
  // saves it); DATA_LOSS when its record does not parse (Start then logs
  // it and goes on).
  absl::Status RestoreLearned();

  // Notes that a Put, Get or Delete is running (for `on_idle`).
  void MarkBusy();
  // Frees idle buffers and calls `on_idle` when the engine went idle long
  // enough ago and has not been reported idle since. Background thread only.
  void ReportIdleOnce();

  const EngineOptions options_;
  KvStore* const store_;
  // Before everything that may hold its buffers, so that they are destroyed
  // last.
  MemoryBudget memory_;
  ChunkBufferPool chunk_buffers_;
  NodeIndex index_;
  Trie trie_;
  ModelRegistry models_;
  StatsRegistry stats_;
  CodecCache codecs_{&models_};
  Retention retention_;
  // Serializes the writers that check the trie before changing it.
  absl::Mutex write_mutex_;
  std::atomic<uint64_t> next_put_id_;
  std::atomic<int64_t> last_busy_micros_{0};
  int64_t reported_idle_after_micros_ = -1;  // background thread only
  absl::Time counters_saved_at_;             // background thread only
  std::atomic<uint64_t> idle_releases_{0};
  absl::Notification stop_flushing_;
  std::thread visit_flusher_;
  // Failed visit flushes are reported once a minute (a full disk would
  // otherwise log one a second), with the visits lost in between.
  absl::Mutex visit_warning_mutex_;
  absl::Time visit_warned_at_ ABSL_GUARDED_BY(visit_warning_mutex_) =
      absl::InfinitePast();
  uint64_t visits_lost_ ABSL_GUARDED_BY(visit_warning_mutex_) = 0;
  // Before the reader and the planner, after the buffers its chunks hold.
  DecodedChunkCache decoded_chunks_{options_.decoded_chunk_cache_bytes};
  ChunkReader reader_{&trie_, &chunk_buffers_, &pool_, &codecs_,
                      &decoded_chunks_};
  ReferencePlanner planner_{&trie_, &index_.content(), options_.references};
  Demoter demoter_{{.trie = &trie_,
                    .index = &index_,
                    .retention = &retention_,
                    .models = &models_,
                    .codecs = &codecs_,
                    .buffers = &chunk_buffers_,
                    .write_mutex = &write_mutex_,
                    .next_payload_id = [this] { return next_put_id_++; }},
                   options_.demotion};
  // Last: destroyed first, finishing its tasks while the rest still exists.
  WorkerPool pool_;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_CACHE_ENGINE_H_
