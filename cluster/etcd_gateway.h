// A small etcd v3 client over etcd's JSON gateway (the HTTP/JSON mapping of
// its gRPC API that every etcd >= 3.4 serves on its client port): leases,
// keys and a watch, which is all cluster membership needs. See
// docs/DEPENDENCIES.md for why the gateway rather than the gRPC stubs.
//
// Thread-safety: every method may be called from any thread; each call
// opens its own HTTP connection.
#ifndef SEQKV_CLUSTER_ETCD_GATEWAY_H_
#define SEQKV_CLUSTER_ETCD_GATEWAY_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace httplib {
class Client;
}

namespace seqkv::cluster {

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;
  int64_t lease = 0;
};

struct EtcdRange {
  std::vector<EtcdKeyValue> kvs;
  // The store's revision when the range was read: a watch from revision + 1
  // misses nothing.
  int64_t revision = 0;
};

// Ends a Watch from another thread, at once.
class WatchCancel {
 public:
  void Cancel();
  bool cancelled() const;

 private:
  friend class EtcdGateway;
  mutable absl::Mutex mutex_;
  bool cancelled_ ABSL_GUARDED_BY(mutex_) = false;
  // The connection of the watch in progress, if any.
  httplib::Client* client_ ABSL_GUARDED_BY(mutex_) = nullptr;
};

struct EtcdWatchEvent {
  bool deleted = false;  // a DELETE (also a lease expiring), else a PUT
  EtcdKeyValue kv;
};

class EtcdGateway {
 public:
  // `endpoints`: "host:port[,host:port...]", tried in order on each call.
  // Every call but Watch gives up after `timeout` per endpoint.
  EtcdGateway(std::vector<std::string> endpoints, absl::Duration timeout);

  // Parses "host:port[,host:port...]"; INVALID_ARGUMENT if malformed.
  static absl::StatusOr<std::vector<std::string>> ParseEndpoints(
      const std::string& text);

  // A lease of `ttl_s` seconds; returns its id.
  absl::StatusOr<int64_t> GrantLease(int64_t ttl_s) const;
  // Renews the lease; NOT_FOUND when it has already expired.
  absl::Status KeepAlive(int64_t lease) const;
  absl::Status RevokeLease(int64_t lease) const;

  // Writes `key` (attached to `lease` unless 0).
  absl::Status Put(const std::string& key, const std::string& value,
                   int64_t lease = 0) const;
  // Every key starting with `prefix`.
  absl::StatusOr<EtcdRange> RangePrefix(const std::string& prefix) const;
  absl::Status Delete(const std::string& key) const;

  // Streams the changes under `prefix` from `start_revision` on, calling
  // `on_event` for each, until `cancel` is cancelled (OK) or the stream
  // breaks and cannot be opened again (UNAVAILABLE; OUT_OF_RANGE when the
  // revision was compacted away: read again, then watch).
  absl::Status Watch(const std::string& prefix, int64_t start_revision,
                     const std::function<void(const EtcdWatchEvent&)>& on_event,
                     WatchCancel& cancel) const;

  const std::vector<std::string>& endpoints() const { return endpoints_; }

 private:
  // POSTs `body` to `path` on the first endpoint that answers; the parsed
  // reply's text.
  absl::StatusOr<std::string> Call(const std::string& path,
                                   const std::string& body) const;

  std::vector<std::string> endpoints_;
  absl::Duration timeout_;
};

// The end of the range of keys starting with `prefix` (etcd's range_end).
std::string PrefixRangeEnd(const std::string& prefix);

}  // namespace seqkv::cluster

#endif  // SEQKV_CLUSTER_ETCD_GATEWAY_H_
