// kill -9 under load, in a loop: a real seqkv-server is killed with SIGKILL
// at a random moment while client threads Put (raw, lossless and a lossy
// codec; lengths with partial chunks; Puts sharing prefixes), Get and Lookup.
// After every restart each acknowledged Put must come back: bit-exact for
// the exact codecs, and for the lossy one the same bytes as its first Get
// after the acknowledgement; and no Lookup may advertise more than a Get then
// serves. The server must die of the SIGKILL alone.
//
// Deterministic in its seed (printed): SEQKV_CRASH_SEED overrides it,
// SEQKV_CRASH_ROUNDS the number of kills (8). Where the kill lands among the
// requests depends on timing, so a failure's seed narrows it down rather
// than replaying it exactly.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/crash/prefix_kv.h"
#include "tests/integration/server_process.h"

namespace seqkv::testing {
namespace {

// 1 KiB per token, small so that decoding lossless chunks keeps the test
// short. With --payload_file_min_bytes=64 KiB, whole raw and lossless
// chunks go to payload files, partial and lossy ones to RocksDB.
const KvLayout kLayout{2, 2, 64, DType::kBF16};
constexpr uint32_t kChunkTokens = 256;
constexpr uint32_t kBaseTokens = 1024;
constexpr int kFamilies = 4;
constexpr int kLoadThreads = 3;

struct ModelCase {
  const char* model;
  const char* codec;
  bool exact;  // bit-exact codec
};
// One model per codec: chunks are deduplicated across codecs of one model,
// so a lossless Put sharing a prefix with a lossy one would read lossy bytes.
constexpr ModelCase kModels[] = {{"crash-raw", "raw", true},
                                 {"crash-lossless", "lossless", true},
                                 {"crash-turbo", "turbo:3", false}};
constexpr int kNumModels = sizeof(kModels) / sizeof(kModels[0]);

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::strtoull(value, nullptr, 10)
                                            : fallback;
}

struct Entry {
  int model = 0;
  std::vector<int32_t> tokens;
};

// The Puts the server acknowledged, and the first bytes a lossy one read
// back as. Thread-safe.
class Ledger {
 public:
  void Ack(Entry entry) {
    absl::MutexLock lock(&mu_);
    if (known_.insert({entry.model, entry.tokens}).second)
      entries_.push_back(std::move(entry));
  }
  std::vector<Entry> Entries() const {
    absl::MutexLock lock(&mu_);
    return entries_;
  }
  std::optional<Entry> Pick(uint64_t random) const {
    absl::MutexLock lock(&mu_);
    if (entries_.empty()) return std::nullopt;
    return entries_[random % entries_.size()];
  }
  // The digest `entry` must keep: the first one recorded for it.
  uint64_t FirstDigest(const Entry& entry, uint64_t digest) {
    absl::MutexLock lock(&mu_);
    return digests_.try_emplace({entry.model, entry.tokens}, digest)
        .first->second;
  }
  size_t size() const {
    absl::MutexLock lock(&mu_);
    return entries_.size();
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<int, std::vector<int32_t>>> known_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<int, std::vector<int32_t>>, uint64_t> digests_
      ABSL_GUARDED_BY(mu_);
};

// Thread-safe list of what went wrong.
class Failures {
 public:
  void Add(std::string what) {
    absl::MutexLock lock(&mu_);
    failures_.push_back(std::move(what));
  }
  std::vector<std::string> Take() {
    absl::MutexLock lock(&mu_);
    return std::exchange(failures_, {});
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> failures_ ABSL_GUARDED_BY(mu_);
};

class CrashLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = EnvOr("SEQKV_CRASH_SEED", 20261207);
    rounds_ = EnvOr("SEQKV_CRASH_ROUNDS", 8);
    std::printf("crash loop: seed %llu (SEQKV_CRASH_SEED), %d rounds\n",
                static_cast<unsigned long long>(seed_), rounds_);
    std::mt19937_64 rng(seed_);
    for (auto& model : bases_)
      for (auto& base : model)
        for (uint32_t i = 0; i < kBaseTokens; ++i)
          base.push_back(static_cast<int32_t>(rng() % 50000));
    // The server's default is fsync before acknowledging; a SIGKILL loses
    // no page cache, so it must lose nothing without the fsync either: keep
    // the harness's --sync_writes=false.
    auto server = ServerProcess::Start(
        {"--codec_threads=2", "--payload_file_min_bytes=65536"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    // Registered up front, so that a Lookup before a model's first Put is
    // a miss rather than NOT_FOUND.
    auto client = server_->Connect();
    ASSERT_TRUE(client.ok()) << client.status();
    for (const ModelCase& model : kModels) {
      auto created = (*client)->RegisterModel({.model = model.model,
                                               .layout = kLayout,
                                               .chunk_tokens = kChunkTokens,
                                               .default_codec = model.codec});
      ASSERT_TRUE(created.ok()) << created.status();
    }
  }

  // A Put's tokens: a prefix of one of the model's base sequences, then
  // (mostly) a tail of its own; lengths cut partial chunks. The lossy model
  // shares whole chunks only, so that each of its acknowledged sequences is
  // served by its own nodes (a Get of a shorter one could otherwise be
  // served from a longer node coded differently).
  Entry NewPut(std::mt19937_64& rng) const {
    Entry entry;
    entry.model = static_cast<int>(rng() % kNumModels);
    const auto& base = bases_[entry.model][rng() % kFamilies];
    const bool exact = kModels[entry.model].exact;
    uint32_t shared = exact ? rng() % 700 : kChunkTokens * (rng() % 3);
    uint32_t tail = 1 + rng() % 400;
    if (exact && rng() % 3 == 0) {  // a prefix of the base alone
      shared = 1 + rng() % kBaseTokens;
      tail = 0;
    }
    if (rng() % 4 == 0) tail = kChunkTokens - shared % kChunkTokens;
    entry.tokens.assign(base.begin(), base.begin() + shared);
    for (uint32_t i = 0; i < tail; ++i)
      entry.tokens.push_back(static_cast<int32_t>(50000 + rng() % 50000));
    return entry;
  }

  // Empty when `entry` is fully stored and reads back as it must.
  std::string Verify(Client& client, const Entry& entry) {
    const ModelCase& model = kModels[entry.model];
    const std::string where =
        absl::StrCat(model.model, " ", entry.tokens.size(), " tokens: ");
    auto lookup = client.Lookup(model.model, entry.tokens);
    if (!lookup.ok()) return where + "Lookup " + lookup.status().ToString();
    if (lookup->matched_tokens != entry.tokens.size())
      return absl::StrCat(where, "acknowledged, but Lookup matches ",
                          lookup->matched_tokens);
    auto got = client.Get({model.model}, entry.tokens);
    if (!got.ok()) return where + "Get " + got.status().ToString();
    if (got->tokens != entry.tokens)
      return absl::StrCat(where, "acknowledged, but Get returns ",
                          got->tokens.size(), " tokens");
    if (model.exact) {
      std::string diff = CheckPrefixCache(kLayout, entry.tokens, *got);
      return diff.empty() ? "" : where + diff;
    }
    const uint64_t digest = CacheDigest(*got);
    const uint64_t first = ledger_.FirstDigest(entry, digest);
    return first == digest ? ""
                           : where + "lossy Get differs from its first read";
  }

  // A prefix of a base sequence of an exact model: what Lookup matches, a
  // Get must serve, with the right bytes.
  std::string Probe(Client& client, std::mt19937_64& rng) {
    const int m = static_cast<int>(rng() % 2);  // raw or lossless
    const auto& base = bases_[m][rng() % kFamilies];
    const std::span<const int32_t> prompt(base.data(), 1 + rng() % kBaseTokens);
    const std::string where =
        absl::StrCat(kModels[m].model, " probe of ", prompt.size(), ": ");
    auto lookup = client.Lookup(kModels[m].model, prompt);
    if (!lookup.ok()) return where + "Lookup " + lookup.status().ToString();
    auto got = client.Get({kModels[m].model}, prompt);
    if (!got.ok()) return where + "Get " + got.status().ToString();
    // Nothing is deleted, so what was matched stays.
    if (got->tokens.size() < lookup->matched_tokens)
      return absl::StrCat(where, "Lookup matched ", lookup->matched_tokens,
                          " but Get serves ", got->tokens.size());
    std::string diff = CheckPrefixCache(kLayout, prompt, *got);
    return diff.empty() ? "" : where + diff;
  }

  void Load(Client& client, uint64_t thread_seed) {
    std::mt19937_64 rng(thread_seed);
    while (!killing_.load()) {
      const uint64_t op = rng() % 100;
      std::string failure;
      if (op < 30) {
        Entry entry = NewPut(rng);
        const ModelCase& model = kModels[entry.model];
        auto put = client.Put({model.model, model.codec, ""},
                              PrefixCache(kLayout, entry.tokens));
        if (put.ok()) {
          ledger_.Ack(std::move(entry));
          ++acked_;
        } else {
          failure = absl::StrCat("Put of ", entry.tokens.size(), " to ",
                                 model.model, ": ", put.status().ToString());
        }
      } else if (op < 80) {
        if (auto entry = ledger_.Pick(rng())) failure = Verify(client, *entry);
      } else {
        failure = Probe(client, rng);
      }
      // Calls cut by the kill fail as they may.
      if (!failure.empty() && !killing_.load()) failures_.Add(failure);
      if (!failure.empty()) return;
    }
  }

  uint64_t seed_ = 0;
  int rounds_ = 0;
  std::vector<int32_t> bases_[kNumModels][kFamilies];
  std::unique_ptr<ServerProcess> server_;
  Ledger ledger_;
  Failures failures_;
  std::atomic<bool> killing_{false};
  std::atomic<int> acked_{0};
};

TEST_F(CrashLoopTest, AcknowledgedPutsSurviveKill9) {
  std::mt19937_64 rng(seed_ ^ 0xC4A5);
  for (int round = 0; round <= rounds_; ++round) {
    const auto verify_start = std::chrono::steady_clock::now();
    auto client = server_->Connect();
    ASSERT_TRUE(client.ok()) << client.status();
    // Everything acknowledged before the last kill, on two threads.
    const std::vector<Entry> entries = ledger_.Entries();
    std::vector<std::thread> verifiers;
    for (size_t t = 0; t < 2; ++t)
      verifiers.emplace_back([&, t] {
        for (size_t i = t; i < entries.size(); i += 2)
          if (std::string failure = Verify(**client, entries[i]);
              !failure.empty())
            failures_.Add(absl::StrCat("after restart ", round, ": ", failure));
      });
    for (std::thread& verifier : verifiers) verifier.join();
    for (int i = 0; i < 20; ++i)
      if (std::string failure = Probe(**client, rng); !failure.empty())
        failures_.Add(absl::StrCat("after restart ", round, ": ", failure));
    std::vector<std::string> failures = failures_.Take();
    for (size_t i = 0; i < failures.size() && i < 10; ++i)
      ADD_FAILURE() << failures[i];
    ASSERT_TRUE(failures.empty()) << failures.size() << " failures";
    const auto verify_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - verify_start)
            .count();
    if (round == rounds_) break;

    acked_ = 0;
    killing_ = false;
    std::vector<std::thread> threads;
    for (int t = 0; t < kLoadThreads; ++t)
      threads.emplace_back(
          [&, t] { Load(**client, seed_ * 1000003 + round * 16 + t); });
    const auto load_ms = 500 + rng() % 1000;
    std::this_thread::sleep_for(std::chrono::milliseconds(load_ms));
    killing_ = true;
    const absl::Status killed = server_->Kill();
    for (std::thread& thread : threads) thread.join();
    ASSERT_TRUE(killed.ok()) << killed;
    failures = failures_.Take();
    for (size_t i = 0; i < failures.size() && i < 10; ++i)
      ADD_FAILURE() << "round " << round << ": " << failures[i];
    ASSERT_TRUE(failures.empty()) << failures.size() << " failures";
    std::printf(
        "round %d: verified %zu acknowledged Puts in %lld ms, killed after "
        "%llu ms, %d more acknowledged\n",
        round, entries.size(), static_cast<long long>(verify_ms),
        static_cast<unsigned long long>(load_ms), acked_.load());
    std::fflush(stdout);
    const auto restart_start = std::chrono::steady_clock::now();
    const absl::Status restarted = server_->Restart();
    ASSERT_TRUE(restarted.ok()) << restarted;
    std::printf("  restarted in %lld ms\n",
                static_cast<long long>(
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - restart_start)
                        .count()));
  }
  EXPECT_GT(ledger_.size(), 0u);
}

}  // namespace
}  // namespace seqkv::testing
