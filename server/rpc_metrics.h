// Per-method gRPC server metrics: calls started, calls finished by status
// code, and a latency histogram, rendered in the Prometheus text format for
// the admin endpoint's /metrics. Filled by a server interceptor, so every
// method (the KV-cache service, health checking, reflection) is counted the
// same way, without the services knowing.
#ifndef SEQKV_SERVER_RPC_METRICS_H_
#define SEQKV_SERVER_RPC_METRICS_H_

#include <grpcpp/support/server_interceptor.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"

namespace seqkv {

// Counters and latency histograms by full method name
// ("/seqkv.v1.KvCacheService/Put"). Thread-safe: calls record concurrently,
// without a lock once their method's entry exists.
class RpcMetrics {
 public:
  // Upper bounds of the latency buckets, in seconds (Prometheus "le"; the
  // last, +Inf, is implicit).
  static constexpr std::array<double, 17> kBucketBounds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0, 30.0};
  // Distinct methods kept apart; calls to any further method names (a
  // client may send any) are counted under the method "other".
  static constexpr size_t kMaxMethods = 64;

  // The counters of one method. Recording is lock-free.
  class Method {
   public:
    void Started() { started_.fetch_add(1, std::memory_order_relaxed); }
    // A call that ended with `code` (a grpc::StatusCode, 0..16) after
    // `seconds`.
    void Finished(int code, double seconds);

   private:
    friend class RpcMetrics;
    static constexpr int kCodes = 17;
    std::atomic<uint64_t> started_{0};
    std::array<std::atomic<uint64_t>, kCodes> handled_{};
    std::array<std::atomic<uint64_t>, kBucketBounds.size() + 1> buckets_{};
    std::atomic<uint64_t> sum_nanos_{0};
  };

  RpcMetrics() = default;
  RpcMetrics(const RpcMetrics&) = delete;
  RpcMetrics& operator=(const RpcMetrics&) = delete;

  // The entry of `full_method` ("/package.Service/Method"), created on first
  // use; valid for the lifetime of this object.
  Method& ForMethod(const std::string& full_method);

  // The families seqkv_grpc_server_started_total,
  // seqkv_grpc_server_handled_total{grpc_code} and the histogram
  // seqkv_grpc_server_handling_seconds, labelled grpc_service and
  // grpc_method, in Prometheus text format.
  std::string PrometheusText() const;

  // An interceptor factory for grpc::ServerBuilder that records every call
  // into `metrics`, which must outlive the server.
  static std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
  InterceptorFactory(RpcMetrics* metrics);

 private:
  mutable absl::Mutex mutex_;
  std::map<std::string, std::unique_ptr<Method>> methods_
      ABSL_GUARDED_BY(mutex_);
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_RPC_METRICS_H_
