#include "bench/codec_bench/bench_runner.h"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/codec_bench/chunking.h"
#include "bench/codec_bench/peer_codec.h"
#include "codec/codec.h"
#include "codec/turbo/element_io.h"
#include "model/kv_cache.h"

namespace seqkv::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Seconds on this thread's CPU clock.
double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

// Wall and CPU time side by side; the bench reports one of them.
struct Stamp {
  Clock::time_point wall;
  double cpu;
  static Stamp Now() { return {Clock::now(), ThreadCpuSeconds()}; }
};

struct Durations {
  double wall = 0, cpu = 0;
  void Add(const Stamp& from, const Stamp& to) {
    wall += std::chrono::duration<double>(to.wall - from.wall).count();
    cpu += to.cpu - from.cpu;
  }
};

struct LoadedFile {
  std::string path;
  KvLayout layout;
  const BenchOptions::CodecState* state = nullptr;
  std::vector<int32_t> tokens;
  struct Chunk {
    uint32_t begin;
    uint32_t count;
    std::vector<std::byte> data;
  };
  std::vector<Chunk> chunks;
};

absl::StatusOr<LoadedFile> LoadFile(const std::string& path,
                                    const BenchOptions& options) {
  absl::StatusOr<KvCache> cache = ReadKvCacheFile(path);
  if (!cache.ok()) return cache.status();
  LoadedFile file;
  file.path = path;
  file.layout = cache->layout;
  file.layout.rope = options.rope;
  file.tokens = cache->tokens;
  for (uint32_t begin = 0; begin < cache->num_tokens();
       begin += options.chunk_tokens) {
    const uint32_t count =
        std::min(options.chunk_tokens, cache->num_tokens() - begin);
    file.chunks.push_back({begin, count, GatherChunk(*cache, begin, count)});
  }
  return file;
}

// One codec, either kind, behind the same two calls.
class BenchCodec {
 public:
  static absl::StatusOr<std::unique_ptr<BenchCodec>> Create(
      const std::string& spec, const LoadedFile& file,
      const BenchOptions& options) {
    auto result = std::make_unique<BenchCodec>();
    absl::StatusOr<std::unique_ptr<PeerCodec>> peer = CreatePeerCodec(spec);
    if (peer.ok()) {
      result->peer_ = std::move(*peer);
      return result;
    }
    if (!absl::IsNotFound(peer.status())) return peer.status();
    ModelContext model;
    model.name = options.model_name;
    model.layout = file.layout;
    if (file.state != nullptr) model.codec_state = *file.state;
    absl::StatusOr<std::unique_ptr<Codec>> codec = CreateCodec(spec, model);
    if (!codec.ok()) return codec.status();
    result->codec_ = std::move(*codec);
    return result;
  }

  bool is_peer() const { return peer_ != nullptr; }

