// Fuzzes model registration, the parser of codec state (layer-0 tables,
// fidelity profiles) and of default codec specs, on a real RocksDB. Input:
// any bytes as a serialized RegisterModelRequest (RegisterModelStream
// assembles the same request from its pieces). The engine answers with a
// status; a model it accepts must then be found with the layout, chunk size
// and codec state keys it was given.
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "codec/model_state.h"
#include "proto/layout_convert.h"
#include "server/cache_engine.h"
#include "tests/engine_wire.h"
#include "tests/fuzz/fuzz_engine.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

seqkv::CacheEngine& Engine() {
  static seqkv::CacheEngine* engine =
      &seqkv::fuzz::StartFuzzEngine("register", 4);
  return *engine;
}

std::string MakeSeed(uint64_t seed) {
  std::mt19937_64 rng(seed);
  const uint32_t layers = 1 + rng() % 3, heads = 1 + rng() % 2,
                 head_dim = 8 << (rng() % 2), vocab = 1 + rng() % 16;
  seqkv::v1::RegisterModelRequest request;
  // One name per layout: a name registered again with another layout is
  // refused, which would leave little for the state parsers to see.
  request.set_model("fuzz-" + std::to_string(layers) + "x" +
                    std::to_string(heads) + "x" + std::to_string(head_dim));
  *request.mutable_layout() =
      seqkv::LayoutToProto({layers, heads, head_dim, seqkv::DType::kBF16});
  request.set_chunk_tokens(static_cast<uint32_t>(rng() % 9));
  if (rng() % 2) {
    std::vector<uint16_t> k(size_t{vocab} * heads * head_dim),
        v(size_t{vocab} * heads * head_dim);
    for (uint16_t& x : k) x = static_cast<uint16_t>(0x3c00 + rng() % 512);
    for (uint16_t& x : v) x = static_cast<uint16_t>(0x3c00 + rng() % 512);
    (*request.mutable_codec_state())[std::string(seqkv::kLayer0TableKey)] =
        seqkv::Layer0Table::Serialize(vocab, heads, head_dim, k, v);
  }
  if (rng() % 2) {
    std::string groups;
    for (uint32_t layer = 0; layer < layers; ++layer)
      for (const char* tensor : {"k", "v"})
        groups += (groups.empty() ? "" : ",") + std::string("{\"layer\":") +
                  std::to_string(layer) + ",\"tensor\":\"" + tensor +
                  "\",\"sensitivity\":0.0" + std::to_string(1 + rng() % 9) +
                  "}";
    (*request.mutable_codec_state())[std::string(seqkv::kProfileKey)] =
        "{\"model\":\"fuzz\",\"metric\":\"kl_per_rel_mse\",\"groups\":[" +
        groups + "]}";
  }
  const char* codecs[] = {"",
                          "raw",
                          "lossless",
                          "predictive:rel_mse=0.01",
                          "predictive:kl=0.003",
                          "turbo:3"};
  request.set_default_codec(codecs[rng() % 6]);
  return request.SerializeAsString();
}
SEQKV_FUZZ_SEED_GENERATOR(MakeSeed);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  seqkv::v1::RegisterModelRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  auto registered = seqkv::testing::WireRegisterModel(Engine(), request);
  if (!registered.ok()) return 0;
  auto model =
      Engine().GetModel(seqkv::testing::WireModels(), request.model());
  if (!model.ok() || model->chunk_tokens != registered->chunk_tokens ||
      model->layout.num_layers != request.layout().num_layers() ||
      model->layout.head_dim != request.layout().head_dim())
    std::abort();
  for (const auto& [key, blob] : request.codec_state())
    if (std::find(model->codec_state_keys.begin(),
                  model->codec_state_keys.end(),
                  key) == model->codec_state_keys.end())
      std::abort();
  return 0;
}
