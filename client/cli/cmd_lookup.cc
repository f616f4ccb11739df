// seqkv lookup --model NAME [--alignment N] [--by_chunks] FILE.safetensors
#include <iostream>

#include "absl/flags/flag.h"
#include "client/cli/command.h"
#include "client/cli/common_flags.h"
#include "client/cli/token_input.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(uint32_t, alignment, 0,
          "round matches down to a multiple of this many tokens");
ABSL_FLAG(bool, by_chunks, false,
          "lookup: send each whole chunk of the model as an 8-byte digest "
          "(whole chunks then match fully or not at all)");

namespace seqkv::cli {
namespace {

int RunLookup(std::span<char* const> args) {
  if (args.size() != 1 || absl::GetFlag(FLAGS_model).empty()) {
    return kShowUsage;
  }
  auto tokens = ReadTokens(args[0]);
  if (!tokens.ok()) return ReportError(tokens.status());
  auto client = ConnectOrDie();
  if (!client) return 1;
  const std::string model = absl::GetFlag(FLAGS_model);
  absl::StatusOr<LookupResult> result;
  if (absl::GetFlag(FLAGS_by_chunks)) {
    auto registration = client->GetModel(model);
    if (!registration.ok()) return ReportError(registration.status());
    result = client->LookupByChunks(model, *tokens, registration->chunk_tokens,
                                    absl::GetFlag(FLAGS_alignment),
                                    absl::GetFlag(FLAGS_namespace));
  } else {
    result = client->Lookup(model, *tokens, absl::GetFlag(FLAGS_alignment),
                            absl::GetFlag(FLAGS_namespace));
  }
  if (!result.ok()) return ReportError(result.status());
  nlohmann::json line = {{"tokens", tokens->size()},
                         {"matched_tokens", result->matched_tokens},
                         {"namespace", result->name_space}};
  std::cout << line.dump() << std::endl;
  return 0;
}

const CommandRegistrar registrar({"lookup", RunLookup});

}  // namespace
}  // namespace seqkv::cli
