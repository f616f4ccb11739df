// The seqkv client library: a synchronous wrapper over the gRPC API.
#ifndef SEQKV_CLIENT_CLIENT_H_
#define SEQKV_CLIENT_CLIENT_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "model/kv_cache.h"
#include "transport/region_client.h"

namespace seqkv::v1 {
class LookupRequest;
}

namespace seqkv {

class ClusterClient;

// KV bytes per streamed message, as the server sends them: the transport's
// kStreamMessageBytes (proto/grpc_transport.h, kept out of this header).
inline constexpr size_t kDefaultMessageBytes = 2 << 20;

struct ClientOptions {
  // "host:port" or "unix:/path"; or a cluster, "etcd://HOST:PORT/NAME"
  // (client/cluster_client.h).
  std::string server = "127.0.0.1:50551";
  // Sent as "authorization: Bearer <key>" when not empty.
  std::string api_key;
  // TLS: a PEM root certificate turns TLS on; a client cert and key add mTLS.
  std::string tls_root_cert_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // Bytes per message of a Put stream (and of codec state too large for
  // one RegisterModel message).
  size_t message_bytes = kDefaultMessageBytes;
  // Per-call deadline; 0 means none.
  double timeout_s = 0;
  // Same host only: the server's region socket (seqkv-server
  // --shm_listen). When set, Put and GetInto move KV bytes through shared
  // memory regions instead of gRPC messages, and the *Region calls work.
  std::string shm_socket;
  // The largest scratch region GetInto registers for one call. It is sized
  // by the prompt (what could match), and the client populates every page,
  // so a longer prompt's Get travels in messages instead.
  size_t max_scratch_bytes = size_t{1} << 30;
};

using SharedRegion = transport::SharedRegion;

// What a GetIntoRegion placed: tokens [begin_token, end_token) of the
// match, data_bytes of token-major KV data at the slice's start.
struct RegionGetResult {
  KvLayout layout;
  uint32_t matched_tokens = 0;
  uint32_t begin_token = 0;
  uint32_t end_token = 0;
  uint64_t data_bytes = 0;
  std::string name_space;
};

struct PutOptions {
  std::string model;
  std::string codec;            // empty: the model's or server's default
  std::string name_space = {};  // empty: the caller's own namespace
};

struct PutResult {
  uint32_t tokens = 0;
  uint32_t chunks_new = 0;
  uint32_t chunks_deduped = 0;
  uint64_t bytes_logical = 0;
  uint64_t bytes_stored = 0;
  std::string codec;
  // The tokens by how the server stored them (PutResponse).
  uint32_t tokens_new = 0;
  uint32_t tokens_deduped = 0;
  uint32_t tokens_split_deduped = 0;
  uint32_t tokens_cross_prefix = 0;
};

struct LookupResult {
  uint32_t matched_tokens = 0;
  std::string name_space = {};
  // The server's P̂ of the deepest matched chunk (0 when nothing matched).
  double probability = 0;
  // Of matched_tokens (any fidelity that holds KV), the leading ones the
  // server holds as they were Put, not demoted to a lossy tier.
  uint32_t matched_tokens_exact = 0;
  // With a Lookup's head_chunks: the server's P̂ of the deepest matched
  // chunk among the prompt's first head_chunks (how hot that head is).
  double head_probability = 0;
};

struct GetOptions {
  std::string model;
  std::string name_space = {};
  uint32_t begin_token = 0;
  uint32_t end_token = 0;  // 0: the end of the match
  uint32_t alignment = 0;
  // Serve only chunks held as they were Put (the match stops at the first
  // chunk the server demoted to a lossy tier); false: any tier with KV.
  bool exact_only = false;
};

struct DeleteResult {
  uint32_t chunks_deleted = 0;
  uint64_t bytes_freed = 0;
};

struct ModelRegistration {
  std::string model;
  KvLayout layout;
  uint32_t chunk_tokens = 0;  // 0: server default
  std::string default_codec;
  std::map<std::string, std::string> codec_state;
};

// A connection to one seqkv server. Thread-safe: calls from any number of
// threads share the channel (gRPC multiplexes them). Every call returns the
// server's status as it came (its code and message), or UNAVAILABLE /
// DEADLINE_EXCEEDED from the transport; a Get whose stream breaks or does
// not add up is DATA_LOSS, and nothing half-received is returned as OK.
class Client {
 public:
  // Opens the channel (lazily: a server that is down fails the first call,
  // not Connect). INVALID_ARGUMENT / NOT_FOUND for unreadable TLS files.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(
      const ClientOptions& options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // `head_chunks` > 0 also asks LookupResult::head_probability (a cluster
  // client's placement head; ignored through an etcd:// target, which asks
  // it itself).
  absl::StatusOr<LookupResult> Lookup(const std::string& model,
                                      std::span<const int32_t> tokens,
                                      uint32_t alignment = 0,
                                      const std::string& name_space = "",
                                      uint32_t head_chunks = 0);
  // The same, sending each whole `chunk_tokens`-token chunk (the model's
  // chunk size, GetModel) as an 8-byte digest: for long prompts, where
  // sending and hashing 4 bytes per token is most of a Lookup's time.
  // Unlike Lookup, a whole chunk matches fully or not at all; the tokens
  // after the last whole chunk match token-granular.
  absl::StatusOr<LookupResult> LookupByChunks(
      const std::string& model, std::span<const int32_t> tokens,
      uint32_t chunk_tokens, uint32_t alignment = 0,
      const std::string& name_space = "", uint32_t head_chunks = 0);

