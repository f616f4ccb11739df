// One Put in flight: assembles the chunks of a stream of token-major bytes,
// encodes them on a worker pool while the next arrive, and stages their
// payloads, invisible until the engine commits them.
#ifndef SEQKV_SERVER_PUT_SESSION_H_
#define SEQKV_SERVER_PUT_SESSION_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "codec/codec.h"
#include "server/chunk_buffer_pool.h"
#include "server/reference_planner.h"
#include "server/stored_chunk.h"
#include "server/worker_pool.h"
#include "storage/model_registry.h"
#include "storage/trie.h"

namespace seqkv {

// Not thread-safe: one stream feeds it. At most kMaxChunksInFlight chunks
// are held at a time besides the one being filled. Destroying a session
// whose staged payloads were not committed drops them.
class PutSession {
 public:
  // What the session works with; everything must outlive it.
  struct Resources {
    Trie* trie = nullptr;
    ChunkBufferPool* buffers = nullptr;
    WorkerPool* pool = nullptr;
    // Called when the session ends (the engine's idle clock).
    std::function<void()> on_done;
    // Finds chunks to code new ones against (null: none are), and what
    // decoding those needs.
    const ReferencePlanner* planner = nullptr;
    ChunkDecoding decoding;
  };
  struct Target {
    std::string name_space;
    std::shared_ptr<const Model> model;
    // The model is not stored yet: the commit stores it with the chunks.
    bool new_model = false;
    std::shared_ptr<const Codec> codec;
    std::vector<int32_t> tokens;
    // Unique per Put (payload keys include it).
    uint64_t put_id = 0;
  };

  PutSession(Resources resources, Target target);
  ~PutSession();
  PutSession(const PutSession&) = delete;
  PutSession& operator=(const PutSession&) = delete;

  // Takes the next bytes of token-major data, in any split.
  // INVALID_ARGUMENT past the bytes the tokens need.
  absl::Status Append(std::string_view bytes);

  // Waits for the last encodes. INVALID_ARGUMENT unless exactly all data
  // arrived; the first encode or staging error otherwise. Once it returns
  // OK, `staged()` is ready to commit.
  absl::Status Seal();
  // Call once the staged nodes are committed: they are no longer dropped.
  void MarkCommitted() { committed_ = true; }

  const Target& target() const { return target_; }
  // Chunks this Put adds, payloads written.
  std::span<const PendingNode> staged() const { return staged_; }
  // Chunks of the sequence that were stored already (deduplicated).
  std::span<const NodeKey> stored_path() const { return path_; }
  uint64_t data_bytes() const;

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
  // Encodes `job`'s chunk, below `parent`, against the chunks stored
  // before it that the planner finds; on its own when none helps or they
  // cannot be read (the record then names none). On the worker pool.
  absl::Status EncodeAgainstReferences(const NodeKey& parent, EncodeJob& job,
                                       std::string& payload) const;
  // Waits until at most `keep` encodes are in flight; stages their results.
  absl::Status Collect(size_t keep);

  const Resources resources_;
  const Target target_;
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
  uint64_t bytes_received_ = 0;
  bool committed_ = false;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_PUT_SESSION_H_
