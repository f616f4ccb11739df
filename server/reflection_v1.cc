#include "server/reflection_v1.h"

#include <grpcpp/generic/generic_stub.h>

#include <string>
#include <utility>

namespace seqkv {
namespace {

using grpc::reflection::v1::ServerReflectionRequest;
using grpc::reflection::v1::ServerReflectionResponse;

constexpr char kV1AlphaMethod[] =
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

// One v1alpha call driven in lock step on its own completion queue: the
// generic (byte buffer) stub has only the asynchronous API, and a private
// queue lets the handler's thread wait for each step in turn. Every call
// ends with Finish().
class V1AlphaCall {
 public:
  V1AlphaCall(const std::shared_ptr<grpc::Channel>& channel,
              grpc::ServerContext& server_context)
      : stub_(channel),
        // Ties the call to the v1 one: its deadline and cancellation.
        context_(grpc::ClientContext::FromServerContext(server_context)) {}

  // Finish() must have been called.
  ~V1AlphaCall() {
    queue_.Shutdown();
    void* tag;
    bool ok;
    while (queue_.Next(&tag, &ok)) {
    }
  }

  bool Start() {
    call_ = stub_.PrepareCall(context_.get(), kV1AlphaMethod, &queue_);
    call_->StartCall(Tag());
    return Wait();
  }

  // Sends `request` and reads its one answer into `response`. False when the
  // call ended; Finish() then tells why.
  bool Exchange(const ServerReflectionRequest& request,
                ServerReflectionResponse& response) {
    const std::string bytes = request.SerializeAsString();
    grpc::Slice slice(bytes);
    grpc::ByteBuffer out(&slice, 1);
    call_->Write(out, Tag());
    if (!Wait()) return false;
    grpc::ByteBuffer in;
    call_->Read(&in, Tag());
    if (!Wait()) return false;
    grpc::Slice answer;
    if (!in.DumpToSingleSlice(&answer).ok() ||
        !response.ParseFromArray(answer.begin(),
                                 static_cast<int>(answer.size()))) {
      parse_error_ = true;
      return false;
    }
    return true;
  }

  // Half-closes the call and returns its status.
  grpc::Status Finish() {
    if (parse_error_) {
      context_->TryCancel();
    } else {
      call_->WritesDone(Tag());
      Wait();
    }
    grpc::Status status;
    call_->Finish(&status, Tag());
    Wait();
    if (parse_error_)
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          "unparsable v1alpha reflection response");
    return status;
  }

 private:
  void* Tag() { return this; }

  // Waits for the one operation in flight.
  bool Wait() {
    void* tag = nullptr;
    bool ok = false;
    return queue_.Next(&tag, &ok) && ok;
  }

  grpc::GenericStub stub_;
  std::unique_ptr<grpc::ClientContext> context_;
  grpc::CompletionQueue queue_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
  bool parse_error_ = false;
};

}  // namespace

void ReflectionV1Service::SetChannel(std::shared_ptr<grpc::Channel> channel) {
  absl::MutexLock lock(&mu_);
  channel_ = std::move(channel);
}

grpc::Status ReflectionV1Service::ServerReflectionInfo(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<ServerReflectionResponse, ServerReflectionRequest>*
        stream) {
  std::shared_ptr<grpc::Channel> channel;
  {
    absl::MutexLock lock(&mu_);
    channel = channel_;
  }
  if (channel == nullptr)
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "reflection is not ready yet");
  V1AlphaCall call(channel, *context);
  if (!call.Start()) return call.Finish();
  ServerReflectionRequest request;
  ServerReflectionResponse response;
  while (stream->Read(&request)) {
    if (!call.Exchange(request, response)) return call.Finish();
    if (!stream->Write(response)) break;  // The v1 client went away.
  }
  return call.Finish();
}

}  // namespace seqkv
