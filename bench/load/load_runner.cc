#include "bench/load/load_runner.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <latch>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace seqkv::bench {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double MillisecondsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

// State the client threads share.
struct Shared {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> claimed{0};
  std::atomic<uint64_t> next_sequence{0};
  std::array<std::atomic<uint64_t>, kNumOpKinds> done{};
  std::array<std::atomic<uint64_t>, kNumOpKinds> bytes{};
  std::array<std::atomic<uint64_t>, kNumOpKinds> errors{};
  // Sequences stored so far; Gets and Lookups pick among them.
  std::mutex pool_mutex;
  std::vector<uint64_t> pool;
};

struct ThreadResult {
  std::array<LatencyRecorder, kNumOpKinds> latency;
  std::array<LatencyRecorder, kNumOpKinds> warmup;
  std::array<OpReport, kNumOpKinds> ops;
  uint64_t bytes_stored = 0;
  uint64_t chunks_new = 0;
  uint64_t chunks_deduped = 0;
  absl::Status fatal;
};

class ClientThread {
 public:
  ClientThread(const LoadOptions& options, const Workload& workload,
               Shared& shared, ThreadResult& result, uint64_t rng_seed)
      : options_(options),
        workload_(workload),
        shared_(shared),
        result_(result),
        rng_(rng_seed),
        cache_(workload.MakeCache()) {
    double total = 0;
    for (double w : options.weights) total += w;
    double sum = 0;
    for (int i = 0; i < kNumOpKinds; ++i) {
      sum += options.weights[i] / total;
      cumulative_[i] = sum;
    }
  }

  // Connects, stores `prefill` sequences, and runs every operation of the mix
  // `warmup_ops` times, timing those apart.
  absl::Status Prepare(uint32_t prefill, uint32_t warmup_ops) {
    auto client = Client::Connect(options_.client);
    if (!client.ok()) return client.status();
    client_ = std::move(*client);
    if (client_->uses_shared_memory()) {
      // A worker's staging buffer, shared with the server: Puts read the
      // first half in place, Gets write the second.
      const size_t bytes = workload_.request_bytes();
      auto region = client_->CreateRegion(2 * bytes);
      if (!region.ok()) return region.status();
      staging_ = *std::move(region);
      cache_.CopyTokenMajor(0, cache_.num_tokens(),
                            staging_->bytes().first(bytes));
    }
    for (uint32_t i = 0; i < prefill; ++i) {
      absl::Status status;
      PrepareOp(OpKind::kPut);
      if (!DoOp(OpKind::kPut, status))
        return absl::Status(status.code(),
                            absl::StrCat("prefill Put: ", status.message()));
    }
    for (uint32_t i = 0; i < warmup_ops; ++i) {
      for (int index = 0; index < kNumOpKinds; ++index) {
        if (options_.weights[index] <= 0) continue;
        const OpKind kind = PrepareOp(static_cast<OpKind>(index));
        absl::Status status;
        const auto start = Clock::now();
        if (!DoOp(kind, status))
          return absl::Status(
              status.code(),
              absl::StrCat("warm-up ", OpName(kind), ": ", status.message()));
        result_.warmup[static_cast<int>(kind)].Add(MillisecondsSince(start));
      }
    }
    return absl::OkStatus();
  }

  void Loop() {
    uint64_t consecutive_errors = 0;
    while (!shared_.stop.load(std::memory_order_relaxed)) {
      if (options_.ops > 0 && shared_.claimed.fetch_add(
                                  1, std::memory_order_relaxed) >= options_.ops)
        break;
      // Untimed: a worker has its prompt's token ids at hand already.
      const OpKind kind = PrepareOp(Choose());
      const int index = static_cast<int>(kind);
      absl::Status status;
      const auto start = Clock::now();
      const bool ok = DoOp(kind, status);
      const double ms = MillisecondsSince(start);
      OpReport& op = result_.ops[index];
      if (ok) {
        consecutive_errors = 0;
        result_.latency[index].Add(ms);
        ++op.count;
        const uint64_t bytes =
            kind == OpKind::kLookup ? 0 : workload_.request_bytes();
        op.bytes += bytes;
        shared_.done[index].fetch_add(1, std::memory_order_relaxed);
        shared_.bytes[index].fetch_add(bytes, std::memory_order_relaxed);
      } else {
        ++op.errors;
        if (op.first_error.empty()) op.first_error = status.ToString();
        shared_.errors[index].fetch_add(1, std::memory_order_relaxed);
        // A server that fails everything would otherwise spin this loop.
        if (++consecutive_errors >= 1000) {
          result_.fatal = absl::Status(
              status.code(),
              absl::StrCat("1000 errors in a row; last: ", status.message()));
          shared_.stop = true;
        }
      }
    }
  }

