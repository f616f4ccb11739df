// The Get pipeline: reads and decodes the chunks a match names, one chunk
// ahead on the worker pool, into message buffers in the wire's token-major
// order.
#ifndef SEQKV_SERVER_READ_PATH_H_
#define SEQKV_SERVER_READ_PATH_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "server/chunk_buffer_pool.h"
#include "server/codec_cache.h"
#include "server/decoded_chunk_cache.h"
#include "server/worker_pool.h"
#include "storage/trie.h"

namespace seqkv {

// Thread-safe: one reader serves any number of concurrent Gets.
class ChunkReader {
 public:
  // All must outlive the reader.
  ChunkReader(const Trie* trie, ChunkBufferPool* buffers, WorkerPool* pool,
              CodecCache* codecs, DecodedChunkCache* decoded = nullptr)
      : trie_(trie),
        buffers_(buffers),
        pool_(pool),
        codecs_(codecs),
        decoded_(decoded) {}

  // Sends tokens [begin, end) of the matched `nodes` (whose tokens follow
  // each other from token 0) through `on_data`, in messages of at most
  // `message_bytes` holding whole tokens where a token fits one. A false
  // return from `on_data` stops with CANCELLED. `on_data` may use the
  // string's buffer while it sends (swap it into a message) but must leave
  // the string as it found it: the buffer is reused.
  //
  // A payload that is missing, fails its checksum or does not decode is
  // DATA_LOSS, and `damaged` (if given) then points at its node in `nodes`;
  // ABORTED when its node was removed or replaced meanwhile (a race with
  // Delete or eviction: retrying sees the new state).
  absl::Status Read(const std::shared_ptr<const Model>& model,
                    std::span<const TrieNode> nodes, uint32_t begin,
                    uint32_t end, size_t message_bytes,
                    const std::function<bool(std::string&)>& on_data,
                    const TrieNode** damaged = nullptr);
  // The same into `destination` (exactly the range's bytes, in wire
  // order): memory the caller shares, such as a client's region. A payload
  // stored in wire order is read straight into it. A payload whose
  // checksum fails there but not when read again privately was changed by
  // the destination's other writer meanwhile: ABORTED, not damage.
  absl::Status ReadInto(const std::shared_ptr<const Model>& model,
                        std::span<const TrieNode> nodes, uint32_t begin,
                        uint32_t end, std::span<std::byte> destination,
                        const TrieNode** damaged = nullptr);

 private:
  absl::Status ReadSegments(const std::shared_ptr<const Model>& model,
                            std::span<const TrieNode> nodes, uint32_t begin,
                            uint32_t end, size_t message_bytes,
                            const std::function<bool(std::string&)>* on_data,
                            std::span<std::byte> destination,
                            const TrieNode** damaged);
  // Whether the node a Get matched (`record`) was removed or replaced
  // since, so that its payload failing to read is a race, not damage.
  bool RemovedUnderRead(const NodeKey& key, const NodeRecord& record) const;

  const Trie* const trie_;
  ChunkBufferPool* const buffers_;
  WorkerPool* const pool_;
  CodecCache* const codecs_;
  DecodedChunkCache* const decoded_;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_READ_PATH_H_
