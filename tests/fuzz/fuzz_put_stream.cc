// Fuzzes the Put request parser end to end on a real RocksDB: the input is a
// serialized PutHeader and a data stream in arbitrary splits. Whatever the
// bytes, the engine answers with a status; a Put it accepts must read back.
#include <cstdint>
#include <cstring>
#include <random>
#include <string>

#include "proto/layout_convert.h"
#include "server/cache_engine.h"
#include "tests/engine_wire.h"
#include "tests/fuzz/fuzz_engine.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

seqkv::CacheEngine& Engine() {
  static seqkv::CacheEngine& engine = seqkv::fuzz::StartFuzzEngine("put", 4);
  return engine;
}

// [u16 header size][header][u8 split][data...]
std::string MakeSeed(uint64_t seed) {
  std::mt19937_64 rng(seed);
  seqkv::v1::PutHeader header;
  header.set_model("fuzz");
  *header.mutable_layout() =
      seqkv::LayoutToProto({1, 1, 2, seqkv::DType::kBF16});
  const int tokens = 1 + rng() % 9;
  const bool packed = rng() % 2;  // both encodings of the token ids
  for (int i = 0; i < tokens; ++i) {
    const int32_t token = static_cast<int32_t>(rng() % 4);
    if (packed) {
      header.mutable_packed_tokens()->append(
          reinterpret_cast<const char*>(&token), sizeof(token));
    } else {
      header.add_tokens(token);
    }
  }
  header.set_codec(rng() % 2 ? "raw" : "lossless");
  const std::string bytes = header.SerializeAsString();
  std::string out(2, '\0');
  const uint16_t size = bytes.size();
  std::memcpy(out.data(), &size, 2);
  out += bytes;
  out.push_back(static_cast<char>(1 + rng() % 7));
  for (int i = 0; i < tokens * 8; ++i) out.push_back(static_cast<char>(rng()));
  return out;
}
SEQKV_FUZZ_SEED_GENERATOR(MakeSeed);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  uint16_t header_size = 0;
  std::memcpy(&header_size, data, 2);
  if (size < 3u + header_size) return 0;
  seqkv::v1::PutHeader header;
  if (!header.ParseFromArray(data + 2, header_size)) return 0;
  const size_t split = 1 + data[2 + header_size];
  std::string_view stream(reinterpret_cast<const char*>(data) + 3 + header_size,
                          size - 3 - header_size);
  auto session = seqkv::testing::WireBeginPut(Engine(), "ns", header);
  if (!session.ok()) return 0;
  absl::Status status;
  for (size_t offset = 0; status.ok() && offset < stream.size();
       offset += split)
    status = (*session)->Append(stream.substr(offset, split));
  if (!status.ok()) return 0;
  auto result = seqkv::testing::WireFinishPut(Engine(), **session);
  if (!result.ok()) return 0;
  seqkv::v1::GetRequest get;
  get.set_model(header.model());
  *get.mutable_tokens() = header.tokens();
  get.set_packed_tokens(header.packed_tokens());
  std::string back;
  auto read = seqkv::testing::WireGet(
      Engine(), {{"ns"}}, get, 1 << 20,
      [](const seqkv::v1::GetHeader&) { return true; },
      [&](std::string& piece) {
        back += piece;
        return true;
      });
  // Another input may have stored other bytes under the same tokens first
  // (dedup keeps the first), so only the length is certain.
  if (!read.ok() || back.size() != stream.size()) std::abort();
  return 0;
}
