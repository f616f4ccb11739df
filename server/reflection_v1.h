// grpc.reflection.v1.ServerReflection, served by forwarding to the server's
// own grpc.reflection.v1alpha.ServerReflection over an in-process channel.
//
// Why: the C++ reflection of Debian 12's gRPC (libgrpc++_reflection 1.51)
// serves only v1alpha, while grpcurl, `buf curl` and Postman ask for v1
// first. The two protocols are wire-identical (same messages and field
// numbers, only the proto package differs), so each v1 request is passed on
// as its serialized bytes and each v1alpha answer comes back the same way;
// the descriptors answered are those of the v1alpha service, so both
// versions always agree.
//
// One v1alpha stream is opened per v1 stream. Reflection answers exactly one
// response per request, so the proxy runs in lock step: write one request,
// read one response. A v1alpha error ends the v1 stream with the same status.
//
// Thread-safety: thread-safe. SetChannel() may race with calls; calls before
// it are answered UNAVAILABLE.
#ifndef SEQKV_SERVER_REFLECTION_V1_H_
#define SEQKV_SERVER_REFLECTION_V1_H_

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"

namespace seqkv {

class ReflectionV1Service final
    : public grpc::reflection::v1::ServerReflection::Service {
 public:
  ReflectionV1Service() = default;
  ReflectionV1Service(const ReflectionV1Service&) = delete;
  ReflectionV1Service& operator=(const ReflectionV1Service&) = delete;

  // The channel to the v1alpha reflection service, normally
  // `server.InProcessChannel(grpc::ChannelArguments())` of the server that
  // registers this service and the v1alpha reflection plugin. The server
  // exists only after BuildAndStart(), so this is set right after it.
  void SetChannel(std::shared_ptr<grpc::Channel> channel)
      ABSL_LOCKS_EXCLUDED(mu_);

  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<grpc::reflection::v1::ServerReflectionResponse,
                               grpc::reflection::v1::ServerReflectionRequest>*
          stream) override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Mutex mu_;
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(mu_);
};

}  // namespace seqkv

#endif  // SEQKV_SERVER_REFLECTION_V1_H_
