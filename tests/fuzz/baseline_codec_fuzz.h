// Shared by the turbo and kivi fuzz targets. An input is 8 control bytes
// (codec spec, layout, token count, checksum repair) and then the payload.
// With "repair" set, the target rewrites the payload's checksum (bytes 2-5,
// over bytes 6+) before decoding, so that mutated inputs reach the parts of
// the decoder behind the checksum too.
#ifndef SEQKV_TESTS_FUZZ_BASELINE_CODEC_FUZZ_H_
#define SEQKV_TESTS_FUZZ_BASELINE_CODEC_FUZZ_H_

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "codec/turbo/element_io.h"
#include "codec/turbo/payload_header.h"

namespace seqkv::fuzz {

constexpr size_t kControlBytes = 8;

struct FuzzCase {
  KvLayout layout;
  uint32_t tokens = 0;
  bool repair = false;
  const char* spec = nullptr;
};

inline FuzzCase ParseControl(const uint8_t* c,
                             std::span<const char* const> specs) {
  static constexpr uint32_t kHeadDims[] = {1, 3, 8, 32, 64, 96, 128, 576};
  FuzzCase f;
  f.spec = specs[c[0] % specs.size()];
  f.layout.num_layers = 1 + c[1] % 2;
  f.layout.num_kv_heads = 1 + c[2] % 3;
  f.layout.head_dim = kHeadDims[c[3] % 8];
  f.layout.dtype = static_cast<DType>(1 + c[4] % 3);
  f.layout.latent = c[6] % 4 == 0;
  if (f.layout.latent) f.layout.num_kv_heads = 1;
  f.tokens = c[5] % 40;
  f.repair = c[7] % 2 == 1;
  return f;
}

inline void Abort(const char* what) {
  std::fprintf(stderr, "%s\n", what);
  std::abort();
}

inline std::unique_ptr<Codec> MakeCodec(const FuzzCase& f) {
  ModelContext model;
  model.layout = f.layout;
  auto codec = CreateCodec(f.spec, model);
  if (!codec.ok()) Abort("fuzz: cannot create codec");
  return std::move(*codec);
}

// A valid input: control bytes, then a real encoding of random data.
inline std::string MakeBaselineSeed(uint64_t seed,
                                    std::span<const char* const> specs) {
  std::mt19937_64 rng(seed);
  uint8_t control[kControlBytes];
  for (uint8_t& c : control) c = static_cast<uint8_t>(rng());
  const FuzzCase f = ParseControl(control, specs);
  std::vector<int32_t> tokens(f.tokens, 0);
  const ChunkInfo chunk{&f.layout, f.tokens, 0, tokens};
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> values(chunk.num_elements());
  for (float& v : values) v = normal(rng);
  std::vector<std::byte> data(chunk.num_bytes());
  StoreElements(f.layout.dtype, values, 0, data);
  std::string out(reinterpret_cast<const char*>(control), kControlBytes);
  if (!MakeCodec(f)->Encode(chunk, data, out).ok())
    Abort("fuzz: seed encoding failed");
  return out;
}

inline int FuzzBaselineDecoder(const uint8_t* data, size_t size,
                               std::span<const char* const> specs) {
  if (size < kControlBytes) return 0;
  const FuzzCase f = ParseControl(data, specs);
  std::string payload(reinterpret_cast<const char*>(data) + kControlBytes,
                      size - kControlBytes);
  if (f.repair && payload.size() >= 6)
    PutLe32(&payload[2], ChunkChecksum(std::string_view(payload).substr(6)));
  std::vector<int32_t> tokens(f.tokens, 0);
  const ChunkInfo chunk{&f.layout, f.tokens, 0, tokens};
  std::vector<std::byte> out(chunk.num_bytes());
  const std::unique_ptr<Codec> codec = MakeCodec(f);
  const absl::Status status = codec->Decode(chunk, payload, out);
  if (!status.ok() && status.code() != absl::StatusCode::kDataLoss)
    Abort("fuzz: decoder failed with a code other than DATA_LOSS");
  if (status.ok()) {
    // Decoded values are bounded by stored fp16 norms / scales; only an fp16
    // output (kivi: zero + 255 * scale) may overflow.
    std::vector<float> values(chunk.num_elements());
    LoadElements(f.layout.dtype, out, 0, values);
    for (float v : values)
      if (!std::isfinite(v) && f.layout.dtype != DType::kFP16)
        Abort("fuzz: decoder produced a non-finite value");
  }
  return 0;
}

}  // namespace seqkv::fuzz

#endif  // SEQKV_TESTS_FUZZ_BASELINE_CODEC_FUZZ_H_
