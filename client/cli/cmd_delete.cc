// seqkv delete --model NAME [--tokens FILE.safetensors]
#include <iostream>

#include "absl/flags/flag.h"
#include "client/cli/command.h"
#include "client/cli/common_flags.h"
#include "client/cli/shared_flags.h"
#include "client/cli/token_input.h"
#include "nlohmann/json.hpp"

namespace seqkv::cli {
namespace {

int RunDelete(std::span<char* const> args) {
  if (absl::GetFlag(FLAGS_model).empty()) {
    return kShowUsage;
  }
  std::vector<int32_t> tokens;
  if (const std::string path = absl::GetFlag(FLAGS_tokens); !path.empty()) {
    auto read = ReadTokens(path);
    if (!read.ok()) return ReportError(read.status());
    tokens = std::move(*read);
  }
  auto client = ConnectOrDie();
  if (!client) return 1;
  auto result = client->Delete(absl::GetFlag(FLAGS_model), tokens,
                               absl::GetFlag(FLAGS_namespace));
  if (!result.ok()) return ReportError(result.status());
  std::cout << nlohmann::json({{"chunks_deleted", result->chunks_deleted},
                               {"bytes_freed", result->bytes_freed}})
                   .dump()
            << std::endl;
  return 0;
}

const CommandRegistrar registrar({"delete", RunDelete});

}  // namespace
}  // namespace seqkv::cli
