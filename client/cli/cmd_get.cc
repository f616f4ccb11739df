// seqkv get --model NAME --tokens FILE.safetensors --out OUT.safetensors
#include <iostream>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "client/cli/command.h"
#include "client/cli/common_flags.h"
#include "client/cli/shared_flags.h"
#include "client/cli/token_input.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(uint32_t, begin_token, 0, "first token of the range to fetch");
ABSL_FLAG(uint32_t, end_token, 0, "end of the range (0: end of the match)");
ABSL_DECLARE_FLAG(uint32_t, alignment);

namespace seqkv::cli {
namespace {

int RunGet(std::span<char* const> args) {
  const std::string tokens_path = absl::GetFlag(FLAGS_tokens);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (tokens_path.empty() || out.empty() ||
      absl::GetFlag(FLAGS_model).empty()) {
    return kShowUsage;
  }
  auto tokens = ReadTokens(tokens_path);
  if (!tokens.ok()) return ReportError(tokens.status());
  auto client = ConnectOrDie();
  if (!client) return 1;
  GetOptions options;
  options.model = absl::GetFlag(FLAGS_model);
  options.name_space = absl::GetFlag(FLAGS_namespace);
  options.begin_token = absl::GetFlag(FLAGS_begin_token);
  options.end_token = absl::GetFlag(FLAGS_end_token);
  options.alignment = absl::GetFlag(FLAGS_alignment);
  auto cache = client->Get(options, *tokens);
  if (!cache.ok()) return ReportError(cache.status());
  if (cache->tokens.empty()) {
    std::cout
        << nlohmann::json({{"matched_tokens", 0}, {"out", nullptr}}).dump()
        << std::endl;
    return 0;
  }
  if (auto status = WriteKvCacheFile(out, *cache); !status.ok())
    return ReportError(status);
  std::cout << nlohmann::json({{"tokens", cache->tokens.size()},
                               {"bytes", cache->k.size() + cache->v.size()},
                               {"out", out}})
                   .dump()
            << std::endl;
  return 0;
}

const CommandRegistrar registrar({"get", RunGet});

}  // namespace
}  // namespace seqkv::cli
