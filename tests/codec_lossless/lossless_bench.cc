// Benchmark (not a test): the lossless codec against zstd -19 on the same
// chunk bytes, on KV cache dumps in the format of ../shared/data/kv.
//
//   lossless_bench [--chunk=256] [--layer0=BLOB | --model_dir=DIR] [--no_peer]
//                  [--repeat=N] FILE.safetensors...
//
// Each file is cut into chunks as the server stores them; every chunk is
// encoded, decoded and compared bit for bit. zstd -19 compresses the K and
// the V half of each chunk separately. --layer0 names a file holding the
// model's "layer0" codec state blob (the layer-0 table); --model_dir builds
// the model state from a Hugging Face model directory instead. --no_peer
// skips zstd and --repeat=N codes each chunk N times (for profiling). Prints
// the ratios over bf16, bits per element per (layer, K/V), and speeds per CPU
// second.
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "model/model_state_builder.h"
#include "model/safetensors.h"

namespace seqkv {
namespace {

size_t ZstdSize(const void* data, size_t size) {
  std::string out(ZSTD_compressBound(size), '\0');
  return ZSTD_compress(out.data(), out.size(), data, size, 19);
}

int Main(int argc, char** argv) {
  uint32_t chunk_tokens = 256;
  std::string layer0_path;
  bool peer = true;
  int repeat = 1;
  std::string model_dir;
  std::map<std::string, std::string> model_state;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--chunk=", 0) == 0)
      chunk_tokens = static_cast<uint32_t>(std::stoul(arg.substr(8)));
    else if (arg.rfind("--model_dir=", 0) == 0)
      model_dir = arg.substr(12);
    else if (arg.rfind("--repeat=", 0) == 0)
      repeat = std::max(1, std::stoi(arg.substr(9)));
    else if (arg == "--no_peer")
      peer = false;
    else if (arg.rfind("--layer0=", 0) == 0)
      layer0_path = arg.substr(9);
    else
      files.push_back(arg);
  }
  if (files.empty() || chunk_tokens == 0) {
    std::fprintf(stderr,
                 "usage: lossless_bench [--chunk=N] [--layer0=BLOB | "
                 "--model_dir=DIR] [--no_peer] [--repeat=N] FILE...\n");
    return 2;
  }
  std::string layer0;
  if (!layer0_path.empty()) {
    std::ifstream in(layer0_path, std::ios::binary);
    layer0.assign(std::istreambuf_iterator<char>(in), {});
  }
  double raw = 0, coded = 0, zstd_k = 0, zstd_v = 0, raw_k = 0, raw_v = 0;
  double encode_cpu = 0, decode_cpu = 0;
  for (const std::string& path : files) {
    auto file = ReadSafetensors(path);
    if (!file.ok()) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(),
                   file.status().ToString().c_str());
      return 1;
    }
    const Tensor* k = *file->Find("k");
    const Tensor* v = *file->Find("v");
    auto tokens = (*file->Find("tokens"))->as<int32_t>();
    KvLayout layout;
    layout.num_layers = static_cast<uint32_t>(k->shape[0]);
    layout.num_kv_heads = static_cast<uint32_t>(k->shape[1]);
    layout.head_dim = static_cast<uint32_t>(k->shape[3]);
    layout.dtype = DType::kBF16;
    layout.rope.style = RopeStyle::kRotateHalf;
    const uint32_t total = static_cast<uint32_t>(k->shape[2]);
    ModelContext model;
    model.layout = layout;
    if (!layer0.empty()) model.codec_state["layer0"] = layer0;
    if (!model_dir.empty()) {
      if (model_state.empty()) {  // every file has the model's layout
        auto state = BuildCodecStateFromModelDir(model_dir, layout);
        if (!state.ok()) {
          std::fprintf(stderr, "%s\n", state.status().ToString().c_str());
          return 1;
        }
        model_state = *std::move(state);
      }
      for (const auto& [key, blob] : model_state) model.codec_state[key] = blob;
    }
    auto codec = CreateCodec("lossless", model);
    if (!codec.ok()) return 1;
    for (uint32_t start = 0; start < total; start += chunk_tokens) {
      const uint32_t n = std::min(chunk_tokens, total - start);
      ChunkInfo chunk{&layout, n, start, tokens.subspan(start, n)};
      std::vector<std::byte> data(chunk.num_bytes());
      for (uint32_t layer = 0; layer < layout.num_layers; ++layer)
        for (uint32_t tensor = 0; tensor < 2; ++tensor)
          for (uint32_t head = 0; head < layout.num_kv_heads; ++head)
            std::memcpy(
                data.data() + chunk.RowOffset(layer, tensor, head, 0) * 2,
                (tensor == 0 ? k : v)->data.data() +
                    ((size_t{layer} * layout.num_kv_heads + head) * total +
                     start) *
                        layout.head_dim * 2,
                size_t{n} * layout.head_dim * 2);
      std::string encoded;
      std::vector<std::byte> decoded(data.size());
      absl::Status status;
      const std::clock_t c0 = std::clock();
      for (int i = 0; i < repeat; ++i) {
        encoded.clear();
        if (!(*codec)->Encode(chunk, data, encoded).ok()) return 1;
      }
      const std::clock_t c1 = std::clock();
      for (int i = 0; i < repeat; ++i)
        status = (*codec)->Decode(chunk, encoded, decoded);
      const std::clock_t c2 = std::clock();
      if (!status.ok() || decoded != data) {
        std::fprintf(stderr, "%s: chunk at %u does not round-trip: %s\n",
                     path.c_str(), start, status.ToString().c_str());
        return 1;
      }
      encode_cpu += double(c1 - c0) / CLOCKS_PER_SEC / repeat;
      decode_cpu += double(c2 - c1) / CLOCKS_PER_SEC / repeat;
      raw += data.size();
      coded += encoded.size();
      const size_t half = size_t{layout.num_kv_heads} * n * layout.head_dim;
      for (uint32_t tensor = 0; tensor < 2; ++tensor) {
        std::vector<std::byte> part;
        for (uint32_t layer = 0; layer < layout.num_layers; ++layer) {
          const std::byte* at =
              data.data() + chunk.RowOffset(layer, tensor, 0, 0) * 2;
          part.insert(part.end(), at, at + half * 2);
        }
        if (peer)
          (tensor == 0 ? zstd_k : zstd_v) += ZstdSize(part.data(), part.size());
        (tensor == 0 ? raw_k : raw_v) += part.size();
      }
    }
  }
  const double zstd = zstd_k + zstd_v;
  std::printf("%zu files, chunks of %u tokens%s\n", files.size(), chunk_tokens,
              layer0.empty() ? "" : ", with the layer-0 table");
  std::printf(
      "lossless %.4fx over bf16, zstd -19 %.4fx (K %.3fx, V %.3fx): "
      "lossless / zstd = %.3f\n",
      raw / coded, raw / zstd, raw_k / zstd_k, raw_v / zstd_v, zstd / coded);
  std::printf("per CPU second: encode %.1f MB/s, decode %.1f MB/s\n",
              raw / encode_cpu / 1e6, raw / decode_cpu / 1e6);
  return 0;
}

}  // namespace
}  // namespace seqkv

int main(int argc, char** argv) { return seqkv::Main(argc, argv); }
