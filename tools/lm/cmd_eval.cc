// `seqkv eval`: what a codec's reconstruction of a KV cache does to the
// model's next-token predictions, on real caches (see fidelity.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/cli/command.h"
#include "client/cli/common_flags.h"
#include "client/client.h"
#include "codec/codec.h"
#include "model/kv_cache.h"
#include "model/safetensors.h"
#include "nlohmann/json.hpp"
#include "tools/lm/fidelity.h"
#include "tools/lm/llama_model.h"
#include "tools/lm/lm_flags.h"
#include "tools/lm/model_context.h"

ABSL_FLAG(bool, via_server, false,
          "code the caches through the server at --server even when it is "
          "the default address");
ABSL_FLAG(std::string, documents, "",
          "safetensors token stream (`tokens` int32, `doc_offsets` int64, as "
          "shared/data/kv/dev_eval_tokens) to evaluate on instead of cache "
          "files: the model computes each context's exact cache");
ABSL_FLAG(int32_t, num_documents, 32,
          "with --documents: how many documents of at least --max_tokens "
          "(default 1024) tokens, first window of each");

namespace seqkv::lm {
namespace {

struct CodecRun {
  std::string spec;
  std::unique_ptr<Codec> codec;  // null in --server mode
  FidelityTotals totals;
  uint64_t encoded_bytes = 0;
  uint64_t elements = 0;
  ErrorEnergy k;
  ErrorEnergy v;
};

// Loads a dump and checks it against the model; keeps at most max_tokens.
absl::StatusOr<KvCache> LoadCache(const std::string& path,
                                  const LlamaModel& model, int32_t max_tokens) {
  auto cache = ReadKvCacheFile(path);
  if (!cache.ok()) return cache.status();
  const KvLayout layout = model.kv_layout();
  if (cache->layout.num_layers != layout.num_layers ||
      cache->layout.num_kv_heads != layout.num_kv_heads ||
      cache->layout.head_dim != layout.head_dim ||
      cache->layout.dtype != layout.dtype || cache->layout.latent)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cache layout ", cache->layout.DebugString(),
                     " is not the model's ", layout.DebugString()));
  cache->layout = layout;
  if (max_tokens > 0 && cache->num_tokens() > uint32_t(max_tokens))
    return PrefixCache(*cache, max_tokens);
  return cache;
}

// The dump's own log-probabilities, or an empty vector when it has none.
std::vector<float> FileLogprobs(const std::string& path) {
  const std::string name = "logprobs";
  auto file = ReadSafetensorsTensors(path, {&name, 1});
  if (!file.ok()) return {};
  const Tensor& tensor = file->tensors.at(name);
  if (tensor.dtype != "F32") return {};
  auto values = tensor.as<float>();
  return {values.begin(), values.end()};
}

absl::StatusOr<KvCache> ThroughServer(Client& client, const std::string& model,
                                      const std::string& spec,
                                      const KvCache& prefix,
                                      uint64_t* stored_bytes) {
  PutOptions put;
  put.model = model;
  put.codec = spec;
  put.name_space = absl::GetFlag(FLAGS_namespace);
  auto put_result = client.Put(put, prefix);
  if (!put_result.ok()) return put_result.status();
  *stored_bytes += put_result->bytes_stored;
  GetOptions get;
  get.model = model;
  get.name_space = put.name_space;
  auto back = client.Get(get, prefix.tokens);
  // Remove it again so that the next codec's Put is not deduplicated.
  auto deleted = client.Delete(model, prefix.tokens, put.name_space);
  if (!back.ok()) return back.status();
  if (!deleted.ok()) return deleted.status();
  if (back->num_tokens() != prefix.num_tokens())
    return absl::DataLossError(absl::StrCat("server returned ",
                                            back->num_tokens(), " tokens of ",
                                            prefix.num_tokens()));
  back->layout = prefix.layout;
  return back;
}

// The first `window` tokens of up to `count` documents of the stream at
// `path` that have that many.
absl::StatusOr<std::vector<std::vector<int32_t>>> DocumentWindows(
    const std::string& path, uint32_t window, uint32_t count) {
  const std::vector<std::string> names = {"tokens", "doc_offsets"};
  auto file = ReadSafetensorsTensors(path, names);
  if (!file.ok()) return file.status();
  absl::StatusOr<const Tensor*> tokens = file->Find("tokens");
  absl::StatusOr<const Tensor*> offsets = file->Find("doc_offsets");
  if (!tokens.ok() || !offsets.ok() || (*tokens)->dtype != "I32" ||
      (*offsets)->dtype != "I64")
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": a token stream needs tokens (I32) and doc_offsets (I64)"));
  const std::span<const int32_t> ids = (*tokens)->as<int32_t>();
  const std::span<const int64_t> starts = (*offsets)->as<int64_t>();
  std::vector<std::vector<int32_t>> windows;
  for (size_t i = 0; i + 1 < starts.size() && windows.size() < count; ++i) {
    // Each document is followed by one separator token.
    const int64_t begin = starts[i], end = starts[i + 1] - 1;
    if (begin < 0 || end > int64_t(ids.size()) || begin > end)
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": doc_offsets[", i, "] is out of range"));
    if (end - begin < int64_t{window}) continue;
    windows.emplace_back(ids.begin() + begin, ids.begin() + begin + window);
  }
  if (windows.empty())
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no document has ", window, " tokens"));
  return windows;
}

