// The server's data path, independent of gRPC: Put → trie → codec → RocksDB
// and back. The gRPC service is a thin adapter over this class.
#ifndef SEQKV_SERVER_CACHE_ENGINE_H_
#define SEQKV_SERVER_CACHE_ENGINE_H_

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "codec/codec.h"
#include "seqkv/v1/kvcache.pb.h"
#include "server/chunk_buffer_pool.h"
#include "server/node_index.h"
#include "server/stats.h"
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
  // Idle chunk buffers kept for the next Puts and Gets (ChunkBufferPool).
  size_t chunk_buffer_pool_bytes = size_t{256} << 20;
  // Once no Put, Get or Delete has run for `idle_after` (and again only
  // after the next one), the engine frees its idle chunk buffers and calls
  // `on_idle` on a background thread. The server hands the allocator's
  // freed memory back to the kernel there.
  std::function<void()> on_idle;
  absl::Duration idle_after = absl::Seconds(10);
};

// Where a request reads: its own namespace first, then shared ones.
struct ReadScope {
  std::vector<std::string> namespaces;
};

// Storage limit of one namespace (after dedup and compression).
struct NamespaceLimit {
  uint64_t quota_bytes = 0;  // 0: none
  // Over quota: refuse the Put (true) or evict the namespace's least
  // recently used chunks (false).
  bool reject = false;
};

struct LookupOutcome {
  uint32_t matched_tokens = 0;
  std::string name_space;
};

class PutSession;

class CacheEngine {
 public:
  CacheEngine(KvStore* store, EngineOptions options);
  ~CacheEngine();

  // Loads counters and the node index; starts writing visits back.
  absl::Status Start();

  // Writes the visits counted since the last flush to the store (done every
  // second on a background thread, and at destruction).
  void FlushVisits();

  absl::StatusOr<LookupOutcome> Lookup(const ReadScope& scope,
                                       const v1::LookupRequest& request);

  // Validates the header and returns a session that takes the data.
  absl::StatusOr<std::unique_ptr<PutSession>> BeginPut(
      const std::string& name_space, const v1::PutHeader& header);

  // Streams the cache: `on_header` once, then `on_data` with token-major
  // bytes of at most `message_bytes`. A false return stops the stream
  // (client gone) with CANCELLED. `on_data` may use the string's buffer
  // while it sends (swap it into a message) but must leave the string as it
  // found it: the buffer is reused for later messages.
  absl::Status Get(const ReadScope& scope, const v1::GetRequest& request,
                   size_t message_bytes,
                   const std::function<bool(const v1::GetHeader&)>& on_header,
                   const std::function<bool(std::string&)>& on_data);

  absl::StatusOr<v1::DeleteResponse> Delete(const std::string& name_space,
                                            const v1::DeleteRequest& request);

  // Takes the request by value: its codec state moves into the model.
  absl::StatusOr<v1::RegisterModelResponse> RegisterModel(
      v1::RegisterModelRequest request);
  absl::StatusOr<v1::GetModelResponse> GetModel(const std::string& name);

  // Quotas per namespace and the global capacity (0: unlimited). Takes
  // effect at the next write; call again after a config reload.
  void SetLimits(std::map<std::string, NamespaceLimit> limits,
                 uint64_t capacity_bytes);
  // The quota of `name_space` in bytes, 0 when it has none.
  uint64_t QuotaFor(const std::string& name_space) const;
  uint64_t capacity_bytes() const;

  // Memory the engine holds for reuse, and how often it gave it back.
  size_t chunk_buffers_idle_bytes() const {
    return chunk_buffers_.idle_bytes();
  }
  uint64_t idle_releases() const {
    return idle_releases_.load(std::memory_order_relaxed);
  }

  StatsRegistry& stats() { return stats_; }
  Trie& trie() { return trie_; }
  ModelRegistry& models() { return models_; }
  const EngineOptions& options() const { return options_; }

  // A codec for `spec` bound to `model`, cached.
  absl::StatusOr<std::shared_ptr<const Codec>> CodecFor(
      const std::shared_ptr<const Model>& model, const std::string& spec);

 private:
  friend class PutSession;

  // Longest match over the namespaces of `scope`: the keys of the nodes
  // matched, from the node index and the trie, without reading records
  // where the index knows the chunks.
  absl::StatusOr<std::pair<std::vector<NodeKey>, uint32_t>> MatchKeys(
      const NodeKey& root, const Model& model,
      std::span<const int32_t> tokens) const;
  // Longest match over the namespaces of `scope`, with node records.
  absl::StatusOr<std::pair<TrieMatch, std::string>> MatchInScope(
      const ReadScope& scope, const Model& model,
      std::span<const int32_t> tokens);

