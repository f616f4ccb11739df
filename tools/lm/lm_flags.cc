#include "tools/lm/lm_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(int32_t, prefix_tokens, 0,
          "tokens of each file whose cache is coded (default: 3/4 of the "
          "file)");
ABSL_FLAG(int32_t, max_tokens, 0,
          "use only the first N tokens of each file (0: all)");

namespace seqkv::lm {

uint32_t ChunkTokensFlag() {
  const uint32_t value = absl::GetFlag(FLAGS_chunk_tokens);
  return value > 0 ? value : 256;
}

}  // namespace seqkv::lm