// The KL a spec asks for (`kl=B` of a predictive spec), or NaN.
double RequestedKl(const std::string& spec) {
  if (spec.rfind("predictive:", 0) != 0) return std::nan("");
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(spec).substr(11), ',')) {
    double value = 0;
    if (absl::ConsumePrefix(&part, "kl=") && absl::SimpleAtod(part, &value))
      return value;
  }
  return std::nan("");
}

void PrintResults(const std::vector<CodecRun>& runs) {
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::json out = nlohmann::json::array();
    for (const CodecRun& run : runs) {
      const FidelityTotals& t = run.totals;
      const double n = std::max<uint64_t>(t.tokens, 1);
      out.push_back({
          {"codec", run.spec},
          {"bits_per_element",
           run.elements ? 8.0 * run.encoded_bytes / run.elements : 0.0},
          {"delta_nll", (t.nll_approx - t.nll_exact) / n},
          {"kl", t.kl / n},
          {"kl_requested", std::isnan(RequestedKl(run.spec))
                               ? nlohmann::json(nullptr)
                               : nlohmann::json(RequestedKl(run.spec))},
          {"top1_agreement", t.top1_agree / n},
          {"rel_mse_k", run.k.relative()},
          {"rel_mse_v", run.v.relative()},
          {"nll_exact", t.nll_exact / n},
          {"nll_file",
           t.file_tokens ? t.nll_file / t.file_tokens : std::nan("")},
          {"tokens", t.tokens},
      });
    }
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::cout << absl::StrFormat(
      "%-28s %9s %10s %10s %7s %10s %10s %9s %9s %6s\n", "codec", "bits/elem",
      "dNLL", "KL", "top1", "relMSE K", "relMSE V", "NLL", "NLL file",
      "tokens");
  for (const CodecRun& run : runs) {
    const FidelityTotals& t = run.totals;
    const double n = std::max<uint64_t>(t.tokens, 1);
    std::cout << absl::StrFormat(
        "%-28s %9.4f %10.6f %10.6f %7.4f %10.3g %10.3g %9.4f %9.4f %6d\n",
        run.spec, run.elements ? 8.0 * run.encoded_bytes / run.elements : 0.0,
        (t.nll_approx - t.nll_exact) / n, t.kl / n, t.top1_agree / n,
        run.k.relative(), run.v.relative(), t.nll_exact / n,
        t.file_tokens ? t.nll_file / t.file_tokens : std::nan(""), t.tokens);
  }
  // A KL budget against what it measured here.
  for (const CodecRun& run : runs) {
    const double requested = RequestedKl(run.spec);
    if (std::isnan(requested)) continue;
    const double measured =
        run.totals.kl / std::max<uint64_t>(run.totals.tokens, 1);
    std::cout << absl::StrFormat(
        "%s: requested KL %.6g, measured %.6g (%+.1f%%)\n", run.spec, requested,
        measured, 100 * (measured / requested - 1));
  }
}

