// `seqkv codec-bench`: size, fidelity and speed of seqkv's codecs and of
// general-purpose peers on KV cache dumps, offline (no server).
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "bench/codec_bench/bench_runner.h"
#include "client/cli/command.h"
#include "client/cli/common_flags.h"
#include "client/cli/shared_flags.h"
#include "codec/codec.h"
#include "codec/model_state.h"
#include "model/model_state_builder.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, codecs,
          "raw,lossless,zstd:3,zstd:19,lz4,blosc,fpzip,zfp:2,zfp:3,zfp:4,"
          "kivi:2,kivi:3,kivi:4,turbo:2,turbo:2.5,turbo:3,turbo:3.5,turbo:4",
          "comma-separated codec specs: seqkv codecs (see `seqkv help`) and "
          "peers zstd:LEVEL, lz4, blosc[:LEVEL], planes[:LEVEL] (byte planes + "
          "zstd), fpzip, zfp:RATE");
ABSL_FLAG(int, threads, 1, "files coded at once; speeds are always per thread");
ABSL_FLAG(std::string, clock, "wall",
          "what speeds are per: wall (elapsed time) or cpu (each thread's CPU "
          "time, steadier on a loaded machine)");
// --progress (bench/load/cmd_bench.cc): codec-bench prints a line to stderr
// as each codec finishes each file.
ABSL_DECLARE_FLAG(bool, progress);
// --chunk_tokens (0: 256), and --model_dir and --profile: where codecs that
// need model state (the predictive codec) get it from, as for `seqkv model
// register` and `seqkv eval`.

namespace seqkv::cli {
namespace {

nlohmann::json ToJson(const bench::CodecReport& r) {
  auto number = [](double v) {
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
  };
  return {{"codec", r.codec},
          {"peer", r.peer},
          {"bits_per_element", number(r.bits_per_element)},
          {"bits_per_element_k", number(r.bits_per_element_k)},
          {"bits_per_element_v", number(r.bits_per_element_v)},
          {"rel_mse_k", number(r.rel_mse_k)},
          {"rel_mse_v", number(r.rel_mse_v)},
          {"cosine", number(r.cosine)},
          {"encode_mbps", number(r.encode_mbps)},
          {"decode_mbps", number(r.decode_mbps)},
          {"bit_exact", r.bit_exact},
          {"clock", absl::GetFlag(FLAGS_clock)},
          {"files", r.files},
          {"chunks", r.chunks},
          {"state_bytes", r.state_bytes}};
}

int RunCodecBench(std::span<char* const> args) {
  bench::BenchOptions options;
  options.codecs = SplitCodecSpecs(absl::GetFlag(FLAGS_codecs));
  options.threads = absl::GetFlag(FLAGS_threads);
  const std::string clock = absl::GetFlag(FLAGS_clock);
  if (clock != "wall" && clock != "cpu")
    return ReportError(absl::InvalidArgumentError(
        "--clock must be wall or cpu, got '" + clock + "'"));
  options.cpu_clock = clock == "cpu";
  if (absl::GetFlag(FLAGS_progress))
    options.progress = [](const std::string& line) {
      std::cerr << "codec-bench: " << line << std::endl;
    };
  const uint32_t chunk_tokens = absl::GetFlag(FLAGS_chunk_tokens);
  options.chunk_tokens = chunk_tokens == 0 ? 256 : chunk_tokens;
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  // The dumps do not say how their keys are rotated: config.json does, or
  // --rope.
  absl::StatusOr<RopeConfig> rope = RopeFromFlags(model_dir);
  if (!rope.ok()) return ReportError(rope.status());
  options.rope = *rope;
  const std::string profile = absl::GetFlag(FLAGS_profile);
  if (!model_dir.empty() || !profile.empty()) {
    // Built from the model's weights and a calibration profile, never from
    // the dumps under test; its size is reported apart as state_bytes.
    options.build_state = [model_dir, profile](const KvLayout& layout)
        -> absl::StatusOr<bench::BenchOptions::CodecState> {
      bench::BenchOptions::CodecState state;
      if (!model_dir.empty()) {
        auto blobs = BuildCodecStateFromModelDir(model_dir, layout);
        if (!blobs.ok()) return blobs.status();
        for (auto& [key, blob] : *blobs) state[key] = std::move(blob);
      }
      if (!profile.empty()) {
        auto blob = LoadProfile(profile, layout);
        if (!blob.ok()) return blob.status();
        state[std::string(kProfileKey)] = *std::move(blob);
      }
      return state;
    };
  }
  std::vector<std::string> files(args.begin(), args.end());
  if (files.empty()) {
    return kShowUsage;
  }
  auto reports = bench::RunCodecBench(options, files);
  if (!reports.ok()) return ReportError(reports.status());
  if (absl::GetFlag(FLAGS_json)) {
    for (const bench::CodecReport& r : *reports)
      std::cout << ToJson(r).dump() << "\n";
  } else {
    std::cout << files.size() << " file(s), chunks of " << options.chunk_tokens
              << " tokens\n"
              << bench::FormatReportTable(*reports);
  }
  return 0;
}

const CommandRegistrar registrar({"codec-bench", RunCodecBench});

}  // namespace
}  // namespace seqkv::cli
