// The operators' HTTP endpoint: health, stats as JSON, Prometheus metrics,
// the most visited prefixes, a stats history and the dashboard page.
#ifndef SEQKV_SERVER_ADMIN_SERVER_H_
#define SEQKV_SERVER_ADMIN_SERVER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/cache_engine.h"
#include "server/dashboard/admin_auth.h"
#include "server/dashboard/stats_history.h"
#include "server/rpc_metrics.h"
#include "server/stream_limiter.h"
#include "transport/region_registry.h"

namespace httplib {
class Server;
}

namespace seqkv {

struct AdminServerOptions {
  // How often the stats history takes a sample, and how many it keeps.
  absl::Duration history_interval = absl::Seconds(5);
  size_t history_samples = 720;
  // Tenants per sample (those storing the most bytes).
  size_t history_tenants = 64;
  // Per-method gRPC counters and latencies appended to /metrics; none if
  // null. Must outlive the admin server.
  const RpcMetrics* rpc_metrics = nullptr;
  // Open streams and idle cancellations, in /metrics (may be null).
  const StreamLimiter* streams = nullptr;
  // The same-host data plane's regions and counters, in /v1/stats and
  // /metrics (null: no region socket; reported as off).
  const transport::RegionRegistry* regions = nullptr;
  // In a cluster (server/cluster_join.h): /v1/cluster's JSON ("" while not
  // registered yet), lines appended to /metrics, and a note /readyz adds
  // ("" while all is well). Unset: /v1/cluster is 404.
  std::function<std::string()> cluster_json;
  std::function<std::string()> cluster_metrics;
  std::function<std::string()> cluster_health_note;
};

// The options as the --admin_history_* flags set them.
AdminServerOptions AdminServerOptionsFromFlags();

class AdminServer {
 public:
  explicit AdminServer(CacheEngine* engine, AdminServerOptions options =
                                                AdminServerOptionsFromFlags());
  ~AdminServer();

  // Listens on "host:port" (port 0 picks one) in background threads. With
  // `admin_token_sha256` (hex SHA-256 of the token) every route but /healthz,
  // /readyz and the dashboard's static files needs "Authorization: Bearer
  // <token>". A host other than loopback without a token is refused.
  absl::Status Start(const std::string& address,
                     std::string admin_token_sha256 = "");
  // Also serves /healthz and /readyz alone, unauthenticated, on "host:port"
  // (port 0 picks one) for a kubelet's or a load balancer's probes. Any host
  // is allowed, 0.0.0.0 included: the answers tell only whether the server
  // is up and ready. Independent of Start().
  absl::Status StartProbes(const std::string& address);
  // Stops both listeners.
  void Stop();
  // Set once the store is open and the gRPC server accepts calls, cleared
  // when it starts draining; /readyz reports it.
  void SetReady(bool ready) { ready_ = ready; }
  int port() const { return port_; }
  int probe_port() const { return probe_port_; }

 private:
  void Routes();
  void SampleLoop();
  void TakeSample();

  CacheEngine* engine_;
  AdminServerOptions options_;
  AdminToken token_;
  StatsHistory history_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  std::thread sampler_;
  std::unique_ptr<httplib::Server> probe_http_;
  std::thread probe_thread_;
  absl::Mutex stop_mutex_;
  bool stopping_ ABSL_GUARDED_BY(stop_mutex_) = false;
  std::atomic<bool> ready_{false};
  int port_ = 0;
  int probe_port_ = 0;
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_ADMIN_SERVER_H_
