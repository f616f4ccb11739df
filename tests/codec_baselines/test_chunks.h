// Chunks for the baseline codec tests: synthetic ones of any layout and real
// ones cut from the shared KV cache dumps.
#ifndef SEQKV_TESTS_CODEC_BASELINES_TEST_CHUNKS_H_
#define SEQKV_TESTS_CODEC_BASELINES_TEST_CHUNKS_H_

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "codec/kv_layout.h"
#include "codec/turbo/element_io.h"

namespace seqkv::baseline_test {

// A chunk that owns its layout, tokens and bytes (ChunkInfo points into it).
struct OwnedChunk {
  std::unique_ptr<KvLayout> layout;
  std::vector<int32_t> tokens;
  std::vector<std::byte> data;
  uint64_t first_position = 0;

  ChunkInfo info() const {
    return ChunkInfo{layout.get(), static_cast<uint32_t>(tokens.size()),
                     first_position, tokens};
  }
  std::vector<float> Floats() const {
    std::vector<float> values(data.size() / DTypeSize(layout->dtype));
    LoadElements(layout->dtype, data, 0, values);
    return values;
  }
};

inline KvLayout MakeLayout(uint32_t layers, uint32_t heads, uint32_t head_dim,
                           DType dtype, bool latent = false) {
  KvLayout layout;
  layout.num_layers = layers;
  layout.num_kv_heads = heads;
  layout.head_dim = head_dim;
  layout.dtype = dtype;
  layout.latent = latent;
  return layout;
}

// Every element i.i.d. N(offset_c, stddev^2), where channel c of every head
// gets its own offset drawn from N(0, offset_std^2): a crude model of the
// constant per-channel offsets of real keys.
inline OwnedChunk GaussianChunk(const KvLayout& layout, uint32_t tokens,
                                uint64_t seed, float stddev = 1.0f,
                                float offset_std = 0.0f) {
  OwnedChunk chunk;
  chunk.layout = std::make_unique<KvLayout>(layout);
  chunk.tokens.resize(tokens);
  for (uint32_t t = 0; t < tokens; ++t)
    chunk.tokens[t] = static_cast<int32_t>(t);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(layout.elements_per_token() * tokens);
  const size_t rows_per_slot = size_t{tokens};
  const size_t slots = values.size() / layout.head_dim / rows_per_slot;
  std::vector<float> offsets(layout.head_dim);
  for (size_t slot = 0; slot < slots; ++slot) {
    for (float& o : offsets) o = offset_std * normal(rng);
    for (size_t t = 0; t < tokens; ++t)
      for (uint32_t c = 0; c < layout.head_dim; ++c)
        values[(slot * tokens + t) * layout.head_dim + c] =
            offsets[c] + stddev * normal(rng);
  }
  chunk.data.resize(values.size() * DTypeSize(layout.dtype));
  StoreElements(layout.dtype, values, 0, chunk.data);
  return chunk;
}

// Sum of squared errors and of squares, split by tensor (0 = K, 1 = V).
struct ErrorStats {
  double err[2] = {0, 0};
  double energy[2] = {0, 0};
  double rel_mse(int tensor) const { return err[tensor] / energy[tensor]; }
  double rel_mse_all() const {
    return (err[0] + err[1]) / (energy[0] + energy[1]);
  }
};

inline ErrorStats CompareChunks(const OwnedChunk& chunk,
                                std::span<const std::byte> decoded) {
  const KvLayout& l = *chunk.layout;
  std::vector<float> a = chunk.Floats();
  std::vector<float> b(a.size());
  LoadElements(l.dtype, decoded, 0, b);
  ErrorStats stats;
  const size_t slot_elements = size_t{chunk.tokens.size()} * l.head_dim;
  for (size_t i = 0; i < a.size(); ++i) {
    const int tensor =
        l.latent ? 0
                 : static_cast<int>((i / slot_elements / l.num_kv_heads) % 2);
    const double diff = double{a[i]} - b[i];
    stats.err[tensor] += diff * diff;
    stats.energy[tensor] += double{a[i]} * a[i];
  }
  return stats;
}

inline std::string KvFile(const std::string& name) {
  return std::string(SEQKV_DATA_DIR) + "/kv/" + name;
}

}  // namespace seqkv::baseline_test

#endif  // SEQKV_TESTS_CODEC_BASELINES_TEST_CHUNKS_H_
