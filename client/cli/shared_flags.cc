#include "client/cli/shared_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, layout, "",
          "KV layout LAYERSxKV_HEADSxHEAD_DIM:DTYPE, e.g. 32x8x128:bf16 "
          "(model register: or use --model_dir); bench and replay also take "
          "a preset name such as llama3-8b or tiny");
ABSL_FLAG(std::string, model_dir, "",
          "Hugging Face model directory; its config.json gives the layout");
ABSL_FLAG(uint32_t, chunk_tokens, 0,
          "tokens per trie chunk (0: the server's default for model "
          "register, 256 elsewhere)");
ABSL_FLAG(std::string, tokens, "",
          "safetensors file whose `tokens` to use (generate, prefill: also "
          "a comma-separated id list)");
ABSL_FLAG(std::string, out, "",
          "output file (get, prefill: safetensors with tokens, k, v; "
          "calibrate: the profile JSON)");
