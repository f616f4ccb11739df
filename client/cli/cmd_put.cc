// seqkv put --model NAME [--codec C] FILE.safetensors...
#include <iostream>

#include "absl/flags/flag.h"
#include "client/cli/command.h"
#include "client/cli/common_flags.h"
#include "nlohmann/json.hpp"

namespace seqkv::cli {
namespace {

int RunPut(std::span<char* const> args) {
  if (args.empty() || absl::GetFlag(FLAGS_model).empty()) {
    return kShowUsage;
  }
  auto client = ConnectOrDie();
  if (!client) return 1;
  // Without --rope, the keys are taken to be rotated as the registered model
  // says (registered from its config.json, say); a model not registered yet
  // gets DefaultRope().
  RopeConfig rope = DefaultRope();
  if (absl::GetFlag(FLAGS_rope).empty()) {
    auto registered = client->GetModel(absl::GetFlag(FLAGS_model));
    if (registered.ok())
      rope = registered->layout.rope;
    else if (!absl::IsNotFound(registered.status()))
      return ReportError(registered.status());
  } else if (auto status = ParseRopeFlag(absl::GetFlag(FLAGS_rope), rope);
             !status.ok()) {
    return ReportError(status);
  }
  PutOptions options;
  options.model = absl::GetFlag(FLAGS_model);
  options.codec = absl::GetFlag(FLAGS_codec);
  options.name_space = absl::GetFlag(FLAGS_namespace);
  int exit_code = 0;
  for (const char* path : args) {
    auto cache = ReadKvCacheFile(path);
    if (!cache.ok()) {
      exit_code = ReportError(cache.status());
      continue;
    }
    cache->layout.rope = rope;
    auto result = client->Put(options, *cache);
    if (!result.ok()) {
      exit_code = ReportError(result.status());
      continue;
    }
    nlohmann::json line = {
        {"file", path},
        {"tokens", result->tokens},
        {"chunks_new", result->chunks_new},
        {"chunks_deduped", result->chunks_deduped},
        {"bytes_logical", result->bytes_logical},
        {"bytes_stored", result->bytes_stored},
        {"codec", result->codec},
        {"tokens_new", result->tokens_new},
        {"tokens_deduped", result->tokens_deduped},
        {"tokens_split_deduped", result->tokens_split_deduped},
        {"tokens_cross_prefix", result->tokens_cross_prefix}};
    std::cout << line.dump() << std::endl;
  }
  return exit_code;
}

const CommandRegistrar registrar({"put", RunPut});

}  // namespace
}  // namespace seqkv::cli
