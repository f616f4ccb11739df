// Checks and digests of ChunkInfo::references (cross-prefix residual
// coding), shared by the codecs that code rows against reference rows.
#ifndef SEQKV_CODEC_PREDICTIVE_REFERENCES_H_
#define SEQKV_CODEC_PREDICTIVE_REFERENCES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "codec/kv_layout.h"
#include "codec/predictive/rope.h"

namespace seqkv::predictive {

// True when the chunk names at least one reference run: only then does a
// codec code against references (null or empty references change nothing).
inline bool HasReferenceRuns(const ChunkInfo& chunk) {
  return chunk.references != nullptr && !chunk.references->runs.empty();
}

// Empty when every run of chunk.references lies inside the chunk and its
// source, runs ascend and are disjoint and non-empty, and every source
// holds `layout`'s bytes for its tokens; otherwise what is wrong. Callers
// add their codec's name and the status code (INVALID_ARGUMENT in Encode,
// DATA_LOSS in Decode: references come from disk too).
std::string CheckReferences(const ChunkInfo& chunk, const KvLayout& layout);

// XXH3-64 of the run structure (per run: token, num_tokens, source_token,
// and the source's first_position and num_tokens) and of the bytes of every
// source a run uses. A payload stores it so that Decode given other
// references fails instead of decoding garbage.
uint64_t ReferenceDigest(const ChunkInfo& chunk);

// Per token of the chunk, the index of the run that covers it, or -1.
// Requires CheckReferences to have passed.
std::vector<int32_t> RunOfToken(const ChunkInfo& chunk);

// Predicts rows of a chunk from its runs' source rows, computing the same
// bits on every machine (float row ops, no FMA contraction; see row_ops.h).
class ReferencePredictor {
 public:
  // Requires CheckReferences(chunk, layout) to have passed; `chunk` and its
  // references must outlive the predictor.
  ReferencePredictor(const ChunkInfo& chunk, const KvLayout& layout);

  // The run covering token t, or -1.
  int32_t run_of(uint32_t t) const { return run_of_[t]; }

  // Writes the prediction of row (layer, tensor, head, t), t in a run: the
  // source's row of the same token, V as stored, K with RoPE undone at the
  // source's position (the pre-RoPE frame) and, unless `pre_rope`, applied
  // again at this chunk's position. False when a value is not finite.
  bool Predict(uint32_t layer, uint32_t tensor, uint32_t head, uint32_t t,
               bool pre_rope, float* row) const;

 private:
  const ChunkInfo* chunk_;
  const KvLayout* layout_;
  std::vector<int32_t> run_of_;
  std::vector<RopeTable> source_rope_;  // per run, when K carries RoPE
  std::optional<RopeTable> rope_;       // this chunk's positions
};

}  // namespace seqkv::predictive

#endif  // SEQKV_CODEC_PREDICTIVE_REFERENCES_H_
