// Constructors of the individual peer codecs, for peer_codec.cc's factory.
#ifndef SEQKV_BENCH_CODEC_BENCH_PEERS_INTERNAL_H_
#define SEQKV_BENCH_CODEC_BENCH_PEERS_INTERNAL_H_

#include <memory>

#include "bench/codec_bench/peer_codec.h"

namespace seqkv::bench {

// Byte-oriented lossless compressors (byte_peers.cc).
std::unique_ptr<PeerCodec> MakeZstdPeer(int level);
std::unique_ptr<PeerCodec> MakeLz4Peer();
std::unique_ptr<PeerCodec> MakeBloscPeer(int level);
std::unique_ptr<PeerCodec> MakePlanesPeer(int level);

// Floating-point array compressors (float_peers.cc).
std::unique_ptr<PeerCodec> MakeFpzipPeer();
std::unique_ptr<PeerCodec> MakeZfpPeer(double rate);

}  // namespace seqkv::bench

#endif  // SEQKV_BENCH_CODEC_BENCH_PEERS_INTERNAL_H_
