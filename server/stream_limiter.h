// Limits on the streaming calls (Put, Get, RegisterModelStream): how many
// one tenant may hold open at once, and how long a stream may wait on its
// client without progress. The sync gRPC server gives every open call a
// thread; without these, clients that open streams and stall, or never read
// a Get, hold threads and memory forever.
#ifndef SEQKV_SERVER_STREAM_LIMITER_H_
#define SEQKV_SERVER_STREAM_LIMITER_H_

#include <grpcpp/server_context.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace seqkv {

struct StreamLimitOptions {
  // A stream waiting this long on its client (for the next message of a
  // Put, or for room to send a Get's next message) is cancelled
  // (0: never).
  absl::Duration idle_timeout = absl::Seconds(30);
  // Streams one tenant may hold open at once (0: unlimited).
  uint32_t max_streams_per_tenant = 64;
};

class StreamLimiter;

// One open stream, registered with the limiter until destroyed. The call's
// handler marks the spans in which it waits on the client; only those
// count toward the idle timeout, not the server's own work. Not
// thread-safe: the handler's thread alone uses it.
class OpenStream {
 public:
  // Only the limiter makes streams.
  class Key {
    friend class StreamLimiter;
    Key() = default;
  };
  OpenStream(Key, StreamLimiter* limiter, grpc::ServerContext* context,
             std::string tenant);
  ~OpenStream();
  OpenStream(const OpenStream&) = delete;
  OpenStream& operator=(const OpenStream&) = delete;

  // Around a Read or Write that waits on the client.
  void BeginWait();
  void EndWait();

  // Whether the limiter cancelled the call for waiting too long.
  bool timed_out() const { return timed_out_.load(); }
  // DEADLINE_EXCEEDED saying what waited too long, for `what` ("the next
  // Put message").
  absl::Status TimeoutError(std::string_view what) const;

 private:
  friend class StreamLimiter;

  StreamLimiter* const limiter_;
  grpc::ServerContext* const context_;
  const std::string tenant_;
  // When the current wait began, in unix micros; 0 while not waiting.
  std::atomic<int64_t> waiting_since_{0};
  std::atomic<bool> timed_out_{false};
};

// Thread-safe. Must outlive the streams it opens.
class StreamLimiter {
 public:
  explicit StreamLimiter(StreamLimitOptions options);
  ~StreamLimiter();
  StreamLimiter(const StreamLimiter&) = delete;
  StreamLimiter& operator=(const StreamLimiter&) = delete;

  // Registers a stream of `tenant`'s, or RESOURCE_EXHAUSTED when the tenant
  // holds its limit already.
  absl::StatusOr<std::unique_ptr<OpenStream>> Open(grpc::ServerContext* context,
                                                   const std::string& tenant);

  const StreamLimitOptions& options() const { return options_; }
  // Streams open now, and those cancelled for idling since the start.
  uint64_t open_streams() const;
  uint64_t idle_cancellations() const { return idle_cancellations_.load(); }
  uint64_t refusals() const { return refusals_.load(); }

 private:
  friend class OpenStream;
  void Close(OpenStream* stream);
  // Cancels the streams that have waited too long. Watchdog thread only.
  void CancelIdle();

  const StreamLimitOptions options_;
  mutable absl::Mutex mutex_;
  absl::flat_hash_set<OpenStream*> streams_ ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_map<std::string, uint32_t> per_tenant_
      ABSL_GUARDED_BY(mutex_);
  std::atomic<uint64_t> idle_cancellations_{0};
  std::atomic<uint64_t> refusals_{0};
  absl::Notification stop_;
  std::thread watchdog_;
};

// The limiter's gauges and counters in Prometheus text format.
std::string StreamMetrics(const StreamLimiter& limiter);

}  // namespace seqkv

#endif  // SEQKV_SERVER_STREAM_LIMITER_H_