 private:
  OpKind Choose() {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng_);
    for (int i = 0; i < kNumOpKinds; ++i)
      if (u < cumulative_[i] && options_.weights[i] > 0)
        return static_cast<OpKind>(i);
    for (int i = kNumOpKinds - 1; i >= 0; --i)
      if (options_.weights[i] > 0) return static_cast<OpKind>(i);
    return OpKind::kPut;
  }

  // A stored sequence, or false when none is stored yet.
  bool PickStored(uint64_t& sequence) {
    std::lock_guard<std::mutex> lock(shared_.pool_mutex);
    if (shared_.pool.empty()) return false;
    sequence = shared_.pool[std::uniform_int_distribution<size_t>(
        0, shared_.pool.size() - 1)(rng_)];
    return true;
  }

  // Picks the sequence the operation works on and fills its tokens; a Get
  // or Lookup before anything is stored becomes a Put.
  OpKind PrepareOp(OpKind kind) {
    if (kind != OpKind::kPut && PickStored(sequence_)) {
      workload_.FillTokens(sequence_, tokens_);
      return kind;
    }
    sequence_ = shared_.next_sequence.fetch_add(1);
    workload_.FillTokens(sequence_, cache_.tokens);
    return OpKind::kPut;
  }

  bool DoOp(OpKind kind, absl::Status& status) {
    switch (kind) {
      case OpKind::kPut:
        return DoPut(status);
      case OpKind::kGet:
        return DoGet(status);
      case OpKind::kLookup:
        return DoLookup(status);
    }
    return false;
  }

  bool DoPut(absl::Status& status) {
    PutOptions put;
    put.model = options_.model;
    put.codec = options_.codec;
    auto result = staging_ ? client_->PutFromRegion(put, cache_.layout,
                                                    cache_.tokens, *staging_, 0)
                           : client_->Put(put, cache_);
    if (!result.ok()) {
      status = result.status();
      return false;
    }
    result_.bytes_stored += result->bytes_stored;
    result_.chunks_new += result->chunks_new;
    result_.chunks_deduped += result->chunks_deduped;
    std::lock_guard<std::mutex> lock(shared_.pool_mutex);
    shared_.pool.push_back(sequence_);
    return true;
  }

  bool DoGet(absl::Status& status) {
    GetOptions get;
    get.model = options_.model;
    if (staging_) return DoGetIntoRegion(get, status);
    // Into the same cache each time, as a worker fetches into its buffers.
    if (auto got = client_->GetInto(get, tokens_, fetched_); !got.ok()) {
      status = got;
      return false;
    }
    if (fetched_.num_tokens() != tokens_.size()) {
      status = absl::NotFoundError(
          absl::StrCat("Get returned ", fetched_.num_tokens(), " of ",
                       tokens_.size(), " stored tokens"));
      return false;
    }
    if (options_.verify && (fetched_.k != cache_.k || fetched_.v != cache_.v)) {
      status = absl::DataLossError("Get returned other bytes than were put");
      return false;
    }
    return true;
  }

  bool DoGetIntoRegion(const GetOptions& get, absl::Status& status) {
    const size_t bytes = workload_.request_bytes();
    auto placed = client_->GetIntoRegion(get, tokens_, *staging_, bytes, bytes);
    if (!placed.ok()) {
      status = placed.status();
      return false;
    }
    if (placed->end_token - placed->begin_token != tokens_.size()) {
      status = absl::NotFoundError(absl::StrCat(
          "Get returned ", placed->end_token - placed->begin_token, " of ",
          tokens_.size(), " stored tokens"));
      return false;
    }
    if (options_.verify && std::memcmp(staging_->bytes().data(),
                                       staging_->bytes().data() + bytes,
                                       bytes) != 0) {
      status = absl::DataLossError("Get returned other bytes than were put");
      return false;
    }
    return true;
  }

  bool DoLookup(absl::Status& status) {
    auto result = options_.lookup_by_chunks
                      ? client_->LookupByChunks(options_.model, tokens_,
                                                options_.chunk_tokens)
                      : client_->Lookup(options_.model, tokens_);
    if (!result.ok()) {
      status = result.status();
      return false;
    }
    if (result->matched_tokens != tokens_.size()) {
      status = absl::NotFoundError(
          absl::StrCat("Lookup matched ", result->matched_tokens, " of ",
                       tokens_.size(), " stored tokens"));
      return false;
    }
    return true;
  }

  const LoadOptions& options_;
  const Workload& workload_;
  Shared& shared_;
  ThreadResult& result_;
  std::mt19937_64 rng_;
  std::array<double, kNumOpKinds> cumulative_{};
  std::unique_ptr<Client> client_;
  KvCache cache_;                // the KV values; tokens replaced per Put
  KvCache fetched_;              // what the last Get returned
  // With a region socket: the staging buffer Puts and Gets use in place.
  std::shared_ptr<SharedRegion> staging_;
  uint64_t sequence_ = 0;        // of the operation prepared last
  std::vector<int32_t> tokens_;  // of a Get or Lookup
};

