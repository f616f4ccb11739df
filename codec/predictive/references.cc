#include "codec/predictive/references.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "codec/predictive/row_ops.h"
#include "xxhash.h"

namespace seqkv::predictive {

std::string CheckReferences(const ChunkInfo& chunk, const KvLayout& layout) {
  const ChunkReferences& refs = *chunk.references;
  const uint64_t row_bytes = layout.bytes_per_token();
  for (size_t s = 0; s < refs.sources.size(); ++s) {
    const ReferenceSource& source = refs.sources[s];
    // Compared by division so an absurd num_tokens cannot overflow.
    if (row_bytes == 0 || source.data.size() % row_bytes != 0 ||
        source.data.size() / row_bytes != source.num_tokens)
      return absl::StrCat("reference source ", s, " has ", source.data.size(),
                          " bytes, expected ", row_bytes, " x ",
                          source.num_tokens);
    if (source.first_position > (uint64_t{1} << 48))
      return absl::StrCat("reference source ", s, " position ",
                          source.first_position, " out of range");
  }
  uint64_t next_token = 0;
  for (size_t r = 0; r < refs.runs.size(); ++r) {
    const ReferenceRun& run = refs.runs[r];
    if (run.num_tokens == 0)
      return absl::StrCat("reference run ", r, " is empty");
    if (run.token < next_token)
      return absl::StrCat("reference run ", r,
                          " overlaps or precedes the run before it");
    const uint64_t end = uint64_t{run.token} + run.num_tokens;
    if (end > chunk.num_tokens)
      return absl::StrCat("reference run ", r, " ends at token ", end,
                          ", past the chunk's ", chunk.num_tokens);
    if (run.source >= refs.sources.size())
      return absl::StrCat("reference run ", r, " names source ", run.source,
                          " of ", refs.sources.size());
    const uint64_t source_end = uint64_t{run.source_token} + run.num_tokens;
    if (source_end > refs.sources[run.source].num_tokens)
      return absl::StrCat("reference run ", r, " ends at token ", source_end,
                          " of its source, which has ",
                          refs.sources[run.source].num_tokens);
    next_token = end;
  }
  return "";
}

uint64_t ReferenceDigest(const ChunkInfo& chunk) {
  const ChunkReferences& refs = *chunk.references;
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  auto put = [state](uint64_t value) {
    unsigned char bytes[8];
    for (int i = 0; i < 8; ++i)
      bytes[i] = static_cast<unsigned char>(value >> (8 * i));
    XXH3_64bits_update(state, bytes, sizeof(bytes));
  };
  put(refs.runs.size());
  std::vector<uint64_t> source_hash(refs.sources.size(), 0);
  std::vector<bool> hashed(refs.sources.size(), false);
  for (const ReferenceRun& run : refs.runs) {
    const ReferenceSource& source = refs.sources[run.source];
    if (!hashed[run.source]) {
      source_hash[run.source] =
          XXH3_64bits(source.data.data(), source.data.size());
      hashed[run.source] = true;
    }
    put(run.token);
    put(run.num_tokens);
    put(run.source_token);
    put(source.first_position);
    put(source.num_tokens);
    put(source_hash[run.source]);
  }
  const uint64_t digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return digest;
}

std::vector<int32_t> RunOfToken(const ChunkInfo& chunk) {
  std::vector<int32_t> run_of(chunk.num_tokens, -1);
  const std::vector<ReferenceRun>& runs = chunk.references->runs;
  for (size_t r = 0; r < runs.size(); ++r)
    for (uint32_t t = 0; t < runs[r].num_tokens; ++t)
      run_of[runs[r].token + t] = static_cast<int32_t>(r);
  return run_of;
}

ReferencePredictor::ReferencePredictor(const ChunkInfo& chunk,
                                       const KvLayout& layout)
    : chunk_(&chunk), layout_(&layout), run_of_(RunOfToken(chunk)) {
  if (layout.latent || layout.rope.style == RopeStyle::kNone) return;
  for (const ReferenceRun& run : chunk.references->runs)
    source_rope_.emplace_back(
        layout.rope, layout.head_dim,
        chunk.references->sources[run.source].first_position + run.source_token,
        run.num_tokens);
  rope_.emplace(layout.rope, layout.head_dim, chunk.first_position,
                chunk.num_tokens);
}

bool ReferencePredictor::Predict(uint32_t layer, uint32_t tensor, uint32_t head,
                                 uint32_t t, bool pre_rope, float* row) const {
  const int32_t r = run_of_[t];
  const ReferenceRun& run = chunk_->references->runs[r];
  const ReferenceSource& source = chunk_->references->sources[run.source];
  const uint32_t offset = t - run.token;
  const size_t element =
      (((size_t{layer} * layout_->tensors_per_layer() + tensor) *
            layout_->num_kv_heads +
        head) *
           source.num_tokens +
       run.source_token + offset) *
      layout_->head_dim;
  LoadRow(layout_->dtype, layout_->head_dim,
          source.data.data() + element * DTypeSize(layout_->dtype), row);
  if (tensor == 0 && !source_rope_.empty()) {
    source_rope_[r].Undo(offset, row);
    if (!pre_rope) rope_->Apply(t, row);
  }
  // x * 0 is 0 for finite x and NaN otherwise.
  float sum = 0;
  for (uint32_t d = 0; d < layout_->head_dim; ++d) sum += row[d] * 0.0f;
  return sum == 0;
}

}  // namespace seqkv::predictive
