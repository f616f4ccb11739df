// `seqkv generate`: an inference worker in miniature. It asks seqkv for the
// longest cached prefix of the prompt, prefills only the rest, decodes
// greedily, and stores the grown cache back, reporting how much prefill the
// stored cache saved.
#include <chrono>
#include <filesystem>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/cli/command.h"
#include "client/cli/common_flags.h"
#include "client/client.h"
#include "nlohmann/json.hpp"
#include "tools/lm/bpe_tokenizer.h"
#include "tools/lm/llama_model.h"
#include "tools/lm/lm_flags.h"
#include "tools/lm/model_context.h"

ABSL_FLAG(std::string, prompt, "",
          "prompt text (tokenized with tokenizer.json)");
ABSL_FLAG(int32_t, max_new_tokens, 16, "tokens to generate greedily");
ABSL_FLAG(bool, compare, false,
          "also generate without seqkv and report whether the tokens match");

namespace seqkv::lm {
namespace {

using Clock = std::chrono::steady_clock;

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

absl::StatusOr<std::vector<int32_t>> PromptTokens(
    const LlamaModel& model, const BpeTokenizer* tokenizer) {
  const std::string token_flag = absl::GetFlag(FLAGS_tokens);
  if (!token_flag.empty()) return ParseTokensFlag(token_flag);
  if (tokenizer == nullptr)
    return absl::FailedPreconditionError(
        "--prompt needs tokenizer.json in --model_dir");
  std::vector<int32_t> tokens;
  if (absl::GetFlag(FLAGS_add_bos) && model.config().bos_token_id >= 0)
    tokens.push_back(model.config().bos_token_id);
  auto encoded = tokenizer->Encode(absl::GetFlag(FLAGS_prompt));
  if (!encoded.ok()) return encoded.status();
  tokens.insert(tokens.end(), encoded->begin(), encoded->end());
  return tokens;
}

int RunGenerate(std::span<char* const> args) {
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  if (model_dir.empty() || (absl::GetFlag(FLAGS_prompt).empty() ==
                            absl::GetFlag(FLAGS_tokens).empty())) {
    return cli::kShowUsage;
  }
  auto model = LlamaModel::Load(model_dir);
  if (!model.ok()) return cli::ReportError(model.status());
  std::unique_ptr<BpeTokenizer> tokenizer;
  if (std::filesystem::exists(model_dir + "/tokenizer.json")) {
    auto loaded = BpeTokenizer::Load(model_dir + "/tokenizer.json");
    if (!loaded.ok()) return cli::ReportError(loaded.status());
    tokenizer = std::make_unique<BpeTokenizer>(*std::move(loaded));
  }
  auto prompt = PromptTokens(**model, tokenizer.get());
  if (!prompt.ok()) return cli::ReportError(prompt.status());
  if (prompt->empty())
    return cli::ReportError(absl::InvalidArgumentError("the prompt is empty"));
  const int32_t max_new = absl::GetFlag(FLAGS_max_new_tokens);
  if (max_new < 1)
    return cli::ReportError(
        absl::InvalidArgumentError("--max_new_tokens must be at least 1"));

  auto client = cli::ConnectOrDie();
  if (client == nullptr) return 1;
  const std::string name = ModelName(absl::GetFlag(FLAGS_model), model_dir);
  const std::string name_space = absl::GetFlag(FLAGS_namespace);
  ModelRegistration registration;
  registration.model = name;
  registration.layout = (*model)->kv_layout();
  registration.chunk_tokens = absl::GetFlag(FLAGS_chunk_tokens);
  if (auto registered = client->RegisterModel(registration); !registered.ok())
    return cli::ReportError(registered.status());

  // The longest stored prefix; at least one prompt token is always run so
  // that there are logits to pick the first new token from.
  auto lookup = client->Lookup(name, *prompt, 0, name_space);
  if (!lookup.ok()) return cli::ReportError(lookup.status());
  const uint32_t usable =
      std::min<uint32_t>(lookup->matched_tokens, prompt->size() - 1);
  KvCache cache = (*model)->EmptyCache();
  double fetch_ms = 0;
  if (usable > 0) {
    const auto start = Clock::now();
    GetOptions get;
    get.model = name;
    get.name_space = name_space;
    get.end_token = usable;
    auto fetched = client->Get(get, *prompt);
    if (!fetched.ok()) return cli::ReportError(fetched.status());
    fetch_ms = MillisSince(start);
    if (fetched->num_tokens() > usable)
      return cli::ReportError(absl::DataLossError(
          absl::StrCat("server returned ", fetched->num_tokens(),
                       " tokens, asked for ", usable)));
    cache = *std::move(fetched);
  }
  const uint32_t served = cache.num_tokens();

  auto start = Clock::now();
  auto first = (*model)->Prefill(std::span(*prompt).subspan(served), cache);
  if (!first.ok()) return cli::ReportError(first.status());
  const double prefill_with_ms = MillisSince(start);
  auto generated = (*model)->DecodeGreedy(first->row(0), cache, max_new);
  if (!generated.ok()) return cli::ReportError(generated.status());

  // The same prefill without seqkv, for the time saved (and, on request, the
  // whole generation, to check that the stored cache changes nothing).
  KvCache baseline_cache = (*model)->EmptyCache();
  start = Clock::now();
  auto baseline_first = (*model)->Prefill(*prompt, baseline_cache);
  if (!baseline_first.ok()) return cli::ReportError(baseline_first.status());
  const double prefill_without_ms = MillisSince(start);
  std::vector<int32_t> baseline;
  if (absl::GetFlag(FLAGS_compare)) {
    auto again =
        (*model)->DecodeGreedy(baseline_first->row(0), baseline_cache, max_new);
    if (!again.ok()) return cli::ReportError(again.status());
    baseline = *std::move(again);
  }

  PutOptions put;
  put.model = name;
  put.codec = absl::GetFlag(FLAGS_codec);
  put.name_space = name_space;
  auto stored = client->Put(put, cache);
  if (!stored.ok()) return cli::ReportError(stored.status());

  std::string text;
  if (tokenizer != nullptr) {
    auto decoded = tokenizer->Decode(*generated);
    if (decoded.ok()) text = *std::move(decoded);
  }
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::json out = {
        {"prompt_tokens", prompt->size()},
        {"served_tokens", served},
        {"fetch_ms", fetch_ms},
        {"prefill_ms_with_seqkv", prefill_with_ms},
        {"prefill_ms_without_seqkv", prefill_without_ms},
        {"generated", *generated},
        {"text", text},
        {"stored_tokens", cache.num_tokens()},
        {"stored_bytes", stored->bytes_stored},
    };
    if (absl::GetFlag(FLAGS_compare)) {
      out["generated_without_seqkv"] = baseline;
      out["identical"] = baseline == *generated;
    }
    // Generated bytes need not be valid UTF-8; replace what is not.
    std::cout << out.dump(2, ' ', false,
                          nlohmann::json::error_handler_t::replace)
              << "\n";
    return 0;
  }
  std::cout << absl::StrFormat(
      "prompt: %d tokens, %d served from seqkv (%.1f%%)\n"
      "prefill: %.1f ms with seqkv (+%.1f ms fetch), %.1f ms without: "
      "%.1f ms saved\n",
      prompt->size(), served, 100.0 * served / prompt->size(), prefill_with_ms,
      fetch_ms, prefill_without_ms,
      prefill_without_ms - prefill_with_ms - fetch_ms);
  std::cout << "generated: " << absl::StrJoin(*generated, ",") << "\n";
  if (!text.empty()) std::cout << "text: " << text << "\n";
  if (absl::GetFlag(FLAGS_compare))
    std::cout << "without seqkv: "
              << (baseline == *generated ? "identical tokens" : "DIFFERENT: ")
              << (baseline == *generated ? "" : absl::StrJoin(baseline, ","))
              << "\n";
  std::cout << absl::StrFormat("stored: %d tokens, %d bytes\n",
                               cache.num_tokens(), stored->bytes_stored);
  return 0;
}

const cli::CommandRegistrar kRegistrar({"generate", RunGenerate});

}  // namespace
}  // namespace seqkv::lm
