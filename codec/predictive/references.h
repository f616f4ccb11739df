// Checks and digests of ChunkInfo::references (cross-prefix residual
// coding), shared by the codecs that code rows against reference rows.
#ifndef SEQKV_CODEC_PREDICTIVE_REFERENCES_H_
#define SEQKV_CODEC_PREDICTIVE_REFERENCES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "codec/kv_layout.h"

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

}  // namespace seqkv::predictive

#endif  // SEQKV_CODEC_PREDICTIVE_REFERENCES_H_
