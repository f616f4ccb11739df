#include "tools/lm/lm_flags.h"

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/cli/token_input.h"

ABSL_FLAG(int32_t, prefix_tokens, 0,
          "tokens of each file whose cache is coded (default: 3/4 of the "
          "file)");
ABSL_FLAG(int32_t, max_tokens, 0,
          "use only the first N tokens of each file (0: all)");
ABSL_FLAG(bool, add_bos, true,
          "start a --prompt or --text with the model's BOS token (config "
          "bos_token_id)");

namespace seqkv::lm {

uint32_t ChunkTokensFlag() {
  const uint32_t value = absl::GetFlag(FLAGS_chunk_tokens);
  return value > 0 ? value : 256;
}

absl::StatusOr<std::vector<int32_t>> ParseTokensFlag(const std::string& value) {
  if (value.find_first_not_of("0123456789, ") != std::string::npos)
    return cli::ReadTokens(value);
  std::vector<int32_t> tokens;
  for (absl::string_view part : absl::StrSplit(value, ',', absl::SkipEmpty())) {
    int32_t id;
    if (!absl::SimpleAtoi(part, &id))
      return absl::InvalidArgumentError(
          absl::StrCat("--tokens: '", part, "' is not an integer"));
    tokens.push_back(id);
  }
  return tokens;
}

}  // namespace seqkv::lm