  // Whether the node a Get matched (`record`) was removed or replaced since,
  // so that its payload failing to read is a race, not damage.
  bool RemovedUnderRead(const NodeKey& key, const NodeRecord& record) const;

  // Evicts least recently used leaves until every namespace is within its
  // quota and the store within its capacity. Caller holds the write mutex.
  absl::Status EnforceLimitsLocked();
  absl::Status CheckQuotaLocked(const std::string& name_space,
                                uint64_t added_bytes);
  NamespaceLimit LimitFor(const std::string& name_space) const;

  // Notes that a Put, Get or Delete is running (for `on_idle`).
  void MarkBusy();
  // Frees idle buffers and calls `on_idle` when the engine went idle long
  // enough ago and has not been reported idle since. Background thread only.
  void ReportIdleOnce();

  KvStore* store_;
  EngineOptions options_;
  // Before everything that may hold its buffers, so that it is destroyed last.
  ChunkBufferPool chunk_buffers_;
  NodeIndex index_;
  mutable absl::Mutex limits_mutex_;
  std::map<std::string, NamespaceLimit> limits_ ABSL_GUARDED_BY(limits_mutex_);
  uint64_t capacity_bytes_ ABSL_GUARDED_BY(limits_mutex_) = 0;
  Trie trie_;
  ModelRegistry models_;
  StatsRegistry stats_;
  std::atomic<uint64_t> next_put_id_;
  absl::Mutex codecs_mutex_;
  absl::flat_hash_map<std::string, std::shared_ptr<const Codec>> codecs_
      ABSL_GUARDED_BY(codecs_mutex_);
  std::atomic<int64_t> last_busy_micros_{0};
  int64_t reported_idle_after_micros_ = -1;  // background thread only
  std::atomic<uint64_t> idle_releases_{0};
  absl::Notification stop_flushing_;
  std::thread visit_flusher_;
  // Last: destroyed first, finishing its tasks while the rest still exists.
  WorkerPool pool_;
};

// One Put in flight. Chunks are encoded on the engine's worker pool while the
// next one arrives, with at most kMaxChunksInFlight chunks held at a time,
// and staged as they are done; everything becomes visible at Finish in one
// atomic commit. Destroying an unfinished session discards what it staged.
class PutSession {
 public:
  PutSession(CacheEngine* engine, std::string name_space,
             std::shared_ptr<const Model> model, bool new_model,
             std::shared_ptr<const Codec> codec, std::vector<int32_t> tokens);
  ~PutSession();

  // Takes the next bytes of token-major data.
  absl::Status Append(std::string_view bytes);
  // Commits; FAILED unless exactly all data arrived.
  absl::StatusOr<v1::PutResponse> Finish();

 private:
  static constexpr size_t kMaxChunksInFlight = 2;
  struct EncodeJob {
    PendingNode node;
    ChunkBuffer chunk;  // chunk layout
    absl::Status status;
    absl::Notification done;
  };

  // Places whole tokens (token-major bytes) into the chunk being filled.
  void PlaceTokens(std::span<const std::byte> token_major, uint32_t count);
  // Hands the full chunk to the worker pool (or notes it as stored).
  absl::Status FlushChunk();
  // Waits until at most `keep` encodes are in flight; stages their results.
  absl::Status Collect(size_t keep);

  CacheEngine* engine_;
  std::string name_space_;
  std::shared_ptr<const Model> model_;
  bool new_model_;
  std::shared_ptr<const Codec> codec_;
  std::vector<int32_t> tokens_;
  uint64_t put_id_;
  NodeKey parent_;
  uint32_t next_token_ = 0;  // first token of the chunk being filled
  // That chunk, in chunk layout, filled as tokens arrive: its size in
  // tokens and how many have arrived. A token split across messages waits
  // in partial_token_.
  ChunkBuffer chunk_;
  uint32_t chunk_size_ = 0;
  uint32_t chunk_filled_ = 0;
  std::string partial_token_;
  std::deque<std::unique_ptr<EncodeJob>> in_flight_;
  std::vector<PendingNode> staged_;
  std::vector<NodeKey> path_;  // chunks that were stored already
  uint32_t deduped_ = 0;
  uint64_t bytes_received_ = 0;
  bool finished_ = false;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_CACHE_ENGINE_H_