int RunEval(std::span<char* const> args) {
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  if (model_dir.empty() ||
      (args.empty() && absl::GetFlag(FLAGS_documents).empty()) ||
      absl::GetFlag(FLAGS_codec).empty()) {
    return cli::kShowUsage;
  }
  auto model = LlamaModel::Load(model_dir);
  if (!model.ok()) return cli::ReportError(model.status());
  const std::string name = ModelName(absl::GetFlag(FLAGS_model), model_dir);
  auto context = BuildModelContext(name, model_dir, (*model)->config(),
                                   absl::GetFlag(FLAGS_profile));
  if (!context.ok()) return cli::ReportError(context.status());

  // A --server address other than the default (or --via_server): the
  // caches go through a live server instead of a local codec.
  const bool via_server =
      absl::GetFlag(FLAGS_via_server) ||
      absl::GetFlag(FLAGS_server) !=
          absl::GetFlagReflectionHandle(FLAGS_server).DefaultValue();
  std::unique_ptr<Client> client;
  if (via_server) {
    client = cli::ConnectOrDie();
    if (client == nullptr) return 1;
    ModelRegistration registration;
    registration.model = name;
    registration.layout = context->layout;
    // The profile travels with the registration; the layer-0 table is
    // larger than one gRPC message and is `seqkv model register`'s job.
    if (const std::string* profile = context->FindState("profile"))
      registration.codec_state["profile"] = *profile;
    auto registered = client->RegisterModel(registration);
    if (!registered.ok()) return cli::ReportError(registered.status());
  }

  std::vector<CodecRun> runs;
  for (const std::string& spec : SplitCodecSpecs(absl::GetFlag(FLAGS_codec))) {
    CodecRun run;
    run.spec = spec;
    if (!via_server) {
      auto codec = CreateCodec(run.spec, *context);
      if (!codec.ok()) return cli::ReportError(codec.status());
      run.codec = std::move(*codec);
    }
    runs.push_back(std::move(run));
  }

  // Codes the first 3/4 of `cache` (or --prefix_tokens) with every codec
  // and runs the rest on the exact and on each coded prefix.
  auto evaluate = [&](const std::string& label, const KvCache& cache,
                      std::span<const float> logprobs) -> absl::Status {
    const uint32_t total = cache.num_tokens();
    uint32_t prefix_tokens = absl::GetFlag(FLAGS_prefix_tokens) > 0
                                 ? uint32_t(absl::GetFlag(FLAGS_prefix_tokens))
                                 : total * 3 / 4;
    if (prefix_tokens < 1 || prefix_tokens + 2 > total)
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": --prefix_tokens ", prefix_tokens,
                       " must leave at least 2 of ", total, " tokens to run"));
    const KvCache prefix = PrefixCache(cache, prefix_tokens);
    const std::span<const int32_t> rest =
        std::span<const int32_t>(cache.tokens).subspan(prefix_tokens);
    const std::span<const int32_t> targets = rest.subspan(1);
    std::span<const float> file_logprobs;
    if (logprobs.size() + 1 >= total)
      file_logprobs = logprobs.subspan(prefix_tokens, targets.size());

    KvCache exact_cache = prefix;
    auto exact = (*model)->Forward(rest, exact_cache);
    if (!exact.ok()) return exact.status();
    for (CodecRun& run : runs) {
      std::cerr << "eval: " << label << " " << run.spec << "\n";
      absl::StatusOr<KvCache> approx_cache =
          via_server ? ThroughServer(*client, name, run.spec, prefix,
                                     &run.encoded_bytes)
                     : RoundTripCache(*run.codec, prefix, ChunkTokensFlag(),
                                      &run.encoded_bytes);
      if (!approx_cache.ok()) return approx_cache.status();
      run.elements +=
          size_t{prefix_tokens} * prefix.layout.elements_per_token();
      const ErrorEnergy k = CompareTensor(prefix, *approx_cache, false);
      const ErrorEnergy v = CompareTensor(prefix, *approx_cache, true);
      run.k.error += k.error;
      run.k.energy += k.energy;
      run.v.error += v.error;
      run.v.energy += v.energy;
      auto approx = (*model)->Forward(rest, *approx_cache);
      if (!approx.ok()) return approx.status();
      run.totals.Add(*exact, *approx, targets, file_logprobs);
    }
    return absl::OkStatus();
  };

  if (const std::string documents = absl::GetFlag(FLAGS_documents);
      !documents.empty()) {
    const int32_t max_tokens = absl::GetFlag(FLAGS_max_tokens);
    auto windows = DocumentWindows(
        documents, max_tokens > 0 ? uint32_t(max_tokens) : 1024,
        uint32_t(std::max(1, absl::GetFlag(FLAGS_num_documents))));
    if (!windows.ok()) return cli::ReportError(windows.status());
    for (size_t i = 0; i < windows->size(); ++i) {
      const std::vector<int32_t>& tokens = (*windows)[i];
      KvCache cache = (*model)->EmptyCache();
      // The exact cache of the window's first 3/4 comes from the model;
      // evaluate() then runs the rest as it does for dumps.
      auto prefill = (*model)->Forward(tokens, cache, /*last_only=*/true);
      if (!prefill.ok()) return cli::ReportError(prefill.status());
      const std::string label = absl::StrCat(documents, " #", i);
      if (auto s = evaluate(label, cache, {}); !s.ok())
        return cli::ReportError(s);
    }
  }
  for (char* const arg : args) {
    const std::string path = arg;
    auto cache = LoadCache(path, **model, absl::GetFlag(FLAGS_max_tokens));
    if (!cache.ok()) return cli::ReportError(cache.status());
    const std::vector<float> logprobs = FileLogprobs(path);
    if (auto s = evaluate(path, *cache, logprobs); !s.ok())
      return cli::ReportError(s);
  }
  PrintResults(runs);
  return 0;
}

const cli::CommandRegistrar kRegistrar({"eval", RunEval});

}  // namespace
}  // namespace seqkv::lm