  // Encodes and decodes one chunk; adds the time spent in the codec only.
  absl::Status RoundTrip(const ChunkInfo& chunk,
                         std::span<const std::byte> data,
                         std::span<std::byte> decoded, size_t tensor_bytes[2],
                         Durations& encode_s, Durations& decode_s) const {
    if (codec_) {
      std::string encoded;
      const Stamp t0 = Stamp::Now();
      absl::Status s = codec_->Encode(chunk, data, encoded);
      const Stamp t1 = Stamp::Now();
      if (!s.ok()) return s;
      s = codec_->Decode(chunk, encoded, decoded);
      const Stamp t2 = Stamp::Now();
      if (!s.ok()) return s;
      encode_s.Add(t0, t1);
      decode_s.Add(t1, t2);
      tensor_bytes[0] += encoded.size();
      return absl::OkStatus();
    }
    const KvLayout& l = *chunk.layout;
    const TensorShape shape{l.dtype, size_t{l.num_layers} * l.num_kv_heads,
                            chunk.num_tokens, l.head_dim};
    for (uint32_t tensor = 0; tensor < l.tensors_per_layer(); ++tensor) {
      std::vector<std::byte> part = ExtractTensor(chunk, data, tensor);
      std::vector<std::byte> part_out(part.size());
      std::string encoded;
      const Stamp t0 = Stamp::Now();
      absl::Status s = peer_->Encode(shape, part, encoded);
      const Stamp t1 = Stamp::Now();
      if (!s.ok()) return s;
      s = peer_->Decode(shape, encoded, part_out);
      const Stamp t2 = Stamp::Now();
      if (!s.ok()) return s;
      encode_s.Add(t0, t1);
      decode_s.Add(t1, t2);
      tensor_bytes[tensor] += encoded.size();
      InsertTensor(chunk, tensor, part_out, decoded);
    }
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<Codec> codec_;
  std::unique_ptr<PeerCodec> peer_;
};

// What one codec did on one file.
struct FileResult {
  bool peer = false;
  bool latent = false;  // one tensor per layer: "K" holds the latent
  double err[2] = {0, 0};
  double energy[2] = {0, 0};
  double cosine_sum = 0;
  size_t vectors = 0;
  size_t tensor_bytes[2] = {0, 0};
  size_t elements = 0;
  size_t input_bytes = 0;
  Durations encode_s;
  Durations decode_s;
  bool exact = true;
  size_t chunks = 0;
};

void Accumulate(const ChunkInfo& chunk, std::span<const std::byte> original,
                std::span<const std::byte> decoded, FileResult& r) {
  const KvLayout& l = *chunk.layout;
  const uint32_t d = l.head_dim;
  std::vector<float> a(d), b(d);
  size_t row = 0;
  for (uint32_t layer = 0; layer < l.num_layers; ++layer) {
    for (uint32_t tensor = 0; tensor < l.tensors_per_layer(); ++tensor) {
      for (uint32_t head = 0; head < l.num_kv_heads; ++head) {
        for (uint32_t t = 0; t < chunk.num_tokens; ++t, ++row) {
          LoadElements(l.dtype, original, row * d, a);
          LoadElements(l.dtype, decoded, row * d, b);
          double dot = 0, na = 0, nb = 0, err = 0;
          for (uint32_t i = 0; i < d; ++i) {
            const double x = a[i], y = b[i];
            dot += x * y;
            na += x * x;
            nb += y * y;
            err += (x - y) * (x - y);
          }
          r.err[tensor] += err;
          r.energy[tensor] += na;
          if (na == 0 && nb == 0) {
            r.cosine_sum += 1;
          } else if (na > 0 && nb > 0) {
            r.cosine_sum += dot / std::sqrt(na * nb);
          }
          ++r.vectors;
        }
      }
    }
  }
}

absl::StatusOr<FileResult> RunOne(const std::string& spec,
                                  const LoadedFile& file,
                                  const BenchOptions& options) {
  absl::StatusOr<std::unique_ptr<BenchCodec>> codec =
      BenchCodec::Create(spec, file, options);
  if (!codec.ok()) return codec.status();
  FileResult r;
  r.peer = (*codec)->is_peer();
  r.latent = file.layout.latent;
  for (const LoadedFile::Chunk& c : file.chunks) {
    const ChunkInfo chunk{&file.layout, c.count, c.begin,
                          std::span(file.tokens).subspan(c.begin, c.count)};
    std::vector<std::byte> decoded(c.data.size());
    absl::Status s = (*codec)->RoundTrip(chunk, c.data, decoded, r.tensor_bytes,
                                         r.encode_s, r.decode_s);
    if (!s.ok())
      return absl::Status(
          s.code(), absl::StrCat(spec, " on ", file.path, " chunk at token ",
                                 c.begin, ": ", s.message()));
    r.exact = r.exact && decoded == c.data;
    Accumulate(chunk, c.data, decoded, r);
    r.elements += chunk.num_elements();
    r.input_bytes += c.data.size();
    ++r.chunks;
  }
  return r;
}

CodecReport Summarize(const std::string& spec,
                      std::span<const FileResult> results, bool cpu_clock) {
  CodecReport report;
  report.codec = spec;
  report.files = results.size();
  double bytes[2] = {0, 0}, elements = 0, input = 0, enc = 0, dec = 0;
  double tensor_elements[2] = {0, 0};
  double mse_k = 0, mse_v = 0, cosine = 0, vectors = 0;
  report.bit_exact = true;
  for (const FileResult& r : results) {
    report.peer = r.peer;
    bytes[0] += r.tensor_bytes[0];
    bytes[1] += r.tensor_bytes[1];
    elements += r.elements;
    tensor_elements[0] += r.latent ? r.elements : r.elements / 2.0;
    tensor_elements[1] += r.latent ? 0 : r.elements / 2.0;
    input += r.input_bytes;
    enc += cpu_clock ? r.encode_s.cpu : r.encode_s.wall;
    dec += cpu_clock ? r.decode_s.cpu : r.decode_s.wall;
    mse_k += r.err[0] / r.energy[0];
    mse_v += r.energy[1] > 0 ? r.err[1] / r.energy[1] : NAN;
    cosine += r.cosine_sum;
    vectors += r.vectors;
    report.bit_exact = report.bit_exact && r.exact;
    report.chunks += r.chunks;
  }
  const double n = static_cast<double>(results.size());
  report.bits_per_element = (bytes[0] + bytes[1]) * 8 / elements;
  // Peers see K and V (or the latent tensor) apart.
  report.bits_per_element_k = report.peer && tensor_elements[0] > 0
                                  ? bytes[0] * 8 / tensor_elements[0]
                                  : NAN;
  report.bits_per_element_v = report.peer && tensor_elements[1] > 0
                                  ? bytes[1] * 8 / tensor_elements[1]
                                  : NAN;
  report.rel_mse_k = mse_k / n;
  report.rel_mse_v = mse_v / n;
  report.cosine = cosine / vectors;
  report.input_bits = input * 8 / elements;
  report.encode_mbps = input / 1e6 / enc;
  report.decode_mbps = input / 1e6 / dec;
  return report;
}

}  // namespace

