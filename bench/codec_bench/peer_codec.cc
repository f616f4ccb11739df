#include "bench/codec_bench/peer_codec.h"

#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "bench/codec_bench/peers_internal.h"

namespace seqkv::bench {

absl::StatusOr<std::unique_ptr<PeerCodec>> CreatePeerCodec(
    std::string_view spec_view) {
  const std::string spec(spec_view);
  const size_t colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  const std::string param =
      colon == std::string::npos ? "" : spec.substr(colon + 1);
  auto bad = [&](std::string_view want) {
    return absl::InvalidArgumentError(
        absl::StrCat("peer codec '", spec, "': ", std::string(want)));
  };
  if (name == "zstd") {
    int level = 3;
    if (!param.empty() &&
        (!absl::SimpleAtoi(param, &level) || level < 1 || level > 22))
      return bad("level must be in [1, 22]");
    return MakeZstdPeer(level);
  }
  if (name == "lz4") {
    if (!param.empty()) return bad("takes no parameter");
    return MakeLz4Peer();
  }
  if (name == "blosc") {
    // 9 is what python-blosc uses by default, so "blosc" matches the
    // figures usually quoted for it.
    int level = 9;
    if (!param.empty() &&
        (!absl::SimpleAtoi(param, &level) || level < 1 || level > 9))
      return bad("level must be in [1, 9]");
    return MakeBloscPeer(level);
  }
  if (name == "planes") {
    int level = 19;
    if (!param.empty() &&
        (!absl::SimpleAtoi(param, &level) || level < 1 || level > 22))
      return bad("level must be in [1, 22]");
    return MakePlanesPeer(level);
  }
  if (name == "fpzip") {
    if (!param.empty()) return bad("takes no parameter (it is lossless)");
    return MakeFpzipPeer();
  }
  if (name == "zfp") {
    double rate = 0;
    if (!absl::SimpleAtod(param, &rate) || !(rate > 0 && rate <= 32))
      return bad("wants a rate in bits per element, e.g. zfp:3");
    return MakeZfpPeer(rate);
  }
  return absl::NotFoundError(absl::StrCat("no peer codec named '", spec, "'"));
}

}  // namespace seqkv::bench
