// `seqkv calibrate`: measures each (layer, K/V) group's sensitivity on the
// real model and writes the profile that fidelity-targeting codecs read.
#include <fstream>
#include <iostream>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/cli/command.h"
#include "client/cli/common_flags.h"
#include "codec/codec.h"
#include "model/kv_cache.h"
#include "nlohmann/json.hpp"
#include "tools/lm/calibration.h"
#include "tools/lm/fidelity.h"
#include "tools/lm/llama_model.h"
#include "tools/lm/lm_flags.h"
#include "tools/lm/model_context.h"

ABSL_FLAG(double, noise_rel_mse, 0.01,
          "relative MSE of the noise put on one group at a time");
ABSL_FLAG(double, floor_rel_mse, 1e-4,
          "tiny noise level whose KL is the floor every perturbation costs; "
          "sensitivities are slopes above it (0: KL / noise, floor included)");
ABSL_FLAG(uint64_t, calibrate_seed, 1, "seed of the calibration noise");
ABSL_FLAG(std::string, kl_budgets, "",
          "comma-separated per-chunk KL budgets (e.g. "
          "0.0005,0.001,0.002,0.004,0.008) to code the calibration caches "
          "with, as predictive:kl=B does, and to measure end to end; the "
          "profile keeps budget -> measured KL as kl_map, and kl=B then spends "
          "the budget that measured B");