absl::StatusOr<std::vector<CodecReport>> RunCodecBench(
    const BenchOptions& options, std::span<const std::string> paths) {
  if (options.chunk_tokens == 0)
    return absl::InvalidArgumentError("--chunk_tokens must be positive");
  if (paths.empty()) return absl::InvalidArgumentError("no input files");
  std::vector<LoadedFile> files;
  for (const std::string& path : paths) {
    absl::StatusOr<LoadedFile> file = LoadFile(path, options);
    if (!file.ok())
      return absl::Status(file.status().code(),
                          absl::StrCat(path, ": ", file.status().message()));
    files.push_back(std::move(*file));
  }

  // Model state per distinct layout, built before any timing starts.
  std::vector<std::pair<KvLayout, BenchOptions::CodecState>> states;
  size_t state_bytes = 0;
  if (options.build_state) {
    states.reserve(files.size());
    for (LoadedFile& file : files) {
      auto it = std::find_if(states.begin(), states.end(), [&](const auto& s) {
        return s.first == file.layout;
      });
      if (it == states.end()) {
        absl::StatusOr<BenchOptions::CodecState> state =
            options.build_state(file.layout);
        if (!state.ok()) return state.status();
        for (const auto& [key, blob] : *state) state_bytes += blob.size();
        states.emplace_back(file.layout, *std::move(state));
        it = states.end() - 1;
      }
      file.state = &it->second;
    }
  }

  // Jobs are (codec, file) pairs, run by `threads` workers.
  const size_t num_jobs = options.codecs.size() * files.size();
  std::vector<absl::StatusOr<FileResult>> results(
      num_jobs, absl::UnknownError("not run"));
  std::atomic<size_t> next{0};
  std::mutex progress_mutex;
  size_t done = 0;
  const Clock::time_point start = Clock::now();
  auto worker = [&] {
    for (size_t job; (job = next++) < num_jobs;) {
      const std::string& codec = options.codecs[job / files.size()];
      const LoadedFile& file = files[job % files.size()];
      results[job] = RunOne(codec, file, options);
      if (!options.progress) continue;
      std::lock_guard<std::mutex> lock(progress_mutex);
      ++done;
      options.progress(absl::StrFormat(
          "[%zu/%zu] %s on %s%s (%.0f s)", done, num_jobs, codec, file.path,
          results[job].ok() ? "" : ": failed",
          std::chrono::duration<double>(Clock::now() - start).count()));
    }
  };
  std::vector<std::thread> workers;
  for (int i = 1; i < std::max(1, options.threads); ++i)
    workers.emplace_back(worker);
  worker();
  for (std::thread& t : workers) t.join();

  std::vector<CodecReport> reports;
  for (size_t c = 0; c < options.codecs.size(); ++c) {
    std::vector<FileResult> per_file;
    for (size_t f = 0; f < files.size(); ++f) {
      absl::StatusOr<FileResult>& r = results[c * files.size() + f];
      if (!r.ok()) return r.status();
      per_file.push_back(*r);
    }
    reports.push_back(
        Summarize(options.codecs[c], per_file, options.cpu_clock));
    if (!reports.back().peer) reports.back().state_bytes = state_bytes;
  }
  return reports;
}

std::string FormatReportTable(std::span<const CodecReport> reports) {
  std::string out =
      absl::StrFormat("%-22s %9s %7s %7s %10s %10s %8s %9s %9s %s\n", "codec",
                      "bits/elem", "K x", "V x", "relMSE K", "relMSE V",
                      "cosine", "enc MB/s", "dec MB/s", "bit-exact");
  for (const CodecReport& r : reports) {
    // Compression ratio of one tensor against the input dtype.
    auto ratio = [&](double bits) {
      return std::isnan(bits) ? std::string("-")
                              : absl::StrFormat("%.3f", r.input_bits / bits);
    };
    out += absl::StrFormat(
        "%-22s %9.4f %7s %7s %10.3e %10.3e %8.5f %9.1f %9.1f %s\n", r.codec,
        r.bits_per_element, ratio(r.bits_per_element_k),
        ratio(r.bits_per_element_v), r.rel_mse_k, r.rel_mse_v, r.cosine,
        r.encode_mbps, r.decode_mbps, r.bit_exact ? "yes" : "no");
  }
  return out;
}

}  // namespace seqkv::bench
