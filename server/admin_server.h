// The operators' HTTP endpoint: health, stats as JSON, Prometheus metrics.
#ifndef SEQKV_SERVER_ADMIN_SERVER_H_
#define SEQKV_SERVER_ADMIN_SERVER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "server/cache_engine.h"

namespace httplib {
class Server;
}

namespace seqkv {

class AdminServer {
 public:
  explicit AdminServer(CacheEngine* engine);
  ~AdminServer();

  // Listens on "host:port" in a background thread.
  absl::Status Start(const std::string& address);
  void Stop();
  // Set once the gRPC server accepts calls; /readyz reports it.
  void SetReady(bool ready) { ready_ = ready; }
  int port() const { return port_; }

 private:
  void Routes();

  CacheEngine* engine_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  std::atomic<bool> ready_{false};
  int port_ = 0;
};

// The /v1/stats document: {"global": {...}, "tenants": {name: {...}}}.
std::string StatsJson(CacheEngine& engine);
// The /metrics page in Prometheus text format.
std::string PrometheusMetrics(CacheEngine& engine);

}  // namespace seqkv

#endif  // SEQKV_SERVER_ADMIN_SERVER_H_
