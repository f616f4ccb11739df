// Flags shared by the model-driven commands (eval, calibrate, generate).
#ifndef SEQKV_TOOLS_LM_LM_FLAGS_H_
#define SEQKV_TOOLS_LM_LM_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"

ABSL_DECLARE_FLAG(std::string, model_dir);
ABSL_DECLARE_FLAG(int32_t, prefix_tokens);
ABSL_DECLARE_FLAG(int32_t, max_tokens);
ABSL_DECLARE_FLAG(int32_t, chunk_tokens);

#endif  // SEQKV_TOOLS_LM_LM_FLAGS_H_
