#include "client/cli/token_input.h"

#include "absl/strings/str_cat.h"
#include "model/safetensors.h"

namespace seqkv::cli {

absl::StatusOr<std::vector<int32_t>> ReadTokens(const std::string& path) {
  const std::string names[] = {"tokens"};
  auto file = ReadSafetensorsTensors(path, names);
  if (!file.ok()) return file.status();
  const Tensor& tokens = file->tensors.at("tokens");
  if (tokens.dtype != "I32" || tokens.shape.size() != 1)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": 'tokens' must be int32 [T]"));
  auto span = tokens.as<int32_t>();
  return std::vector<int32_t>(span.begin(), span.end());
}

}  // namespace seqkv::cli
