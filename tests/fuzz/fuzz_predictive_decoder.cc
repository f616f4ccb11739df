// Fuzzes the predictive decoder. An input is 8 control bytes (spec, layout,
// token count, RoPE style, checksum repair) and then the payload. With
// "repair" set the target rewrites the payload's trailing XXH32 checksum
// before decoding, so that mutated inputs reach the parser and the entropy
// decoder behind it. The model carries a small layer-0 table, so payloads
// that predict layer 0 from the token ids are covered too. With the
// control bit "references" the chunk is decoded (and its seed encoded)
// against a fixed small set of reference rows (tests/fuzz/fuzz_references.h),
// which covers format 3. Control bit "long" adds 128 tokens, which covers
// trellis-coded groups.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "codec/float_bits.h"
#include "codec/model_state.h"
#include "tests/fuzz/fuzz_references.h"
#include "tests/fuzz/fuzz_seeds.h"
#include "xxhash.h"

namespace {

using namespace seqkv;

constexpr size_t kControlBytes = 8;
constexpr uint32_t kVocab = 16;
constexpr const char* kSpecs[] = {"predictive:rel_mse=0.01",
                                  "predictive:rel_mse=0.0001",
                                  "predictive:rel_mse=0.3,prerope=0"};

struct FuzzCase {
  ModelContext model;
  uint32_t tokens = 0;
  bool repair = false;
  bool references = false;
  const char* spec = nullptr;
};

void Abort(const char* what) {
  std::fprintf(stderr, "%s\n", what);
  std::abort();
}

FuzzCase ParseControl(const uint8_t* c) {
  static constexpr uint32_t kHeadDims[] = {2, 6, 8, 32, 64, 96, 128, 256};
  FuzzCase f;
  f.spec = kSpecs[c[0] % std::size(kSpecs)];
  KvLayout& layout = f.model.layout;
  layout.num_layers = 1 + c[1] % 2;
  layout.num_kv_heads = 1 + c[2] % 3;
  layout.head_dim = kHeadDims[c[3] % 8];
  layout.dtype = static_cast<DType>(1 + c[4] % 3);
  // Chunks of 128 tokens or more have their groups coded with the trellis
  // quantizer (group mode 2).
  f.tokens = c[5] % 40 + ((c[7] >> 2) % 2 == 1 ? 128 : 0);
  layout.rope.style = static_cast<RopeStyle>(c[6] % 3);
  layout.latent = c[6] / 3 % 5 == 0;
  if (layout.latent) layout.num_kv_heads = 1;
  f.repair = c[7] % 2 == 1;
  f.references = (c[7] >> 1) % 2 == 1;
  f.model.name = "fuzz";
  const size_t row = size_t{kVocab} * layout.num_kv_heads * layout.head_dim;
  std::vector<uint16_t> k(row), v(row);
  for (size_t i = 0; i < row; ++i) {
    k[i] = FloatToBf16(0.25f * static_cast<float>(i % 7) - 0.5f);
    v[i] = FloatToBf16(0.125f * static_cast<float>(i % 5));
  }
  f.model.codec_state[std::string(kLayer0TableKey)] = Layer0Table::Serialize(
      kVocab, layout.num_kv_heads, layout.head_dim, k, v);
  return f;
}

std::vector<int32_t> Tokens(uint32_t n) {
  std::vector<int32_t> tokens(n);
  for (uint32_t i = 0; i < n; ++i)
    tokens[i] = static_cast<int32_t>(i * 5 % kVocab);
  return tokens;
}

std::unique_ptr<Codec> MakeCodec(const FuzzCase& f) {
  auto codec = CreateCodec(f.spec, f.model);
  if (!codec.ok()) Abort("fuzz: cannot create codec");
  return std::move(*codec);
}

// A valid input: control bytes, then a real encoding of random data.
std::string MakeSeed(uint64_t seed) {
  std::mt19937_64 rng(seed);
  uint8_t control[kControlBytes];
  for (uint8_t& c : control) c = static_cast<uint8_t>(rng());
  const FuzzCase f = ParseControl(control);
  const std::vector<int32_t> tokens = Tokens(f.tokens);
  ChunkInfo chunk{&f.model.layout, f.tokens, 17, tokens};
  const auto references = testing::MakeFuzzReferences(f.model.layout, f.tokens);
  if (f.references && references != nullptr)
    chunk.references = &references->references;
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<std::byte> data(chunk.num_bytes());
  const size_t size = DTypeSize(f.model.layout.dtype);
  for (size_t i = 0; i < chunk.num_elements(); ++i) {
    const float value = normal(rng);
    if (size == 4) {
      std::memcpy(&data[i * 4], &value, 4);
    } else {
      const uint16_t bits = f.model.layout.dtype == DType::kBF16
                                ? FloatToBf16(value)
                                : FloatToFp16(value);
      std::memcpy(&data[i * 2], &bits, 2);
    }
  }
  std::string out(reinterpret_cast<const char*>(control), kControlBytes);
  if (!MakeCodec(f)->Encode(chunk, data, out).ok())
    Abort("fuzz: seed encoding failed");
  return out;
}
SEQKV_FUZZ_SEED_GENERATOR(MakeSeed);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kControlBytes) return 0;
  const FuzzCase f = ParseControl(data);
  std::string payload(reinterpret_cast<const char*>(data) + kControlBytes,
                      size - kControlBytes);
  if (f.repair && payload.size() >= 4) {
    const uint32_t checksum = XXH32(payload.data(), payload.size() - 4, 0);
    std::memcpy(&payload[payload.size() - 4], &checksum, 4);
  }
  const std::vector<int32_t> tokens = Tokens(f.tokens);
  // The first position is not in the control bytes: any decodes any.
  ChunkInfo chunk{&f.model.layout, f.tokens, 17, tokens};
  const auto references = testing::MakeFuzzReferences(f.model.layout, f.tokens);
  if (f.references && references != nullptr)
    chunk.references = &references->references;
  std::vector<std::byte> out(chunk.num_bytes());
  const absl::Status status = MakeCodec(f)->Decode(chunk, payload, out);
  if (!status.ok() && status.code() != absl::StatusCode::kDataLoss)
    Abort("fuzz: decoder failed with a code other than DATA_LOSS");
  return 0;
}
