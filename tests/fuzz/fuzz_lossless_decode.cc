// Fuzzes the "lossless" codec's decoder. The first input byte picks a small
// layout (dtype, RoPE, latent, token ids, shape); the rest is the payload.
// Decoding must fail cleanly (DATA_LOSS, or FAILED_PRECONDITION for a
// payload that needs model state) or produce exactly chunk.num_bytes() bytes;
// seeds are real encodings of synthetic chunks. A payload whose first byte
// is format 4's, or whose size is a multiple of 5, is decoded against a
// fixed small set of reference rows (tests/fuzz/fuzz_references.h), and
// seeds of every fourth selector are encoded against them, so format 4 and
// its mismatches are covered.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "tests/codec_lossless/lossless_test_util.h"
#include "tests/fuzz/fuzz_references.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

using seqkv::ChunkInfo;
using seqkv::DType;
using seqkv::KvLayout;
using seqkv::RopeStyle;

struct Variant {
  KvLayout layout;
  uint32_t tokens;
  std::vector<int32_t> token_ids;
};

Variant MakeVariant(uint8_t selector) {
  Variant v;
  static constexpr DType kDtypes[] = {DType::kBF16, DType::kFP16, DType::kFP32};
  v.layout.dtype = kDtypes[selector % 3];
  v.layout.latent = (selector >> 2) % 5 == 0;
  v.layout.num_layers = 1 + (selector >> 4) % 2;
  v.layout.num_kv_heads = v.layout.latent ? 1 : 1 + (selector >> 5) % 2;
  v.layout.head_dim = (selector & 0x40) ? 8 : 32;
  v.layout.rope.style = v.layout.latent     ? RopeStyle::kNone
                        : (selector & 0x08) ? RopeStyle::kInterleaved
                                            : RopeStyle::kRotateHalf;
  v.tokens = 1 + selector % 24;
  if (!(selector & 0x80)) {
    for (uint32_t t = 0; t < v.tokens; ++t)
      v.token_ids.push_back(static_cast<int32_t>((t * 7 + selector) % 5));
  }
  return v;
}

std::unique_ptr<seqkv::Codec> MakeCodec(const KvLayout& layout) {
  seqkv::ModelContext model;
  model.layout = layout;
  auto codec = seqkv::CreateCodec("lossless", model);
  if (!codec.ok()) std::abort();
  return std::move(codec).value();
}

std::string MakeSeed(uint64_t seed) {
  const uint8_t selector =
      static_cast<uint8_t>(seed * 0x9E3779B97F4A7C15ull >> 56);
  Variant v = MakeVariant(selector);
  ChunkInfo chunk{&v.layout, v.tokens, 0, v.token_ids};
  const auto references =
      seqkv::testing::MakeFuzzReferences(v.layout, v.tokens);
  if (seed % 4 == 0 && references != nullptr)
    chunk.references = &references->references;
  const std::vector<std::byte> data = seqkv::testing::MakeChunk(
      v.layout, v.tokens, v.token_ids, seed, /*special_rate=*/0.05);
  std::string out(1, static_cast<char>(selector));
  auto codec = MakeCodec(v.layout);
  if (!codec->Encode(chunk, data, out).ok()) std::abort();
  // A seed must itself decode, bit for bit.
  std::vector<std::byte> back(data.size());
  if (!codec->Decode(chunk, std::string_view(out).substr(1), back).ok() ||
      back != data) {
    std::fprintf(stderr, "seed %llu does not round-trip\n",
                 static_cast<unsigned long long>(seed));
    std::abort();
  }
  return out;
}
SEQKV_FUZZ_SEED_GENERATOR(MakeSeed);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Variant v = MakeVariant(data[0]);
  ChunkInfo chunk{&v.layout, v.tokens, 0, v.token_ids};
  const auto references =
      seqkv::testing::MakeFuzzReferences(v.layout, v.tokens);
  if (references != nullptr && (data[1 % size] == 4 || size % 5 == 0))
    chunk.references = &references->references;
  static auto* codecs = new std::vector<std::unique_ptr<seqkv::Codec>>(256);
  auto& codec = (*codecs)[data[0]];
  if (codec == nullptr) codec = MakeCodec(v.layout);
  // The output buffer is exactly the chunk's size: a write past it would
  // be caught by the sanitizers of a libFuzzer build.
  std::vector<std::byte> out(chunk.num_bytes());
  const absl::Status status = codec->Decode(
      chunk,
      std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1), out);
  // FAILED_PRECONDITION: the payload asks for model state (a layer-0
  // table) that this model does not have.
  if (!status.ok() && status.code() != absl::StatusCode::kDataLoss &&
      status.code() != absl::StatusCode::kFailedPrecondition) {
    std::fprintf(stderr, "unexpected status %s\n", status.ToString().c_str());
    std::abort();
  }
  return 0;
}
