// Synthetic chunks that share runs of tokens with a chunk stored earlier,
// at other positions and with a little context-dependent change: the
// setting of cross-prefix residual coding (ChunkInfo::references).
#ifndef SEQKV_TESTS_CODEC_PREDICTIVE_REFERENCE_TEST_UTIL_H_
#define SEQKV_TESTS_CODEC_PREDICTIVE_REFERENCE_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "codec/kv_layout.h"
#include "codec/predictive/rope.h"
#include "tests/codec_predictive/test_util.h"

namespace seqkv::testing {

// The small layout the reference tests code: 3 layers, 2 KV heads,
// head_dim 64, RoPE theta 10000 in `style`.
inline KvLayout ReferenceTestLayout(RopeStyle style,
                                    DType dtype = DType::kBF16) {
  KvLayout layout;
  layout.num_layers = 3;
  layout.num_kv_heads = 2;
  layout.head_dim = 64;
  layout.dtype = dtype;
  layout.rope = RopeConfig{style, 10000.0, 0};
  return layout;
}

// A source chunk and a chunk whose runs repeat some of its tokens.
struct ReferenceCase {
  KvLayout layout;
  uint64_t source_first = 0, first = 0;
  std::vector<int32_t> source_tokens, tokens;
  std::vector<std::byte> source_data, data;
  ChunkReferences references;

  // The chunk to code, with or without its references.
  ChunkInfo chunk(bool with_references = true) const {
    ChunkInfo info{&layout, static_cast<uint32_t>(tokens.size()), first,
                   tokens};
    if (with_references) info.references = &references;
    return info;
  }
  ChunkInfo source_chunk() const {
    return ChunkInfo{&layout, static_cast<uint32_t>(source_tokens.size()),
                     source_first, source_tokens};
  }
};

// Every row is a channel offset plus scaled noise; a row of a run is the
// source's row of its token plus `noise` times fresh noise of the channel's
// scale, K being built before RoPE and rotated at each side's own
// positions (as a model does).
inline ReferenceCase MakeReferenceCase(const KvLayout& layout,
                                       uint32_t source_tokens, uint32_t tokens,
                                       uint64_t source_first, uint64_t first,
                                       std::vector<ReferenceRun> runs,
                                       float noise, uint64_t seed) {
  ReferenceCase c;
  c.layout = layout;
  c.source_first = source_first;
  c.first = first;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  for (uint32_t t = 0; t < source_tokens; ++t)
    c.source_tokens.push_back(static_cast<int32_t>(rng() % 5000));
  for (uint32_t t = 0; t < tokens; ++t)
    c.tokens.push_back(static_cast<int32_t>(rng() % 5000));
  std::vector<int32_t> run_of(tokens, -1);
  for (size_t r = 0; r < runs.size(); ++r)
    for (uint32_t i = 0; i < runs[r].num_tokens; ++i) {
      run_of[runs[r].token + i] = static_cast<int32_t>(r);
      c.tokens[runs[r].token + i] = c.source_tokens[runs[r].source_token + i];
    }
  const ChunkInfo source = c.source_chunk();
  const ChunkInfo chunk = c.chunk(false);
  c.source_data.resize(source.num_bytes());
  c.data.resize(chunk.num_bytes());
  const size_t size = DTypeSize(layout.dtype);
  const bool rotates = !layout.latent && layout.rope.style != RopeStyle::kNone;
  std::optional<predictive::RopeTable> source_rope, rope;
  if (rotates) {
    source_rope.emplace(layout.rope, layout.head_dim, source_first,
                        source_tokens);
    rope.emplace(layout.rope, layout.head_dim, first, tokens);
  }
  std::vector<float> row(layout.head_dim);
  for (uint32_t l = 0; l < layout.num_layers; ++l)
    for (uint32_t ti = 0; ti < layout.tensors_per_layer(); ++ti)
      for (uint32_t h = 0; h < layout.num_kv_heads; ++h) {
        std::vector<float> offset(layout.head_dim), scale(layout.head_dim);
        for (uint32_t d = 0; d < layout.head_dim; ++d) {
          offset[d] = (rng() % 4 == 0) ? 3 * normal(rng) : 0.1f * normal(rng);
          scale[d] = std::exp(0.7f * normal(rng)) * (ti == 0 ? 1.0f : 0.3f);
        }
        const bool rotate = rotates && ti == 0;
        // Pre-RoPE rows of the source, kept for the runs.
        std::vector<float> base(size_t{source_tokens} * layout.head_dim);
        for (uint32_t t = 0; t < source_tokens; ++t) {
          float* b = &base[size_t{t} * layout.head_dim];
          for (uint32_t d = 0; d < layout.head_dim; ++d)
            b[d] = offset[d] + scale[d] * normal(rng);
          row.assign(b, b + layout.head_dim);
          if (rotate) source_rope->Apply(t, row.data());
          std::byte* out = &c.source_data[source.RowOffset(l, ti, h, t) * size];
          for (uint32_t d = 0; d < layout.head_dim; ++d)
            StoreValue(layout.dtype, row[d], out + d * size);
        }
        for (uint32_t t = 0; t < tokens; ++t) {
          if (run_of[t] >= 0) {
            const ReferenceRun& run = runs[run_of[t]];
            const float* b = &base[size_t{run.source_token + (t - run.token)} *
                                   layout.head_dim];
            for (uint32_t d = 0; d < layout.head_dim; ++d)
              row[d] = b[d] + noise * scale[d] * normal(rng);
          } else {
            for (uint32_t d = 0; d < layout.head_dim; ++d)
              row[d] = offset[d] + scale[d] * normal(rng);
          }
          if (rotate) rope->Apply(t, row.data());
          std::byte* out = &c.data[chunk.RowOffset(l, ti, h, t) * size];
          for (uint32_t d = 0; d < layout.head_dim; ++d)
            StoreValue(layout.dtype, row[d], out + d * size);
        }
      }
  c.references.sources.push_back(
      ReferenceSource{source_tokens, source_first, c.source_data});
  c.references.runs = std::move(runs);
  return c;
}

// The usual case of the tests: 96 tokens at position 700, two runs from an
// 80-token source at position 20 (one run moved forward, one back).
inline ReferenceCase MakeDefaultReferenceCase(const KvLayout& layout,
                                              float noise, uint64_t seed) {
  return MakeReferenceCase(
      layout, 80, 96, 20, 700,
      {ReferenceRun{10, 30, 0, 40}, ReferenceRun{50, 40, 0, 0}}, noise, seed);
}

}  // namespace seqkv::testing

#endif  // SEQKV_TESTS_CODEC_PREDICTIVE_REFERENCE_TEST_UTIL_H_
