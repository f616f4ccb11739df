// Token ids for CLI commands: from a safetensors file's `tokens` tensor.
#ifndef SEQKV_CLIENT_CLI_TOKEN_INPUT_H_
#define SEQKV_CLIENT_CLI_TOKEN_INPUT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace seqkv::cli {

absl::StatusOr<std::vector<int32_t>> ReadTokens(const std::string& path);

}  // namespace seqkv::cli

#endif  // SEQKV_CLIENT_CLI_TOKEN_INPUT_H_