std::string ProgressLine(double elapsed, const Shared& shared,
                         const std::array<uint64_t, kNumOpKinds>& last_done,
                         double interval, const LoadOptions& options) {
  std::string line = absl::StrFormat("[%6.1fs]", elapsed);
  for (int i = 0; i < kNumOpKinds; ++i) {
    if (options.weights[i] <= 0) continue;
    const uint64_t done = shared.done[i].load();
    const double rate = (done - last_done[i]) / interval;
    absl::StrAppend(&line,
                    absl::StrFormat(" %s %llu (%.1f/s, %.3f GB/s avg)",
                                    OpName(static_cast<OpKind>(i)),
                                    static_cast<unsigned long long>(done), rate,
                                    shared.bytes[i].load() / elapsed / 1e9));
    if (const uint64_t errors = shared.errors[i].load(); errors > 0)
      absl::StrAppend(&line, " errors ", errors);
  }
  return line;
}

}  // namespace

const char* OpName(OpKind kind) {
  switch (kind) {
    case OpKind::kPut:
      return "put";
    case OpKind::kGet:
      return "get";
    case OpKind::kLookup:
      return "lookup";
  }
  return "?";
}

absl::StatusOr<std::array<double, kNumOpKinds>> ParseOpWeights(
    const std::string& op, const std::string& mix) {
  std::array<double, kNumOpKinds> weights = {0, 0, 0};
  for (int i = 0; i < kNumOpKinds; ++i) {
    if (op == OpName(static_cast<OpKind>(i))) {
      weights[i] = 1;
      return weights;
    }
  }
  if (op != "mix")
    return absl::InvalidArgumentError(
        absl::StrCat("--op must be put, get, lookup or mix, got '", op, "'"));
  for (absl::string_view part : absl::StrSplit(mix, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> pair = absl::StrSplit(part, ':');
    int index = -1;
    for (int i = 0; i < kNumOpKinds; ++i)
      if (pair[0] == OpName(static_cast<OpKind>(i))) index = i;
    double weight = 0;
    if (pair.size() != 2 || index < 0 || !absl::SimpleAtod(pair[1], &weight) ||
        weight < 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "--mix must look like put:1,get:2,lookup:1, got '", mix, "'"));
    weights[index] = weight;
  }
  if (weights[0] + weights[1] + weights[2] <= 0)
    return absl::InvalidArgumentError("--mix gives every operation weight 0");
  return weights;
}

