// codec-bench's measurement loop: every codec over every file, chunk by
// chunk as the server stores them, with size, fidelity and speed figures.
#ifndef SEQKV_BENCH_CODEC_BENCH_BENCH_RUNNER_H_
#define SEQKV_BENCH_CODEC_BENCH_BENCH_RUNNER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "codec/kv_layout.h"

namespace seqkv::bench {

struct BenchOptions {
  // seqkv codec specs (from the registry) or peer specs (peer_codec.h).
  std::vector<std::string> codecs;
  // Files processed at once; speeds are per thread in any case.
  int threads = 1;
  uint32_t chunk_tokens = 256;
  // Not stored in the dumps; applied to every file's layout.
  RopeConfig rope;
  // Model-level codec state handed to seqkv codecs via ModelContext, built
  // once per distinct layout of the input files (unset: no state). It comes
  // from the model's own files, never from the dumps being measured, and is
  // not counted in bits per element (see CodecReport::state_bytes).
  using CodecState = std::map<std::string, std::string, std::less<>>;
  std::string model_name = "codec-bench";
  // Speeds from each thread's CPU time instead of wall time (a shared
  // machine's load then slows them less).
  bool cpu_clock = false;
  // Called after each (codec, file) job with a line saying what is done
  // (from the worker that did it, one call at a time); unset: silent.
  std::function<void(const std::string&)> progress;
  std::function<absl::StatusOr<CodecState>(const KvLayout&)> build_state;
};

struct CodecReport {
  std::string codec;
  bool peer = false;  // a general-purpose compressor, not a seqkv codec
  // Encoded bytes x 8 over the number of K and V elements, all side
  // information included. Peers code K and V separately, so they also have
  // per-tensor figures; seqkv codecs code whole chunks (NaN there).
  double bits_per_element = 0;
  double bits_per_element_k = 0;
  double bits_per_element_v = 0;
  // Sum of squared errors over sum of squares, per file, averaged over files.
  double rel_mse_k = 0;
  double rel_mse_v = 0;  // NaN for latent layouts
  // Mean cosine similarity of original and decoded head_dim vectors.
  double cosine = 0;
  // Input bytes (in the file's dtype) per second of one thread, in MB/s.
  double encode_mbps = 0;
  double decode_mbps = 0;
  bool bit_exact = false;
  // Bits per element of the input dtype, for compression ratios.
  double input_bits = 16;
  size_t files = 0;
  size_t chunks = 0;
  // Size of the model-level state the codecs were given (once per model).
  size_t state_bytes = 0;
};

absl::StatusOr<std::vector<CodecReport>> RunCodecBench(
    const BenchOptions& options, std::span<const std::string> files);

// A fixed-width table, one codec per line.
std::string FormatReportTable(std::span<const CodecReport> reports);

}  // namespace seqkv::bench

#endif  // SEQKV_BENCH_CODEC_BENCH_BENCH_RUNNER_H_
