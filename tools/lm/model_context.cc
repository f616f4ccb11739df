#include "tools/lm/model_context.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace seqkv::lm {

absl::StatusOr<ModelContext> BuildModelContext(
    const std::string& name, const std::string& model_dir,
    const LmConfig& config, const std::string& profile_path) {
  ModelContext context;
  context.name = name;
  context.layout = config.KvCacheLayout();
  if (!profile_path.empty()) {
    std::ifstream in(profile_path);
    if (!in)
      return absl::NotFoundError(
          absl::StrCat("cannot open --profile ", profile_path));
    std::stringstream text;
    text << in.rdbuf();
    context.codec_state["profile"] = text.str();
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
