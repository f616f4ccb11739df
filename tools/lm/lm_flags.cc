#include "tools/lm/lm_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, model_dir, "",
          "Hugging Face model directory (config.json, safetensors weights, "
          "tokenizer.json)");
ABSL_FLAG(int32_t, prefix_tokens, 0,
          "tokens of each file whose cache is coded (default: 3/4 of the "
          "file)");
ABSL_FLAG(int32_t, max_tokens, 0,
          "use only the first N tokens of each file (0: all)");
ABSL_FLAG(int32_t, chunk_tokens, 256, "tokens per coded chunk");
