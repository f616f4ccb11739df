// Builds a model's codec state (codec/model_state.h) from its files: a
// Hugging Face model directory and a calibration profile.
#ifndef SEQKV_MODEL_MODEL_STATE_BUILDER_H_
#define SEQKV_MODEL_MODEL_STATE_BUILDER_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "codec/kv_layout.h"

namespace seqkv {

// Reads config.json (model/hf_config.h) and the safetensors weights (one file
// or sharded with model.safetensors.index.json) of a Llama-style model and
// returns the codec-state blobs derived from them: "layer0", the layer-0 K
// (pre-RoPE) and V of every vocabulary token, rounded as a bf16 forward pass
// rounds them (model/bf16_ops.h). The config must agree with `layout` (layers,
// KV heads, head_dim, RoPE theta); a mismatch is INVALID_ARGUMENT naming the
// field.
absl::StatusOr<std::map<std::string, std::string>> BuildCodecStateFromModelDir(
    const std::string& model_dir, const KvLayout& layout);

// Reads and checks a fidelity profile written by `seqkv calibrate`; returns
// the blob to store as codec state "profile".
absl::StatusOr<std::string> LoadProfile(const std::string& path,
                                        const KvLayout& layout);

}  // namespace seqkv

#endif  // SEQKV_MODEL_MODEL_STATE_BUILDER_H_
