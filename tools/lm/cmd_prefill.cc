// `seqkv prefill`: runs a model over a prompt and writes its KV cache in the
// format of shared/data/kv (`tokens` int32 [T]; `k`, `v` [layers, kv_heads,
// T, head_dim], post-RoPE), so that a clone of the repository without the
// shared data can make the files `seqkv put` stores from its own model.
#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "client/cli/command.h"
#include "client/cli/common_flags.h"
#include "codec/kv_layout.h"
#include "model/kv_cache.h"
#include "nlohmann/json.hpp"
#include "tools/lm/bpe_tokenizer.h"
#include "tools/lm/llama_model.h"
#include "tools/lm/lm_flags.h"

ABSL_FLAG(std::string, text, "",
          "text to prefill (tokenized with the model's tokenizer.json; see "
          "--add_bos)");

namespace seqkv::lm {
namespace {

// --tokens as given, or --text encoded (after the BOS, unless --add_bos is
// false).
absl::StatusOr<std::vector<int32_t>> InputTokens(const std::string& model_dir,
                                                 const LlamaModel& model) {
  const std::string token_flag = absl::GetFlag(FLAGS_tokens);
  if (!token_flag.empty()) {
    auto tokens = ParseTokensFlag(token_flag);
    if (tokens.ok() && tokens->empty())
      return absl::InvalidArgumentError(
          absl::StrCat("--tokens ", token_flag, " holds no token ids"));
    return tokens;
  }
  const std::string text = absl::GetFlag(FLAGS_text);
  if (text.find_first_not_of(" \t\r\n") == std::string::npos)
    return absl::InvalidArgumentError(
        "--text is empty (only whitespace): nothing to prefill");
  const std::string tokenizer_path = model_dir + "/tokenizer.json";
  std::error_code error;
  if (!std::filesystem::exists(tokenizer_path, error))
    return absl::FailedPreconditionError(absl::StrCat(
        "--text needs ", tokenizer_path, "; give --tokens ids instead"));
  auto tokenizer = BpeTokenizer::Load(tokenizer_path);
  if (!tokenizer.ok()) return tokenizer.status();
  auto encoded = tokenizer->Encode(text);
  if (!encoded.ok()) return encoded.status();
  if (encoded->empty())
    return absl::InvalidArgumentError("--text encodes to no tokens");
  std::vector<int32_t> tokens;
  if (absl::GetFlag(FLAGS_add_bos) && model.config().bos_token_id >= 0)
    tokens.push_back(model.config().bos_token_id);
  tokens.insert(tokens.end(), encoded->begin(), encoded->end());
  return tokens;
}

// "6x2x128:bf16", as --layout takes it.
std::string LayoutFlagForm(const KvLayout& layout) {
  return absl::StrCat(layout.num_layers, "x", layout.num_kv_heads, "x",
                      layout.head_dim, ":", DTypeName(layout.dtype));
}

int RunPrefill(std::span<char* const> args) {
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  const std::string out_path = absl::GetFlag(FLAGS_out);
  if (!args.empty() || model_dir.empty() || out_path.empty() ||
      (absl::GetFlag(FLAGS_text).empty() ==
       absl::GetFlag(FLAGS_tokens).empty()))
    return cli::kShowUsage;
  std::error_code error;
  if (!std::filesystem::is_directory(model_dir, error))
    return cli::ReportError(absl::NotFoundError(absl::StrCat(
        "--model_dir ", model_dir, " is not a readable directory")));

  const auto start = std::chrono::steady_clock::now();
  auto model = LlamaModel::Load(model_dir);
  if (!model.ok()) return cli::ReportError(model.status());
  auto tokens = InputTokens(model_dir, **model);
  if (!tokens.ok()) return cli::ReportError(tokens.status());
  const auto loaded = std::chrono::steady_clock::now();

  KvCache cache = (*model)->EmptyCache();
  // Only the cache is wanted: logits of the last token alone.
  auto result = (*model)->Forward(*tokens, cache, /*last_only=*/true);
  if (!result.ok()) return cli::ReportError(result.status());
  const auto done = std::chrono::steady_clock::now();
  if (absl::Status written = WriteKvCacheFile(out_path, cache); !written.ok())
    return cli::ReportError(written);

  using Millis = std::chrono::duration<double, std::milli>;
  const nlohmann::json out = {
      {"file", out_path},
      {"tokens", cache.num_tokens()},
      {"layout", LayoutFlagForm(cache.layout)},
      {"bytes", cache.k.size() + cache.v.size()},
      {"load_ms", Millis(loaded - start).count()},
      {"prefill_ms", Millis(done - loaded).count()},
  };
  std::cout << out.dump() << "\n";
  return 0;
}

const cli::CommandRegistrar kRegistrar({"prefill", RunPrefill});

}  // namespace
}  // namespace seqkv::lm
