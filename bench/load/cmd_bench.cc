// seqkv bench: load generator over the real client. See
// docs/benchmarks/bench.md.
#include <unistd.h>

#include <chrono>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "bench/load/layout_presets.h"
#include "bench/load/load_runner.h"
#include "client/cli/command.h"
#include "client/cli/common_flags.h"
#include "client/cli/shared_flags.h"

ABSL_FLAG(int, clients, 4, "bench: concurrent clients, one connection each");
ABSL_FLAG(std::string, op, "put", "bench: put, get, lookup or mix (see --mix)");
ABSL_FLAG(std::string, mix, "put:1,get:1,lookup:1",
          "bench: relative weights of the operations for --op mix");
// A run writes into the server, so it starts only when told how long.
ABSL_FLAG(double, duration_s, 0,
          "bench: seconds to run (this or --ops is required)");
ABSL_FLAG(uint64_t, ops, 0,
          "bench: stop after this many operations (this or --duration_s is "
          "required)");
ABSL_FLAG(uint32_t, tokens_per_request, 0,
          "bench: tokens per Put/Get/Lookup (default: --chunk_tokens)");
ABSL_FLAG(uint64_t, data_seed, 1,
          "bench: seed of the synthetic KV values and the shared prefix");
ABSL_FLAG(double, shared_prefix_ratio, 0,
          "bench: fraction of each sequence that is one prefix common to all "
          "(deduplicated by the server); 0 makes every Put distinct");
ABSL_FLAG(std::string, source, "synthetic",
          "bench: 'synthetic' or a directory of KV caches (e.g. "
          "../shared/data/kv) whose values are tiled into the layout");
ABSL_FLAG(uint32_t, prefill, 0,
          "bench: sequences stored before timing (default: 2 per client when "
          "the mix reads)");
ABSL_FLAG(uint32_t, warmup_ops, 1,
          "bench: how often each client runs every operation of the mix "
          "before timing starts, untimed (the first calls fault in fresh "
          "buffers on both ends)");
ABSL_FLAG(bool, verify, false,
          "bench: compare every Get's bytes with what was put (lossless "
          "codecs only)");
ABSL_FLAG(bool, lookup_by_chunks, false,
          "bench: Lookups send each whole chunk as an 8-byte digest rather "
          "than its token ids (LookupRequest.chunk_digests)");
ABSL_FLAG(bool, progress, true, "bench: print a progress line on stderr");

namespace seqkv::cli {
namespace {

int RunBench(std::span<char* const> args) {
  if (!args.empty()) return kShowUsage;
  bench::LoadOptions options;
  options.client = ClientOptionsFromFlags();
  options.clients = absl::GetFlag(FLAGS_clients);
  auto weights =
      bench::ParseOpWeights(absl::GetFlag(FLAGS_op), absl::GetFlag(FLAGS_mix));
  if (!weights.ok()) return ReportError(weights.status());
  options.weights = *weights;
  options.layout_name = absl::GetFlag(FLAGS_layout);
  if (options.layout_name.empty()) options.layout_name = "llama3-8b";
  auto layout = bench::ResolveLayout(options.layout_name);
  if (!layout.ok()) return ReportError(layout.status());
  options.chunk_tokens = absl::GetFlag(FLAGS_chunk_tokens);
  if (options.chunk_tokens == 0) options.chunk_tokens = 256;
  options.codec = absl::GetFlag(FLAGS_codec);
  options.model = absl::GetFlag(FLAGS_model);
  if (options.model.empty())
    options.model =
        absl::StrCat("bench-", bench::LayoutSlug(options.layout_name), "-c",
                     options.chunk_tokens);
  options.ops = absl::GetFlag(FLAGS_ops);
  options.duration_s = absl::GetFlag(FLAGS_duration_s);
  if (options.duration_s == 0 && options.ops == 0) {
    std::cerr << "seqkv bench: say how long to run: --duration_s S or "
                 "--ops N\n\n";
    return kShowUsage;
  }
  options.prefill = absl::GetFlag(FLAGS_prefill);
  options.warmup_ops = absl::GetFlag(FLAGS_warmup_ops);
  options.verify = absl::GetFlag(FLAGS_verify);
  options.lookup_by_chunks = absl::GetFlag(FLAGS_lookup_by_chunks);

  bench::WorkloadOptions& workload = options.workload;
  workload.layout = *layout;
  workload.tokens_per_request = absl::GetFlag(FLAGS_tokens_per_request);
  if (workload.tokens_per_request == 0)
    workload.tokens_per_request = options.chunk_tokens;
  workload.seed = absl::GetFlag(FLAGS_data_seed);
  workload.shared_prefix_ratio = absl::GetFlag(FLAGS_shared_prefix_ratio);
  workload.source = absl::GetFlag(FLAGS_source);
  // Separate runs never share token sequences unless a prefix is shared.
  workload.run_nonce =
      static_cast<uint64_t>(
          std::chrono::system_clock::now().time_since_epoch().count()) ^
      (static_cast<uint64_t>(getpid()) << 40);

  if (absl::GetFlag(FLAGS_progress)) {
    const bool tty = isatty(STDERR_FILENO);
    options.progress = [tty](const std::string& line) {
      std::cerr << line << (tty ? "\r" : "\n") << std::flush;
    };
  }
  auto report = bench::RunLoad(options);
  if (options.progress && isatty(STDERR_FILENO)) std::cerr << "\n";
  if (!report.ok()) return ReportError(report.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << bench::ReportToJson(options, *report).dump() << std::endl;
  } else {
    std::cout << bench::ReportToText(options, *report);
  }
  uint64_t errors = 0;
  for (const bench::OpReport& op : report->ops) errors += op.errors;
  return errors == 0 ? 0 : 1;
}

const CommandRegistrar registrar({"bench", RunBench});

}  // namespace
}  // namespace seqkv::cli
