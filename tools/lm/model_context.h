// The codec-side view of a model directory: the ModelContext a codec is
// created with (layout with RoPE from config.json, and codec state such as a
// calibration profile).
#ifndef SEQKV_TOOLS_LM_MODEL_CONTEXT_H_
#define SEQKV_TOOLS_LM_MODEL_CONTEXT_H_

#include <string>

#include "absl/status/statusor.h"
#include "codec/codec.h"
#include "tools/lm/lm_config.h"

namespace seqkv::lm {

// The codec state holds what model/model_state_builder.h derives from the
// model directory (the layer-0 table) and, when `profile_path` is not empty,
// the calibration profile under "profile".
absl::StatusOr<ModelContext> BuildModelContext(const std::string& name,
                                               const std::string& model_dir,
                                               const LmConfig& config,
                                               const std::string& profile_path);

// The model's name: `flag_value` if set, else the directory's base name.
std::string ModelName(const std::string& flag_value,
                      const std::string& model_dir);

}  // namespace seqkv::lm

#endif  // SEQKV_TOOLS_LM_MODEL_CONTEXT_H_