absl::StatusOr<LoadReport> RunLoad(const LoadOptions& options) {
  if (options.clients < 1 || options.clients > 4096)
    return absl::InvalidArgumentError(
        absl::StrCat("--clients must be in [1, 4096], got ", options.clients));
  if (options.duration_s < 0)
    return absl::InvalidArgumentError("--duration_s must not be negative");
  if (options.duration_s == 0 && options.ops == 0)
    return absl::InvalidArgumentError("give --duration_s or --ops");
  auto workload = Workload::Create(options.workload);
  if (!workload.ok()) return workload.status();

  // Register the model with the benchmark's chunk size; a rerun finds the
  // same registration.
  {
    auto client = Client::Connect(options.client);
    if (!client.ok()) return client.status();
    ModelRegistration registration;
    registration.model = options.model;
    registration.layout = options.workload.layout;
    registration.chunk_tokens = options.chunk_tokens;
    auto registered = (*client)->RegisterModel(registration);
    if (!registered.ok())
      return absl::Status(registered.status().code(),
                          absl::StrCat("registering model '", options.model,
                                       "': ", registered.status().message()));
  }

  const bool reads = options.weights[1] > 0 || options.weights[2] > 0;
  uint32_t prefill = options.prefill;
  if (prefill == 0 && reads) prefill = 2 * options.clients;

  Shared shared;
  std::vector<ThreadResult> results(options.clients);
  std::vector<std::unique_ptr<ClientThread>> clients;
  std::mt19937_64 seeder(options.workload.seed ^ options.workload.run_nonce);
  for (int i = 0; i < options.clients; ++i)
    clients.push_back(std::make_unique<ClientThread>(options, *workload, shared,
                                                     results[i], seeder()));

  std::latch prepared(options.clients);
  std::latch go(1);
  std::vector<std::thread> threads;
  for (int i = 0; i < options.clients; ++i) {
    const uint32_t share =
        prefill / options.clients +
        (static_cast<uint32_t>(i) < prefill % options.clients);
    threads.emplace_back([&, i, share] {
      results[i].fatal = clients[i]->Prepare(share, options.warmup_ops);
      prepared.count_down();
      go.wait();
      if (results[i].fatal.ok() && !shared.stop) clients[i]->Loop();
    });
  }
  prepared.wait();
  for (const ThreadResult& result : results)
    if (!result.fatal.ok()) shared.stop = true;
  // Prefill Puts are not part of the measurement; warm-up times are
  // reported apart.
  for (ThreadResult& result : results) {
    ThreadResult measured;
    measured.fatal = result.fatal;
    measured.warmup = std::move(result.warmup);
    result = std::move(measured);
  }
  for (auto& counter : shared.done) counter = 0;
  for (auto& counter : shared.bytes) counter = 0;
  const uint64_t prefilled = shared.next_sequence.load();
  const auto start = Clock::now();
  go.count_down();

  std::array<uint64_t, kNumOpKinds> last_done{};
  double last_report = 0;
  while (!shared.stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const double elapsed = SecondsSince(start);
    if (options.duration_s > 0 && elapsed >= options.duration_s) break;
    if (options.ops > 0) {
      uint64_t finished = 0;
      for (int i = 0; i < kNumOpKinds; ++i)
        finished += shared.done[i].load() + shared.errors[i].load();
      if (finished >= options.ops) break;
    }
    if (options.progress && elapsed - last_report >= 1.0) {
      options.progress(ProgressLine(elapsed, shared, last_done,
                                    elapsed - last_report, options));
      for (int i = 0; i < kNumOpKinds; ++i)
        last_done[i] = shared.done[i].load();
      last_report = elapsed;
    }
  }
  shared.stop = true;
  for (std::thread& thread : threads) thread.join();
  LoadReport report;
  report.elapsed_s = SecondsSince(start);
  report.prefill_sequences = prefilled;

  for (const ThreadResult& result : results)
    if (!result.fatal.ok()) return result.fatal;
  for (int i = 0; i < kNumOpKinds; ++i) {
    LatencyRecorder latency, warmup;
    OpReport& op = report.ops[i];
    for (const ThreadResult& result : results) {
      latency.Merge(result.latency[i]);
      warmup.Merge(result.warmup[i]);
      op.count += result.ops[i].count;
      op.errors += result.ops[i].errors;
      op.bytes += result.ops[i].bytes;
      if (op.first_error.empty()) op.first_error = result.ops[i].first_error;
    }
    op.latency = latency.Summarize();
    op.warmup = warmup.Summarize();
    op.ops_per_s = op.count / report.elapsed_s;
    op.gbps = op.bytes / report.elapsed_s / 1e9;
  }
  for (const ThreadResult& result : results) {
    report.bytes_stored += result.bytes_stored;
    report.chunks_new += result.chunks_new;
    report.chunks_deduped += result.chunks_deduped;
  }
  return report;
}

