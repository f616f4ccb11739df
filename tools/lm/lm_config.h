// The runtime's view of a Hugging Face config.json: the one reader's fields
// (model/hf_config.h), checked for what this runtime implements. Every number
// the runtime uses comes from there, never from constants.
#ifndef SEQKV_TOOLS_LM_LM_CONFIG_H_
#define SEQKV_TOOLS_LM_LM_CONFIG_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/hf_config.h"

namespace seqkv::lm {

// The runtime computes in bf16, so the KV cache it produces is bf16 whatever
// the checkpoint's dtype: ParseLmConfig and LoadLmConfig set dtype to bf16,
// and KvCacheLayout() is then the layout of the runtime's caches.
using LmConfig = HfConfig;

// OK, or UNIMPLEMENTED naming the field the runtime cannot honour (biases,
// other activations, scaled or partial RoPE, no RoPE), or INVALID_ARGUMENT
// for a field the runtime needs that the config leaves out
// (intermediate_size).
absl::Status CheckRuntimeSupport(const HfConfig& config);

// ParseHfConfig, then CheckRuntimeSupport.
absl::StatusOr<LmConfig> ParseLmConfig(const std::string& json_text);
// Reads <model_dir>/config.json as ParseLmConfig does.
absl::StatusOr<LmConfig> LoadLmConfig(const std::string& model_dir);

}  // namespace seqkv::lm

#endif  // SEQKV_TOOLS_LM_LM_CONFIG_H_
