// Real KV caches as the content of a replayed trace's blocks, so that codecs
// and lossy retention tiers see what they would see in service instead of
// random bytes.
//
// A trace names blocks by hash id only. KvSource cuts a slice out of KV cache
// dumps (model/kv_cache.h's format): one layer and one KV head, and a window
// of `slice_tokens` positions per block, fewer than the trace's block, so
// that a whole production trace fits on a small machine. Each distinct hash
// id takes one window of the files, picked by the id, so equal ids always
// carry equal bytes. A window keeps its values; only its keys' RoPE phase is
// moved (undone at the window's position in its file, applied at the block's
// position in the replayed sequence) so that keys stay what the model would
// have produced there.
//
// Thread-safety: immutable after Load; Fill may be called from any thread.
#ifndef SEQKV_BENCH_REPLAY_KV_SOURCE_H_
#define SEQKV_BENCH_REPLAY_KV_SOURCE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "codec/kv_layout.h"
#include "nlohmann/json.hpp"

namespace seqkv::bench {

struct KvSourceOptions {
  // Files to read, a glob(3) pattern ("dir/*.safetensors"). Files that hold
  // no KV cache (no 'k' tensor, e.g. a token stream) are skipped and listed.
  std::string glob;
  // The slice: layer and KV head of the source caches; -1 for the layer
  // picks the middle one (num_layers / 2), away from layer 0, which is a
  // function of the token ids alone in Llama-style models.
  int layer = -1;
  uint32_t head = 0;
  // Positions of each block stored (at most the trace's block_tokens).
  uint32_t slice_tokens = 16;
  // RoPE of the source model's keys (not stored in the dumps): from its
  // config.json or --rope.
  RopeConfig rope;
  // The source model's layout as its config.json states it, to check the
  // files against (layers, KV heads, head_dim); unset: not checked.
  std::optional<KvLayout> model_layout;
  // A fidelity profile of the source model (codec/model_state.h JSON), cut
  // to the slice by ProfileForSlice; empty: none.
  std::string profile_json;
  uint64_t seed = 1;
};

class KvSource {
 public:
  // Reads the files and cuts the slice. INVALID_ARGUMENT for a pattern that
  // matches no KV cache, files of different layouts, a slice outside the
  // layout, or a layout that disagrees with model_layout (naming the field).
  static absl::StatusOr<KvSource> Load(const KvSourceOptions& options);

  // The slice's layout: 1 layer, 1 KV head, the files' head_dim and dtype,
  // the options' RoPE.
  const KvLayout& layout() const { return layout_; }
  // The source files' full layout.
  const KvLayout& source_layout() const { return source_layout_; }
  uint32_t slice_tokens() const { return options_.slice_tokens; }
  uint32_t layer() const { return layer_; }

  // Appends the KV of block `hash_id` placed at `position` of its sequence:
  // `tokens` (at most slice_tokens) rows of K to `k` and of V to `v` (V
  // untouched for latent layouts), in the slice layout's dtype. A function of
  // (hash_id, position, tokens) alone.
  void Fill(uint64_t hash_id, uint64_t position, uint32_t tokens,
            std::vector<std::byte>& k, std::vector<std::byte>& v) const;

  // The profile of the slice: the source profile's groups of the slice's
  // layer renumbered to layer 0, channel weights cut to its head. Empty when
  // no profile was given.
  const std::string& slice_profile() const { return slice_profile_; }

  // What was read and cut, for the replay's report.
  nlohmann::json Describe() const;

 private:
  struct Window {
    uint32_t file = 0;
    uint32_t start = 0;  // position in the file
  };
  // One file's slice: [position][head_dim] per tensor, in its dtype.
  struct Slice {
    std::string path;
    uint32_t tokens = 0;
    std::vector<std::byte> k;
    std::vector<std::byte> v;
  };

  KvSourceOptions options_;
  KvLayout source_layout_;
  KvLayout layout_;
  uint32_t layer_ = 0;
  std::vector<Slice> slices_;
  std::vector<Window> windows_;
  std::vector<std::pair<std::string, std::string>> skipped_;
  std::string slice_profile_;
};

}  // namespace seqkv::bench

#endif  // SEQKV_BENCH_REPLAY_KV_SOURCE_H_
