// The gRPC transport settings shared by seqkv's client, its server and the
// null gRPC peer of bench/compare, so that the transport ceiling is measured
// with exactly the settings seqkv runs with.
#ifndef SEQKV_PROTO_GRPC_TRANSPORT_H_
#define SEQKV_PROTO_GRPC_TRANSPORT_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>

namespace seqkv {

// Bytes of KV data per streamed Put and Get message.
inline constexpr size_t kStreamMessageBytes = 2 << 20;

// The largest message either side accepts: KV data streams in messages of
// kStreamMessageBytes, but RegisterModel carries the model's codec state (a
// layer-0 table is vocab x kv width x 2 values).
inline constexpr int kMaxReceiveMessageBytes = 256 << 20;

// Idle threads the sync server keeps for the next call (gRPC's
// MAX_POLLERS); more concurrent calls than this make it start and stop
// threads per call. SEQKV_GRPC_MAX_POLLERS overrides it.
inline constexpr int kMaxIdleServerThreads = 64;

// Channel arguments for every seqkv client channel (SEQKV_GRPC_ARGS adds
// or overrides integer arguments, for measurements).
grpc::ChannelArguments TransportChannelArguments();

// Applies the same transport settings to a server.
void ApplyTransportArguments(grpc::ServerBuilder& builder);

}  // namespace seqkv

#endif  // SEQKV_PROTO_GRPC_TRANSPORT_H_
