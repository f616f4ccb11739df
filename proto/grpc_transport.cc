#include "proto/grpc_transport.h"

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace seqkv {
namespace {

// Integer channel arguments, the same on both ends of a connection.
std::vector<std::pair<std::string, int>> IntArguments() {
  std::vector<std::pair<std::string, int>> args = {
      // A fixed 8 MiB window per stream (4 messages in flight) instead of
      // gRPC's 64 KiB start that the BDP estimator grows: with the estimator
      // on, 32 MiB streams on loopback ran 3-5x slower and the receiver spent
      // 4x the CPU per byte (docs/benchmarks/bench.md).
      {GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8 << 20},
      {GRPC_ARG_HTTP2_BDP_PROBE, 0},
  };
  // SEQKV_GRPC_ARGS="name=int,name=int" adds or overrides arguments, to
  // measure transport settings without rebuilding (docs/benchmarks/bench.md).
  if (const char* extra = std::getenv("SEQKV_GRPC_ARGS"); extra != nullptr) {
    for (absl::string_view item :
         absl::StrSplit(extra, ',', absl::SkipWhitespace())) {
      std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(item, absl::MaxSplits('=', 1));
      int value = 0;
      if (absl::SimpleAtoi(kv.second, &value))
        args.emplace_back(std::string(kv.first), value);
    }
  }
  return args;
}

}  // namespace

grpc::ChannelArguments TransportChannelArguments() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  for (const auto& [name, value] : IntArguments()) args.SetInt(name, value);
  return args;
}

void ApplyTransportArguments(grpc::ServerBuilder& builder) {
  builder.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  for (const auto& [name, value] : IntArguments())
    builder.AddChannelArgument(name, value);
  // The sync server runs every call on a thread of its own and lets at most
  // MAX_POLLERS idle threads wait for the next one; a thread that finishes a
  // call beyond that exits, and the next call starts a new one. With gRPC's
  // default of 2, every streamed Put or Get of 4 concurrent clients paid a
  // thread exit and start (stack faults, madvise, TLB flushes): 1 MiB
  // streams ran 4x slower at 7x the server CPU per byte.
  int max_pollers = kMaxIdleServerThreads;
  if (const char* value = std::getenv("SEQKV_GRPC_MAX_POLLERS")) {
    int parsed = 0;
    if (absl::SimpleAtoi(value, &parsed) && parsed > 0) max_pollers = parsed;
  }
  builder.SetSyncServerOption(grpc::ServerBuilder::MAX_POLLERS, max_pollers);
}

}  // namespace seqkv
