#include "tools/lm/model_context.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "model/model_state_builder.h"

namespace seqkv::lm {

absl::StatusOr<ModelContext> BuildModelContext(
    const std::string& name, const std::string& model_dir,
    const LmConfig& config, const std::string& profile_path) {
  ModelContext context;
  context.name = name;
  context.layout = config.KvCacheLayout();
  // The same state `seqkv model register --model_dir --profile` stores:
  // the layer-0 table from the weights and the calibration profile.
  auto state = BuildCodecStateFromModelDir(model_dir, context.layout);
  if (!state.ok()) return state.status();
  for (auto& [key, blob] : *state) context.codec_state[key] = std::move(blob);
  if (!profile_path.empty()) {
    auto profile = LoadProfile(profile_path, context.layout);
    if (!profile.ok()) return profile.status();
    context.codec_state["profile"] = *std::move(profile);
  }
  return context;
}

std::string ModelName(const std::string& flag_value,
                      const std::string& model_dir) {
  if (!flag_value.empty()) return flag_value;
  std::filesystem::path path(model_dir);
  std::string base = path.filename().string();
  if (base.empty()) base = path.parent_path().filename().string();
  return base.empty() ? "model" : base;
}

}  // namespace seqkv::lm
