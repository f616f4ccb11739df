// seqkv-null-grpc serve|bench: the gRPC transport ceiling for seqkv's Put and
// Get. `serve` answers NullStream calls and drops the bytes; `bench` streams
// the same message sizes as seqkv's client (2 MiB) from N clients.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "bench/load/timed_loop.h"
#include "null_stream.grpc.pb.h"
#include "proto/grpc_transport.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0",
          "serve: address (port 0 picks one)");
ABSL_FLAG(std::string, ready_file, "",
          "serve: write {\"grpc_port\":N} here once serving");
ABSL_FLAG(std::string, server, "127.0.0.1:50561", "bench: server address");
ABSL_FLAG(std::string, op, "sink",
          "bench: sink (like Put) or source (like Get)");
ABSL_FLAG(int, clients, 4, "bench: concurrent clients");
ABSL_FLAG(uint64_t, bytes, 32 << 20, "bench: bytes per call");
ABSL_FLAG(uint32_t, message_bytes, seqkv::kStreamMessageBytes,
          "bench: bytes per streamed message (default: what seqkv's client "
          "and server use)");
ABSL_FLAG(double, duration_s, 5, "bench: seconds to run");
ABSL_FLAG(uint32_t, warmup_ops, 1,
          "bench: untimed calls per client before timing starts");
ABSL_FLAG(bool, own_connection, false,
          "bench: give every client its own TCP connection (by default gRPC "
          "shares one between channels with equal arguments, as seqkv's "
          "client does)");
ABSL_FLAG(bool, json, false, "bench: print JSON");

namespace seqkv::bench {
namespace {

using v1::Blob;
using v1::NullStream;
using v1::SinkReply;
using v1::SourceRequest;

class NullService final : public NullStream::Service {
  grpc::Status Sink(grpc::ServerContext*, grpc::ServerReader<Blob>* reader,
                    SinkReply* reply) override {
    Blob blob;
    uint64_t bytes = 0;
    while (reader->Read(&blob)) bytes += blob.data().size();
    reply->set_bytes(bytes);
    return grpc::Status::OK;
  }

  grpc::Status Source(grpc::ServerContext*, const SourceRequest* request,
                      grpc::ServerWriter<Blob>* writer) override {
    const uint32_t piece =
        request->message_bytes() == 0
            ? uint32_t{kStreamMessageBytes}
            : std::min<uint32_t>(request->message_bytes(), 16u << 20);
    // One buffer for every message, as seqkv's Get reuses its buffers: the
    // stream pays only for the transport.
    Blob blob;
    std::string* data = blob.mutable_data();
    for (uint64_t sent = 0; sent < request->bytes(); sent += piece) {
      data->resize(std::min<uint64_t>(piece, request->bytes() - sent), 'x');
      if (!writer->Write(blob))
        return grpc::Status(grpc::StatusCode::CANCELLED, "gone");
    }
    return grpc::Status::OK;
  }
};

int Serve() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  NullService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen),
                           grpc::InsecureServerCredentials(), &port);
  ApplyTransportArguments(builder);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::cerr << "cannot listen on " << absl::GetFlag(FLAGS_listen) << "\n";
    return 1;
  }
  if (const std::string ready = absl::GetFlag(FLAGS_ready_file);
      !ready.empty()) {
    std::ofstream(ready + ".tmp")
        << absl::StrCat("{\"grpc_port\":", port, "}\n");
    std::filesystem::rename(ready + ".tmp", ready);
  }
  int received = 0;
  sigwait(&signals, &received);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}

std::shared_ptr<grpc::Channel> MakeChannel(int index) {
  grpc::ChannelArguments args = TransportChannelArguments();
  if (absl::GetFlag(FLAGS_own_connection))
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(absl::GetFlag(FLAGS_server),
                                   grpc::InsecureChannelCredentials(), args);
}

int Bench() {
  const std::string op = absl::GetFlag(FLAGS_op);
  if (op != "sink" && op != "source") {
    std::cerr << "--op must be sink or source\n";
    return 2;
  }
  const uint64_t bytes = absl::GetFlag(FLAGS_bytes);
  const uint32_t message_bytes =
      std::max<uint32_t>(1, absl::GetFlag(FLAGS_message_bytes));
  const std::string payload(message_bytes, 'x');
  auto make_op = [&](int index) -> Operation {
    auto stub = std::shared_ptr<NullStream::Stub>(
        NullStream::NewStub(MakeChannel(index)));
    if (op == "sink") {
      return [stub, bytes, message_bytes, &payload]() -> absl::Status {
        grpc::ClientContext context;
        SinkReply reply;
        auto writer = stub->Sink(&context, &reply);
        Blob blob;
        bool open = true;
        for (uint64_t sent = 0; open && sent < bytes; sent += message_bytes) {
          // One copy into the message per piece, as seqkv's client makes.
          blob.set_data(payload.data(),
                        std::min<uint64_t>(message_bytes, bytes - sent));
          open = writer->Write(blob);
        }
        writer->WritesDone();
        grpc::Status status = writer->Finish();
        if (!status.ok()) return absl::UnavailableError(status.error_message());
        if (reply.bytes() != bytes) return absl::DataLossError("short sink");
        return absl::OkStatus();
      };
    }
    return [stub, bytes, message_bytes]() -> absl::Status {
      grpc::ClientContext context;
      SourceRequest request;
      request.set_bytes(bytes);
      request.set_message_bytes(message_bytes);
      auto reader = stub->Source(&context, request);
      Blob blob;
      uint64_t received = 0;
      while (reader->Read(&blob)) received += blob.data().size();
      grpc::Status status = reader->Finish();
      if (!status.ok()) return absl::UnavailableError(status.error_message());
      if (received != bytes) return absl::DataLossError("short source");
      return absl::OkStatus();
    };
  };
  TimedLoopOptions loop;
  loop.clients = absl::GetFlag(FLAGS_clients);
  loop.duration_s = absl::GetFlag(FLAGS_duration_s);
  loop.warmup_ops = absl::GetFlag(FLAGS_warmup_ops);
  loop.bytes_per_op = bytes;
  TimedLoopResult result = RunTimedLoop(loop, make_op);
  nlohmann::json json = {
      {"command", "null-grpc"},
      {"config",
       {{"op", op},
        {"clients", absl::GetFlag(FLAGS_clients)},
        {"warmup_ops", absl::GetFlag(FLAGS_warmup_ops)},
        {"bytes", bytes},
        {"message_bytes", message_bytes},
        {"own_connection", absl::GetFlag(FLAGS_own_connection)}}},
      {"ops", {{op, TimedLoopJson(result)}}}};
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << json.dump() << std::endl;
  } else {
    std::cout << json.dump(2) << std::endl;
  }
  return result.errors == 0 ? 0 : 1;
}

}  // namespace
}  // namespace seqkv::bench

int main(int argc, char** argv) {
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const std::string mode = args.size() > 1 ? args[1] : "";
  if (mode == "serve") return seqkv::bench::Serve();
  if (mode == "bench") return seqkv::bench::Bench();
  std::cerr << "usage: seqkv-null-grpc serve [--listen ADDR] [--ready_file F]\n"
               "       seqkv-null-grpc bench --server ADDR [--op sink|source] "
               "[--clients N] [--bytes B] [--duration_s S] [--warmup_ops N] "
               "[--json]\n";
  return 2;
}