namespace seqkv::lm {
namespace {

// Mean KL per predicted token of `model` attending to each cache's first
// 3/4 (or --prefix_tokens) coded with `codec`, against the exact prefix.
absl::StatusOr<double> MeasureKl(const LlamaModel& model, const Codec& codec,
                                 std::span<const KvCache> caches) {
  FidelityTotals totals;
  for (const KvCache& cache : caches) {
    const uint32_t total = cache.num_tokens();
    const uint32_t prefix_tokens =
        absl::GetFlag(FLAGS_prefix_tokens) > 0
            ? uint32_t(absl::GetFlag(FLAGS_prefix_tokens))
            : total * 3 / 4;
    if (prefix_tokens < 1 || prefix_tokens + 2 > total) continue;
    const KvCache prefix = PrefixCache(cache, prefix_tokens);
    const std::span<const int32_t> rest =
        std::span<const int32_t>(cache.tokens).subspan(prefix_tokens);
    KvCache exact_cache = prefix;
    auto exact = model.Forward(rest, exact_cache);
    if (!exact.ok()) return exact.status();
    uint64_t bytes = 0;
    absl::StatusOr<KvCache> approx_cache =
        RoundTripCache(codec, prefix, ChunkTokensFlag(), &bytes);
    if (!approx_cache.ok()) return approx_cache.status();
    auto approx = model.Forward(rest, *approx_cache);
    if (!approx.ok()) return approx.status();
    totals.Add(*exact, *approx, rest.subspan(1), {});
  }
  if (totals.tokens == 0)
    return absl::InvalidArgumentError("no calibration cache is long enough");
  return totals.kl / totals.tokens;
}

int RunCalibrate(std::span<char* const> args) {
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  const std::string out_path = absl::GetFlag(FLAGS_out);
  if (model_dir.empty() || out_path.empty() || args.empty()) {
    return cli::kShowUsage;
  }
  if (!(absl::GetFlag(FLAGS_noise_rel_mse) > 0))
    return cli::ReportError(
        absl::InvalidArgumentError("--noise_rel_mse must be positive"));
  const double floor_rel_mse = absl::GetFlag(FLAGS_floor_rel_mse);
  if (!(floor_rel_mse >= 0 &&
        floor_rel_mse < absl::GetFlag(FLAGS_noise_rel_mse)))
    return cli::ReportError(absl::InvalidArgumentError(
        "--floor_rel_mse must be in [0, --noise_rel_mse)"));
  std::vector<double> budgets;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_kl_budgets),
                                               ',', absl::SkipEmpty())) {
    double budget = 0;
    if (!absl::SimpleAtod(part, &budget) || !(budget > 0) ||
        (!budgets.empty() && !(budget > budgets.back())))
      return cli::ReportError(absl::InvalidArgumentError(
          "--kl_budgets must be increasing positive numbers"));
    budgets.push_back(budget);
  }
  auto model = LlamaModel::Load(model_dir);
  if (!model.ok()) return cli::ReportError(model.status());
  CalibrationOptions options;
  options.noise_rel_mse = absl::GetFlag(FLAGS_noise_rel_mse);
  options.floor_rel_mse = floor_rel_mse;
  options.prefix_tokens =
      uint32_t(std::max(0, absl::GetFlag(FLAGS_prefix_tokens)));
  options.seed = absl::GetFlag(FLAGS_calibrate_seed);
  Calibrator calibrator(**model, options);
  const KvLayout layout = (*model)->kv_layout();
  std::vector<KvCache> caches;
  for (char* const arg : args) {
    const std::string path = arg;
    auto cache = ReadKvCacheFile(path);
    if (!cache.ok()) return cli::ReportError(cache.status());
    if (cache->layout.num_layers != layout.num_layers ||
        cache->layout.num_kv_heads != layout.num_kv_heads ||
        cache->layout.head_dim != layout.head_dim ||
        cache->layout.dtype != layout.dtype || cache->layout.latent)
      return cli::ReportError(absl::InvalidArgumentError(
          absl::StrCat(path, ": cache layout ", cache->layout.DebugString(),
                       " is not the model's ", layout.DebugString())));
    cache->layout = layout;
    const int32_t max_tokens = absl::GetFlag(FLAGS_max_tokens);
    if (max_tokens > 0 && cache->num_tokens() > uint32_t(max_tokens))
      *cache = PrefixCache(*cache, max_tokens);
    // First pass: channel weights from every cache, so that the noise of
    // the second pass is shaped by all of them.
    std::cerr << "calibrate: attention of " << path << "\n";
    if (auto status = calibrator.AddAttention(*cache); !status.ok())
      return cli::ReportError(absl::Status(
          status.code(), absl::StrCat(path, ": ", status.message())));
    caches.push_back(*std::move(cache));
  }
  for (size_t i = 0; i < caches.size(); ++i) {
    std::cerr << "calibrate: sensitivities on " << args[i] << "\n";
    auto status = calibrator.AddCache(caches[i], [](const std::string& line) {
      std::cerr << "  " << line << "\n";
    });
    if (!status.ok()) return cli::ReportError(status);
  }
  const std::string name = ModelName(absl::GetFlag(FLAGS_model), model_dir);
  std::string json = ProfileJson(name, calibrator.groups());
  auto write = [&out_path](const std::string& text) -> absl::Status {
    std::ofstream out(out_path);
    out << text;
    if (!out)
      return absl::UnavailableError(absl::StrCat("cannot write ", out_path));
    return absl::OkStatus();
  };
  if (auto status = write(json); !status.ok()) return cli::ReportError(status);
  if (!budgets.empty()) {
    // End to end: the profile just written (no map yet, so kl=B spends B)
    // codes the calibration caches at each budget.
    auto context =
        BuildModelContext(name, model_dir, (*model)->config(), out_path);
    if (!context.ok()) return cli::ReportError(context.status());
    nlohmann::json doc = nlohmann::json::parse(json);
    nlohmann::json map = nlohmann::json::array();
    for (double budget : budgets) {
      auto codec =
          CreateCodec(absl::StrCat("predictive:kl=", budget), *context);
      if (!codec.ok()) return cli::ReportError(codec.status());
      auto kl = MeasureKl(**model, **codec, caches);
      if (!kl.ok()) return cli::ReportError(kl.status());
      std::cerr << "calibrate: budget " << budget << " measures KL " << *kl
                << "\n";
      if (!map.empty() && !(*kl > map.back()["kl"].get<double>()))
        std::cerr << "calibrate: (not above the smaller budget's; noise)\n";
      map.push_back({{"budget", budget}, {"kl", *kl}});
    }
    doc["kl_map"] = map;
    json = doc.dump(2) + "\n";
    if (auto status = write(json); !status.ok())
      return cli::ReportError(status);
  }
  std::cerr << "calibrate: wrote " << out_path << "\n";
  return 0;
}

const cli::CommandRegistrar kRegistrar({"calibrate", RunCalibrate});

}  // namespace
}  // namespace seqkv::lm