nlohmann::json ReportToJson(const LoadOptions& options,
                            const LoadReport& report) {
  const WorkloadOptions& w = options.workload;
  nlohmann::json ops = nlohmann::json::object();
  for (int i = 0; i < kNumOpKinds; ++i) {
    if (options.weights[i] <= 0) continue;
    const OpReport& op = report.ops[i];
    nlohmann::json entry = {{"count", op.count},
                            {"errors", op.errors},
                            {"bytes", op.bytes},
                            {"ops_per_s", op.ops_per_s},
                            {"gbps", op.gbps},
                            {"mean_ms", op.latency.mean_ms},
                            {"p50_ms", op.latency.p50_ms},
                            {"p90_ms", op.latency.p90_ms},
                            {"p99_ms", op.latency.p99_ms},
                            {"p999_ms", op.latency.p999_ms},
                            {"max_ms", op.latency.max_ms},
                            {"warmup_count", op.warmup.count},
                            {"warmup_max_ms", op.warmup.max_ms}};
    if (!op.first_error.empty()) entry["first_error"] = op.first_error;
    ops[OpName(static_cast<OpKind>(i))] = entry;
  }
  nlohmann::json weights = nlohmann::json::object();
  for (int i = 0; i < kNumOpKinds; ++i)
    weights[OpName(static_cast<OpKind>(i))] = options.weights[i];
  return {{"command", "bench"},
          {"config",
           {{"server", options.client.server},
            {"transport", options.client.shm_socket.empty() ? "grpc" : "shm"},
            {"clients", options.clients},
            {"weights", weights},
            {"layout", options.layout_name},
            {"layout_detail", w.layout.DebugString()},
            {"bytes_per_token", w.layout.bytes_per_token()},
            {"chunk_tokens", options.chunk_tokens},
            {"tokens_per_request", w.tokens_per_request},
            {"request_bytes",
             uint64_t{w.tokens_per_request} * w.layout.bytes_per_token()},
            {"codec", options.codec},
            {"model", options.model},
            {"duration_s", options.duration_s},
            {"ops", options.ops},
            {"warmup_ops", options.warmup_ops},
            {"seed", w.seed},
            {"shared_prefix_ratio", w.shared_prefix_ratio},
            {"source", w.source}}},
          {"elapsed_s", report.elapsed_s},
          {"prefill_sequences", report.prefill_sequences},
          {"bytes_stored", report.bytes_stored},
          {"chunks_new", report.chunks_new},
          {"chunks_deduped", report.chunks_deduped},
          {"ops", ops}};
}

std::string ReportToText(const LoadOptions& options, const LoadReport& report) {
  const WorkloadOptions& w = options.workload;
  std::string text = absl::StrFormat(
      "seqkv bench: %d clients, layout %s (%s), %u tokens/request (%.2f MiB), "
      "chunk %u tokens, codec %s, %.1f s\n",
      options.clients, options.layout_name, w.layout.DebugString(),
      w.tokens_per_request,
      uint64_t{w.tokens_per_request} * w.layout.bytes_per_token() / 1048576.0,
      options.chunk_tokens, options.codec.empty() ? "(default)" : options.codec,
      report.elapsed_s);
  absl::StrAppend(
      &text, absl::StrFormat("%-7s %9s %10s %8s %9s %9s %9s %9s %7s\n", "op",
                             "ops", "ops/s", "GB/s", "p50 ms", "p90 ms",
                             "p99 ms", "p99.9 ms", "errors"));
  for (int i = 0; i < kNumOpKinds; ++i) {
    if (options.weights[i] <= 0) continue;
    const OpReport& op = report.ops[i];
    absl::StrAppend(
        &text,
        absl::StrFormat(
            "%-7s %9llu %10.1f %8.3f %9.3f %9.3f %9.3f %9.3f %7llu\n",
            OpName(static_cast<OpKind>(i)),
            static_cast<unsigned long long>(op.count), op.ops_per_s, op.gbps,
            op.latency.p50_ms, op.latency.p90_ms, op.latency.p99_ms,
            op.latency.p999_ms, static_cast<unsigned long long>(op.errors)));
    if (!op.first_error.empty())
      absl::StrAppend(&text, "  first error: ", op.first_error, "\n");
    if (op.warmup.count > 0)
      absl::StrAppend(
          &text,
          absl::StrFormat("  warm-up (untimed): %llu, slowest %.3f ms\n",
                          static_cast<unsigned long long>(op.warmup.count),
                          op.warmup.max_ms));
  }
  absl::StrAppend(
      &text,
      absl::StrFormat(
          "stored by Puts: %llu new chunks, %llu deduplicated, %.2f MiB\n",
          static_cast<unsigned long long>(report.chunks_new),
          static_cast<unsigned long long>(report.chunks_deduped),
          report.bytes_stored / 1048576.0));
  return text;
}

}  // namespace seqkv::bench