  // Streams `cache` (all its tokens) to the server; its layout registers
  // the model on its first Put. Stored once the call returns OK, never in
  // part.
  absl::StatusOr<PutResult> Put(const PutOptions& options,
                                const KvCache& cache);

  // Fetches the cache of the longest stored prefix of `tokens` (or the
  // requested range of it). An empty match returns a cache with no tokens.
  absl::StatusOr<KvCache> Get(const GetOptions& options,
                              std::span<const int32_t> tokens);
  // The same into `cache`, reusing its memory: a worker that fetches into
  // one staging cache again and again allocates nothing. On error `cache`
  // holds unspecified contents.
  absl::Status GetInto(const GetOptions& options,
                       std::span<const int32_t> tokens, KvCache& cache);

  // Removes the stored node `tokens` reaches (chunk-aligned, or ending at a
  // stored partial chunk) and everything below it; empty `tokens`: all of
  // the model's caches in the namespace.
  absl::StatusOr<DeleteResult> Delete(const std::string& model,
                                      std::span<const int32_t> tokens,
                                      const std::string& name_space = "");

  // True when the model was created, false when it existed. Codec state
  // larger than one message goes through RegisterModelStream.
  absl::StatusOr<bool> RegisterModel(const ModelRegistration& registration);
  absl::StatusOr<ModelRegistration> GetModel(const std::string& model);

  // Same-host transfer through shared memory (ClientOptions::shm_socket;
  // FAILED_PRECONDITION without one). A region is a memfd mapped here and
  // in the server: the worker's staging buffer, written and read in place.
  bool uses_shared_memory() const;
  absl::StatusOr<std::shared_ptr<SharedRegion>> CreateRegion(size_t bytes);
  absl::Status UnregisterRegion(const SharedRegion& region);
  // Puts `tokens` whose token-major KV bytes (in `layout`) lie at `offset`
  // in `region`; the server reads them from there.
  absl::StatusOr<PutResult> PutFromRegion(const PutOptions& options,
                                          const KvLayout& layout,
                                          std::span<const int32_t> tokens,
                                          const SharedRegion& region,
                                          uint64_t offset);
  // Gets the match of `tokens` into `region` at `offset`, where `capacity`
  // bytes are free; OUT_OF_RANGE (nothing written) when it does not fit.
  // The bytes are in place once it returns OK.
  absl::StatusOr<RegionGetResult> GetIntoRegion(const GetOptions& options,
                                                std::span<const int32_t> tokens,
                                                const SharedRegion& region,
                                                uint64_t offset,
                                                uint64_t capacity);

 private:
  class Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  absl::StatusOr<LookupResult> SendLookup(const v1::LookupRequest& request);
  std::unique_ptr<Impl> impl_;
  // Set for an etcd:// target: every call is routed through it.
  std::unique_ptr<ClusterClient> cluster_;
};

}  // namespace seqkv

#endif  // SEQKV_CLIENT_CLIENT_H_
