#include "server/rpc_metrics.h"

#include <grpcpp/support/interceptor.h>
#include <grpcpp/support/status.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/prometheus_label.h"

namespace seqkv {
namespace {

constexpr char kOtherMethod[] = "/other/other";

// gRPC's names of its status codes, as grpc-prometheus labels them.
constexpr const char* kCodeNames[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

// grpc_service="seqkv.v1.KvCacheService",grpc_method="Put" of
// "/seqkv.v1.KvCacheService/Put".
std::string MethodLabels(const std::string& full_method) {
  std::string_view name = full_method;
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  const size_t slash = name.rfind('/');
  std::string_view service =
      slash == std::string_view::npos ? "" : name.substr(0, slash);
  std::string_view method =
      slash == std::string_view::npos ? name : name.substr(slash + 1);
  return absl::StrCat("grpc_service=\"", PrometheusLabelValue(service),
                      "\",grpc_method=\"", PrometheusLabelValue(method), "\"");
}

std::string FormatSeconds(double seconds) {
  return absl::StrFormat("%.9g", seconds);
}

// Records one call: started when the server matched it to a method,
// finished when its status is sent.
class MetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit MetricsInterceptor(RpcMetrics::Method* method)
      : method_(method), start_(std::chrono::steady_clock::now()) {
    method_->Started();
  }
  // A call that ends without sending a status (its client went away) counts
  // as cancelled.
  ~MetricsInterceptor() override {
    if (!finished_) Finish(grpc::StatusCode::CANCELLED);
  }

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (!finished_ &&
        methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      Finish(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Finish(grpc::StatusCode code) {
    finished_ = true;
    const std::chrono::duration<double> elapsed =
        std::chrono::steady_clock::now() - start_;
    method_->Finished(static_cast<int>(code), elapsed.count());
  }

  RpcMetrics::Method* method_;
  const std::chrono::steady_clock::time_point start_;
  bool finished_ = false;
};

class MetricsInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(RpcMetrics* metrics) : metrics_(metrics) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    // gRPC takes ownership of the interceptor and deletes it with the call.
    return std::make_unique<MetricsInterceptor>(
               &metrics_->ForMethod(info->method() ? info->method() : ""))
        .release();
  }

 private:
  RpcMetrics* metrics_;
};

}  // namespace

void RpcMetrics::Method::Finished(int code, double seconds) {
  if (code < 0 || code >= kCodes) code = grpc::StatusCode::UNKNOWN;
  handled_[code].fetch_add(1, std::memory_order_relaxed);
  size_t bucket = 0;
  while (bucket < kBucketBounds.size() && seconds > kBucketBounds[bucket])
    ++bucket;
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_nanos_.fetch_add(static_cast<uint64_t>(seconds * 1e9),
                       std::memory_order_relaxed);
}

RpcMetrics::Method& RpcMetrics::ForMethod(const std::string& full_method) {
  {
    absl::ReaderMutexLock lock(&mutex_);
    auto it = methods_.find(full_method);
    if (it != methods_.end()) return *it->second;
  }
  absl::MutexLock lock(&mutex_);
  auto it = methods_.find(full_method);
  if (it != methods_.end()) return *it->second;
  // One more than the methods kept apart: the "other" entry.
  const std::string& key =
      methods_.size() >= kMaxMethods ? kOtherMethod : full_method;
  std::unique_ptr<Method>& entry = methods_[key];
  if (entry == nullptr) entry = std::make_unique<Method>();
  return *entry;
}

std::string RpcMetrics::PrometheusText() const {
  absl::ReaderMutexLock lock(&mutex_);
  std::string started =
      "# HELP seqkv_grpc_server_started_total gRPC calls started, by "
      "method.\n# TYPE seqkv_grpc_server_started_total counter\n";
  std::string handled =
      "# HELP seqkv_grpc_server_handled_total gRPC calls finished, by method "
      "and status code.\n# TYPE seqkv_grpc_server_handled_total counter\n";
  std::string histogram =
      "# HELP seqkv_grpc_server_handling_seconds Time from the start of a "
      "gRPC call to its status, by method.\n"
      "# TYPE seqkv_grpc_server_handling_seconds histogram\n";
  for (const auto& [name, method] : methods_) {
    const std::string labels = MethodLabels(name);
    absl::StrAppend(&started, "seqkv_grpc_server_started_total{", labels, "} ",
                    method->started_.load(std::memory_order_relaxed), "\n");
    for (int code = 0; code < Method::kCodes; ++code) {
      const uint64_t count =
          method->handled_[code].load(std::memory_order_relaxed);
      if (count == 0 && code != 0) continue;  // OK always, others once seen
      absl::StrAppend(&handled, "seqkv_grpc_server_handled_total{", labels,
                      ",grpc_code=\"", kCodeNames[code], "\"} ", count, "\n");
    }
    // Cumulative counts from one read of each bucket, so that +Inf and
    // _count agree even while calls finish.
    uint64_t cumulative = 0;
    for (size_t i = 0; i < method->buckets_.size(); ++i) {
      cumulative += method->buckets_[i].load(std::memory_order_relaxed);
      const std::string le =
          i < kBucketBounds.size() ? FormatSeconds(kBucketBounds[i]) : "+Inf";
      absl::StrAppend(&histogram, "seqkv_grpc_server_handling_seconds_bucket{",
                      labels, ",le=\"", le, "\"} ", cumulative, "\n");
    }
    absl::StrAppend(
        &histogram, "seqkv_grpc_server_handling_seconds_sum{", labels, "} ",
        FormatSeconds(method->sum_nanos_.load(std::memory_order_relaxed) / 1e9),
        "\n", "seqkv_grpc_server_handling_seconds_count{", labels, "} ",
        cumulative, "\n");
  }
  return absl::StrCat(started, handled, histogram);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
RpcMetrics::InterceptorFactory(RpcMetrics* metrics) {
  return std::make_unique<MetricsInterceptorFactory>(metrics);
}

}  // namespace seqkv
