// `seqkv calibrate`: measures each (layer, K/V) group's sensitivity on the
// real model and writes the profile that fidelity-targeting codecs read.
#include <fstream>
#include <iostream>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "client/cli/command.h"
#include "client/cli/common_flags.h"
#include "model/kv_cache.h"
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

namespace seqkv::lm {
namespace {

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
  std::ofstream out(out_path);
  out << ProfileJson(ModelName(absl::GetFlag(FLAGS_model), model_dir),
                     calibrator.groups());
  if (!out)
    return cli::ReportError(
        absl::UnavailableError(absl::StrCat("cannot write ", out_path)));
  std::cerr << "calibrate: wrote " << out_path << "\n";
  return 0;
}

const cli::CommandRegistrar kRegistrar({"calibrate", RunCalibrate});

}  // namespace
}  // namespace seqkv::lm
