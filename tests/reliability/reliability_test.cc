// Reliability end to end: a real seqkv-server on a disk that fills up, on
// payloads and tables with flipped bytes, and killed with SIGKILL.
#include <signal.h>
#include <sys/mount.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"
#include "tests/run_command.h"
#include "tests/scoped_temp_dir.h"

namespace seqkv::testing {
namespace {

constexpr char kModel[] = "reliability";

// 4 layers x 2 heads x 64 dims of bf16: 2 KiB a token, so a 256-token chunk
// stored raw is a 512 KiB payload file and a short tail a RocksDB value.
KvCache Synthetic(uint32_t tokens, uint32_t seed) {
  KvCache cache;
  cache.layout = {.num_layers = 4, .num_kv_heads = 2, .head_dim = 64};
  std::mt19937 rng(seed);
  for (uint32_t i = 0; i < tokens; ++i)
    cache.tokens.push_back(static_cast<int32_t>(rng() % 50000));
  cache.AllocateTensors();
  for (auto* tensor : {&cache.k, &cache.v})
    for (std::byte& b : *tensor) b = static_cast<std::byte>(rng());
  return cache;
}

nlohmann::json Stats(const ServerProcess& server) {
  auto body = server.AdminGet("/v1/stats");
  EXPECT_TRUE(body.ok()) << body.status();
  return nlohmann::json::parse(body.value_or("{}"));
}

// Every cache reads back bit-exact.
void ExpectStored(Client& client, const std::vector<KvCache>& caches) {
  for (const KvCache& cache : caches) {
    auto got = client.Get({kModel}, cache.tokens);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->tokens.size(), cache.tokens.size());
    EXPECT_TRUE(got->k == cache.k && got->v == cache.v);
  }
}

void FlipByte(const std::filesystem::path& file, std::streamoff offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset);
  const char byte = static_cast<char>(f.get());
  f.seekp(offset);
  f.put(static_cast<char>(~byte));
}

std::vector<std::filesystem::path> FilesUnder(const std::filesystem::path& dir,
                                              const std::string& extension) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir))
    if (entry.is_regular_file() &&
        (extension.empty() || entry.path().extension() == extension))
      files.push_back(entry.path());
  return files;
}

TEST(ReliabilityTest, CountersSurviveKill9WithinTheirSavePeriod) {
  auto server = ServerProcess::Start({"--counters_save_interval=1s"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = (*server)->Connect();
  ASSERT_TRUE(client.ok());
  const KvCache cache = Synthetic(300, 1);
  ASSERT_TRUE((*client)->Put({kModel, "raw", ""}, cache).ok());
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE((*client)->Lookup(kModel, cache.tokens).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  ASSERT_TRUE((*server)->Kill().ok());
  ASSERT_TRUE((*server)->Restart().ok());
  const auto global = Stats(**server)["global"];
  EXPECT_EQ(global["puts"], 1);
  EXPECT_EQ(global["lookups"], 3);
  EXPECT_EQ(global["hit_tokens"], 900);
}

TEST(ReliabilityTest, DamagedPayloadIsQuarantinedAndAPutStoresItAfresh) {
  auto server = ServerProcess::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = (*server)->Connect();
  ASSERT_TRUE(client.ok());
  const KvCache damaged = Synthetic(600, 2);  // chunks of 256, 256, 88
  const KvCache intact = Synthetic(300, 3);
  for (const KvCache* cache : {&damaged, &intact})
    ASSERT_TRUE((*client)->Put({kModel, "raw", ""}, *cache).ok());
  const auto before = Stats(**server)["global"];
  // Flip a byte in the payload file of the first cache's first chunk,
  // found by its content: raw payloads are the chunk's token-major bytes.
  for (const auto& file :
       FilesUnder(std::filesystem::path((*server)->data_dir()) / "db" /
                      "payloads",
                  "")) {
    std::ifstream in(file, std::ios::binary);
    std::string head(16, '\0');
    in.read(head.data(), 16);
    if (std::memcmp(head.data(), damaged.k.data(), 16) == 0)
      FlipByte(file, 1000);
  }
  auto got = (*client)->Get({kModel}, damaged.tokens);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  // Quarantined: the chunk and those below it are no longer advertised.
  auto lookup = (*client)->Lookup(kModel, damaged.tokens);
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->matched_tokens, 0u);
  auto stats = Stats(**server);
  EXPECT_EQ(stats["global"]["chunks_quarantined"], 1);
  EXPECT_EQ(stats["global"]["chunks_stored"],
            before["chunks_stored"].get<int>() - 3);
  auto metrics = (*server)->AdminGet("/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_NE(metrics->find("seqkv_chunks_quarantined_total{tenant=\"default\"} 1"),
            std::string::npos);
  // The next Put stores it afresh, and it reads back bit-exact.
  auto put = (*client)->Put({kModel, "raw", ""}, damaged);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->chunks_new, 3u);
  ExpectStored(**client, {damaged, intact});
  EXPECT_EQ(Stats(**server)["global"]["chunks_stored"],
            before["chunks_stored"]);
}

// A tmpfs of `size` at `dir`, unmounted on destruction.
class ScopedTmpfs {
 public:
  ScopedTmpfs(const std::filesystem::path& dir, const std::string& size)
      : dir_(dir) {
    std::filesystem::create_directories(dir);
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0,
                       absl::StrCat("size=", size).c_str()) == 0;
    if (!mounted_) error_ = std::strerror(errno);
  }
  ~ScopedTmpfs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  std::filesystem::path dir_;
  bool mounted_ = false;
  std::string error_;
};

