// Fuzzes the Lookup request parser on a real RocksDB holding a small trie
// (chunks of 4 tokens). Two kinds of input, by the first byte:
//  - even: any bytes as a serialized LookupRequest; the engine answers with
//    a status, and never matches more tokens than the request stands for;
//  - odd: a byte giving how many whole chunks to send as digests, then
//    int32 token ids; the digest lookup must match exactly what the token
//    lookup of the same ids matches, cut to whole chunks where the digests
//    stop matching.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "proto/chunk_digest.h"
#include "proto/layout_convert.h"
#include "server/cache_engine.h"
#include "tests/engine_wire.h"
#include "tests/fuzz/fuzz_engine.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

constexpr uint32_t kChunk = 4;

// Two stored sequences sharing their first 10 tokens.
std::vector<int32_t> Stored(int which) {
  std::vector<int32_t> tokens(30);
  for (int i = 0; i < 30; ++i) tokens[i] = i % 7;
  if (which == 1) tokens[10] = 100;
  return tokens;
}

seqkv::CacheEngine& Engine() {
  static seqkv::CacheEngine* engine = [] {
    seqkv::CacheEngine* started =
        &seqkv::fuzz::StartFuzzEngine("lookup", kChunk);
    for (int which : {0, 1}) {
      const std::vector<int32_t> tokens = Stored(which);
      seqkv::v1::PutHeader header;
      header.set_model("fuzz");
      *header.mutable_layout() =
          seqkv::LayoutToProto({1, 1, 2, seqkv::DType::kBF16});
      header.mutable_tokens()->Add(tokens.begin(), tokens.end());
      header.set_codec("raw");
      auto session = seqkv::testing::WireBeginPut(*started, "ns", header);
      if (!session.ok() ||
          !(*session)->Append(std::string(tokens.size() * 8, '\1')).ok() ||
          !seqkv::testing::WireFinishPut(*started, **session).ok())
        std::abort();
    }
    return started;
  }();
  return *engine;
}

uint32_t MatchOrAbort(const seqkv::v1::LookupRequest& request) {
  auto outcome = seqkv::testing::WireLookup(Engine(), {{"ns"}}, request);
  if (!outcome.ok()) std::abort();
  return outcome->matched_tokens;
}

std::string MakeSeed(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> tokens = Stored(static_cast<int>(rng() % 2));
  tokens.resize(rng() % 34);
  if (!tokens.empty() && rng() % 3 == 0) tokens[rng() % tokens.size()] = 9;
  const uint8_t digested = static_cast<uint8_t>(rng() % 9);
  if (rng() % 2) {
    seqkv::v1::LookupRequest request;
    request.set_model("fuzz");
    request.set_chunk_digests(
        seqkv::PackChunkDigests(tokens, kChunk).substr(0, digested * 8));
    request.mutable_tokens()->Add(tokens.begin(), tokens.end());
    return std::string(1, '\0') + request.SerializeAsString();
  }
  std::string out(1, static_cast<char>(2 * digested + 1));
  out.append(reinterpret_cast<const char*>(tokens.data()),
             tokens.size() * sizeof(int32_t));
  return out;
}
SEQKV_FUZZ_SEED_GENERATOR(MakeSeed);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  if (data[0] % 2 == 0) {
    seqkv::v1::LookupRequest request;
    if (!request.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
    auto outcome = seqkv::testing::WireLookup(Engine(), {{"ns"}}, request);
    if (!outcome.ok()) return 0;
    const uint64_t stands_for =
        request.chunk_digests().size() / 8 * kChunk +
        std::max<uint64_t>(request.tokens_size(),
                           request.packed_tokens().size() / 4);
    if (outcome->matched_tokens > stands_for) std::abort();
    return 0;
  }
  std::vector<int32_t> tokens((size - 1) / sizeof(int32_t));
  std::memcpy(tokens.data(), data + 1, tokens.size() * sizeof(int32_t));
  for (int32_t& token : tokens) token &= 0x7fffffff;  // ids are never negative
  if (tokens.empty()) return 0;
  const size_t digested = std::min<size_t>(data[0] / 2, tokens.size() / kChunk);
  seqkv::v1::LookupRequest by_tokens;
  by_tokens.set_model("fuzz");
  by_tokens.mutable_tokens()->Add(tokens.begin(), tokens.end());
  const uint32_t matched = MatchOrAbort(by_tokens);
  seqkv::v1::LookupRequest by_chunks;
  by_chunks.set_model("fuzz");
  by_chunks.set_chunk_digests(seqkv::PackChunkDigests(
      std::span(tokens).first(digested * kChunk), kChunk));
  by_chunks.mutable_tokens()->Add(tokens.begin() + digested * kChunk,
                                  tokens.end());
  const uint32_t digest_part = static_cast<uint32_t>(digested * kChunk);
  const uint32_t expected =
      matched >= digest_part ? matched : matched / kChunk * kChunk;
  if (MatchOrAbort(by_chunks) != expected) std::abort();
  return 0;
}
