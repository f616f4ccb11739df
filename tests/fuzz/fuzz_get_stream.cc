// Fuzzes the client's Get stream assembler with what a server (or a
// corrupted stream) might send: any sequence of messages gives a cache or
// DATA_LOSS, never a crash or a write outside the cache.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "client/get_stream.h"
#include "proto/layout_convert.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

// Input: serialized GetResponse messages, each after its length as 2
// little-endian bytes.
std::string Frame(const std::string& message) {
  std::string out;
  out.push_back(static_cast<char>(message.size() & 0xff));
  out.push_back(static_cast<char>(message.size() >> 8));
  return out + message;
}

const std::vector<int32_t>& RequestTokens() {
  static const std::vector<int32_t> tokens(16, 7);
  return tokens;
}

std::string MakeSeed(uint64_t seed) {
  std::mt19937_64 rng(seed);
  const seqkv::KvLayout layout{1 + static_cast<uint32_t>(rng() % 2), 1,
                               4 * (1 + static_cast<uint32_t>(rng() % 2)),
                               seqkv::DType::kBF16, rng() % 3 == 0};
  const uint32_t tokens = 1 + rng() % 6;
  seqkv::v1::GetResponse header;
  *header.mutable_header()->mutable_layout() = seqkv::LayoutToProto(layout);
  header.mutable_header()->set_end_token(tokens);
  header.mutable_header()->set_data_bytes(uint64_t{layout.bytes_per_token()} *
                                          tokens);
  std::string out = Frame(header.SerializeAsString());
  std::string wire(layout.bytes_per_token() * tokens, '\0');
  for (char& c : wire) c = static_cast<char>(rng());
  for (size_t at = 0; at < wire.size();) {
    const size_t take = std::min<size_t>(wire.size() - at, 1 + rng() % 90);
    seqkv::v1::GetResponse data;
    data.set_data(wire.substr(at, take));
    out += Frame(data.SerializeAsString());
    at += take;
  }
  return out;
}
SEQKV_FUZZ_SEED_GENERATOR(MakeSeed);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  seqkv::KvCache cache;
  seqkv::GetStreamAssembler assembler(RequestTokens(), cache);
  seqkv::v1::GetResponse message;
  for (size_t at = 0; at + 2 <= input.size();) {
    const size_t length = static_cast<uint8_t>(input[at]) |
                          size_t{static_cast<uint8_t>(input[at + 1])} << 8;
    const std::string_view bytes = input.substr(at + 2, length);
    at += 2 + bytes.size();
    if (!message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
      return 0;
    if (!assembler.Add(message).ok()) return 0;
  }
  if (assembler.Finish().ok() &&
      (cache.k.size() + cache.v.size() !=
           uint64_t{cache.layout.bytes_per_token()} * cache.num_tokens() ||
       cache.num_tokens() > RequestTokens().size()))
    std::abort();
  return 0;
}