// Fills a small disk with Puts until they are refused, then frees space.
// `reserve` 0 turns the server's own reserve off, so that RocksDB itself
// runs out of space (the case that used to abort the process).
void FillFreeAndRecover(const std::string& reserve) {
  ScopedTempDir temp("seqkv-full");
  const std::filesystem::path mount = temp.path() / "disk";
  ScopedTmpfs tmpfs(mount, "48m");
  if (!tmpfs.mounted())
    GTEST_SKIP() << "cannot mount a tmpfs here (" << tmpfs.error()
                 << "): the full-disk test needs one (run as root)";
  {
    std::ofstream filler(mount / "filler", std::ios::binary);
    const std::string block(1 << 20, 'f');
    for (int i = 0; i < 12; ++i) filler << block;
  }
  auto server = ServerProcess::Start(
      {absl::StrCat("--reserved_disk_bytes=", reserve)},
      (mount / "data").string());
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = (*server)->Connect();
  ASSERT_TRUE(client.ok());
  std::vector<KvCache> acknowledged;
  absl::Status refused;
  for (uint32_t i = 0; i < 200 && refused.ok(); ++i) {
    KvCache cache = Synthetic(300, 100 + i);
    auto put =
        (*client)->Put({kModel, i % 2 ? "lossless" : "raw", ""}, cache);
    if (put.ok())
      acknowledged.push_back(std::move(cache));
    else
      refused = put.status();
  }
  ASSERT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  ASSERT_GT(acknowledged.size(), 3u);
  // More refusals do not take it down; reads go on, bit-exact.
  for (uint32_t i = 0; i < 5; ++i)
    EXPECT_EQ((*client)
                  ->Put({kModel, i % 2 ? "lossless" : "raw", ""},
                        Synthetic(300, 1000 + i))
                  .status()
                  .code(),
              absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE((*server)->Alive());
  ExpectStored(**client, acknowledged);
  auto lookup = (*client)->Lookup(kModel, acknowledged[0].tokens);
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->matched_tokens, 300u);
  auto ready = (*server)->AdminGet("/readyz");
  EXPECT_FALSE(ready.ok());
  EXPECT_NE(ready.status().message().find("503: read-only"), std::string::npos)
      << ready.status();
  auto storage = Stats(**server)["storage"];
  EXPECT_EQ(storage["writable"], false);
  EXPECT_NE(storage["write_refusal"], "");

  // Space comes back: writes resume without a restart.
  std::filesystem::remove(mount / "filler");
  absl::Status put_status = absl::UnknownError("not tried");
  const KvCache after = Synthetic(300, 5000);
  for (int i = 0; i < 40 && !put_status.ok(); ++i) {
    put_status = (*client)->Put({kModel, "lossless", ""}, after).status();
    if (!put_status.ok())
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  ASSERT_TRUE(put_status.ok()) << put_status;
  acknowledged.push_back(after);
  EXPECT_TRUE((*server)->AdminGet("/readyz").ok());
  EXPECT_EQ(Stats(**server)["storage"]["writable"], true);
  ASSERT_TRUE((*server)->Alive());
  // Every acknowledged Put is still there after a restart.
  ASSERT_TRUE((*server)->Restart().ok());
  auto again = (*server)->Connect();
  ASSERT_TRUE(again.ok());
  ExpectStored(**again, acknowledged);
  EXPECT_EQ((*server)->Stop(), 0);
}

TEST(ReliabilityTest, FullDiskRefusesWritesServesReadsAndRecovers) {
  FillFreeAndRecover("4194304");
}

TEST(ReliabilityTest, RocksDbOutOfSpaceNeitherAbortsNorStopsWritesForGood) {
  FillFreeAndRecover("0");
}

TEST(ReliabilityTest, DamagedTablesStartReadOnlyAndRepairRebuilds) {
  auto server = ServerProcess::Start({"--payload_file_min_bytes=0"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = (*server)->Connect();
  ASSERT_TRUE(client.ok());
  std::vector<KvCache> caches;
  for (uint32_t i = 0; i < 6; ++i) {
    caches.push_back(Synthetic(300, 200 + i));
    ASSERT_TRUE((*client)->Put({kModel, "raw", ""}, caches.back()).ok());
  }
  ASSERT_EQ((*server)->Stop(), 0);  // flushes the memtables to tables
  const std::filesystem::path db =
      std::filesystem::path((*server)->data_dir()) / "db";
  const auto tables = FilesUnder(db, ".sst");
  ASSERT_GE(tables.size(), 3u);
  for (const auto& table : tables)
    FlipByte(table, std::filesystem::file_size(table) / 2);

  // It starts, read-only, and says why.
  ASSERT_TRUE((*server)->Restart().ok());
  client = (*server)->Connect();
  ASSERT_TRUE(client.ok());
  auto storage = Stats(**server)["storage"];
  EXPECT_EQ(storage["writable"], false);
  EXPECT_NE(storage["damage"], "") << storage;
  auto ready = (*server)->AdminGet("/readyz");
  EXPECT_FALSE(ready.ok());
  EXPECT_EQ((*client)->Put({kModel, "raw", ""}, Synthetic(300, 999))
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  // Whatever it still matches, it serves intact or not at all.
  for (const KvCache& cache : caches) {
    auto got = (*client)->Get({kModel}, cache.tokens);
    if (!got.ok()) continue;
    const size_t n = got->tokens.size();
    EXPECT_TRUE(std::equal(got->tokens.begin(), got->tokens.end(),
                           cache.tokens.begin()));
    EXPECT_TRUE(std::equal(got->k.begin(), got->k.end(), cache.k.begin()))
        << n;
  }
  ASSERT_EQ((*server)->Stop(), 0);

  // --repair rebuilds what it can, and the store takes writes again.
  const CommandResult repair = RunCommand(absl::StrCat(
      SEQKV_BIN_DIR, "/seqkv-server --repair --data_dir=", db.string()));
  EXPECT_EQ(repair.exit_code, 0) << repair.out;
  EXPECT_NE(repair.out.find("checked"), std::string::npos) << repair.out;
  ASSERT_TRUE((*server)->Restart().ok());
  client = (*server)->Connect();
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(Stats(**server)["storage"]["writable"], true);
  for (const KvCache& cache : caches) {
    auto put = (*client)->Put({kModel, "raw", ""}, cache);
    ASSERT_TRUE(put.ok()) << put.status();
  }
  ExpectStored(**client, caches);
  // Usage agrees with what is stored: 2 chunks for each cache.
  EXPECT_EQ(Stats(**server)["global"]["chunks_stored"], 2 * caches.size());
}

}  // namespace
}  // namespace seqkv::testing
