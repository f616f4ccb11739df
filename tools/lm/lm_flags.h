// Flags shared by the model-driven commands (eval, calibrate, generate,
// prefill).
// --model_dir, --chunk_tokens, --out and --tokens are shared with commands
// of the other binaries (client/cli/shared_flags.cc).
#ifndef SEQKV_TOOLS_LM_LM_FLAGS_H_
#define SEQKV_TOOLS_LM_LM_FLAGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"

ABSL_DECLARE_FLAG(std::string, model_dir);
ABSL_DECLARE_FLAG(uint32_t, chunk_tokens);
ABSL_DECLARE_FLAG(std::string, out);
ABSL_DECLARE_FLAG(std::string, tokens);
ABSL_DECLARE_FLAG(int32_t, prefix_tokens);
ABSL_DECLARE_FLAG(int32_t, max_tokens);
// generate --prompt, prefill --text.
ABSL_DECLARE_FLAG(bool, add_bos);

namespace seqkv::lm {

// Tokens per coded chunk: --chunk_tokens, or 256 when it is 0.
uint32_t ChunkTokensFlag();

// The ids of a --tokens value: either a comma-separated list ("0,12,34") or,
// as for `seqkv get`, a safetensors file whose `tokens` to use.
absl::StatusOr<std::vector<int32_t>> ParseTokensFlag(const std::string& value);

}  // namespace seqkv::lm

#endif  // SEQKV_TOOLS_LM_LM_FLAGS_H_
