// The admin endpoint of a real seqkv-server: its counters must equal exactly
// what the test's client calls did.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/config.h"
#include "tests/admin/admin_test_util.h"
#include "tests/integration/server_process.h"

namespace seqkv::testing {
namespace {

constexpr char kModel[] = "admin-test";
constexpr uint64_t kBytesPerToken = 2 * 2 * 64 * 2;  // layers, K+V, dim, bf16

std::vector<int32_t> Concat(std::vector<int32_t> a,
                            const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<int32_t> Head(const std::vector<int32_t>& tokens, size_t n) {
  return {tokens.begin(), tokens.begin() + n};
}

class AdminApiTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer({}); }

  void StartServer(std::vector<std::string> flags) {
    auto server = ServerProcess::Start(std::move(flags));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    auto client = server_->Connect();
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
    port_ = PortOf(server_->admin_address());
  }

  PutResult Put(const std::vector<int32_t>& tokens, uint32_t seed,
                Client* client = nullptr) {
    auto result = (client ? client : client_.get())
                      ->Put({kModel, "raw", ""}, SyntheticCache(tokens, seed));
    EXPECT_TRUE(result.ok()) << result.status();
    return result.value_or(PutResult{});
  }

  uint32_t Lookup(const std::vector<int32_t>& tokens,
                  Client* client = nullptr) {
    auto result = (client ? client : client_.get())->Lookup(kModel, tokens);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->matched_tokens : 0;
  }

  nlohmann::json GetJson(const std::string& path, int expected_status = 200) {
    const HttpReply reply = HttpGet(port_, path);
    EXPECT_EQ(reply.status, expected_status) << path << ": " << reply.body;
    EXPECT_EQ(reply.content_type, "application/json") << path;
    return nlohmann::json::parse(reply.body, nullptr, false);
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Client> client_;
  int port_ = 0;
};

TEST_F(AdminApiTest, CountersEqualWhatTheClientDid) {
  // A: 600 tokens = chunks of 256, 256, 88. B shares A's first 512 tokens
  // and adds 188 of its own: 2 chunks deduped, 1 new.
  const std::vector<int32_t> a = RandomTokens(600, 1);
  const std::vector<int32_t> b = Concat(Head(a, 512), RandomTokens(188, 2));
  const PutResult put_a = Put(a, 10);
  const PutResult put_b = Put(b, 11);
  EXPECT_EQ(put_a.chunks_new, 3u);
  EXPECT_EQ(put_b.chunks_deduped, 2u);
  EXPECT_EQ(put_b.chunks_new, 1u);

  // Lookups: all of A, all of B, nothing, and 300 of 350 tokens.
  const std::vector<int32_t> unrelated = RandomTokens(100, 3);
  const std::vector<int32_t> partial =
      Concat(Head(a, 300), RandomTokens(50, 4));
  EXPECT_EQ(Lookup(a), 600u);
  EXPECT_EQ(Lookup(b), 700u);
  EXPECT_EQ(Lookup(unrelated), 0u);
  EXPECT_EQ(Lookup(partial), 300u);
  GetOptions get;
  get.model = kModel;
  auto got = client_->Get(get, a);
  ASSERT_TRUE(got.ok()) << got.status();

  const nlohmann::json stats = GetJson("/v1/stats");
  for (const char* scope : {"global", "default"}) {
    SCOPED_TRACE(scope);
    const nlohmann::json& s = std::string(scope) == "global"
                                  ? stats["global"]
                                  : stats["tenants"]["default"];
    EXPECT_EQ(s["puts"], 2);
    EXPECT_EQ(s["put_tokens"], 1300);
    EXPECT_EQ(s["lookups"], 4);
    EXPECT_EQ(s["lookup_tokens"], 600 + 700 + 100 + 350);
    EXPECT_EQ(s["hit_tokens"], 600 + 700 + 0 + 300);
    EXPECT_DOUBLE_EQ(s["hit_rate"].get<double>(), 1600.0 / 1750.0);
    EXPECT_EQ(s["gets"], 1);
    EXPECT_EQ(s["get_tokens"], 600);
    EXPECT_EQ(s["chunks_stored"], 4);
    EXPECT_EQ(s["chunks_deduped"], 2);
    EXPECT_EQ(s["bytes_logical"], (600 + 188) * kBytesPerToken);
    EXPECT_EQ(s["put_bytes_logical"], 1300 * kBytesPerToken);
    EXPECT_EQ(s["bytes_stored"], put_a.bytes_stored + put_b.bytes_stored);
    EXPECT_DOUBLE_EQ(s["dedup_ratio"].get<double>(), 1300.0 / 788.0);
    EXPECT_DOUBLE_EQ(
        s["compression_ratio"].get<double>(),
        (788.0 * kBytesPerToken) / (put_a.bytes_stored + put_b.bytes_stored));
    EXPECT_EQ(s["evictions"], 0);
    // The model record the first Put stored counts too.
    EXPECT_GT(s["model_bytes"].get<int64_t>(), 0);
    EXPECT_EQ(
        s["usage_bytes"].get<int64_t>(),
        s["bytes_stored"].get<int64_t>() + s["model_bytes"].get<int64_t>());
  }
  EXPECT_EQ(stats["tenants"]["default"]["quota_bytes"], 0);
  EXPECT_EQ(stats["global"]["capacity_bytes"], 0);
  EXPECT_EQ(stats["tenants"].size(), 1u);

  // /v1/tenants/default is the same object, named.
  nlohmann::json tenant = GetJson("/v1/tenants/default");
  EXPECT_EQ(tenant["tenant"], "default");
  tenant.erase("tenant");
  EXPECT_EQ(tenant, stats["tenants"]["default"]);

  // Prometheus text carries the same counters, labelled by tenant.
  const HttpReply metrics = HttpGet(port_, "/metrics");
  ASSERT_EQ(metrics.status, 200);
  for (const std::string line :
       {"seqkv_puts_total{tenant=\"default\"} 2",
        "seqkv_lookups_total{tenant=\"default\"} 4",
        "seqkv_hit_tokens_total{tenant=\"default\"} 1600",
        "seqkv_chunks_stored{tenant=\"default\"} 4",
        "seqkv_chunks_deduped_total{tenant=\"default\"} 2",
        "seqkv_quota_bytes{tenant=\"default\"} 0", "seqkv_ready 1"})
    EXPECT_NE(metrics.body.find(line + "\n"), std::string::npos) << line;
}

TEST_F(AdminApiTest, UnknownTenantIsA404WithAJsonError) {
  const nlohmann::json error = GetJson("/v1/tenants/nobody", 404);
  EXPECT_EQ(error["error"], "unknown tenant 'nobody'");
  // Asking must not create it.
  EXPECT_FALSE(GetJson("/v1/stats")["tenants"].contains("nobody"));
  EXPECT_EQ(GetJson("/v1/trie?tenant=nobody", 404)["error"],
            "unknown tenant 'nobody'");
  EXPECT_TRUE(GetJson("/v1/no-such-route", 404).contains("error"));
}

TEST_F(AdminApiTest, TrieListsPrefixesByVisits) {
  // A: chunks A0 A1 A2 (600 tokens); B shares A0 and adds B1 (256 tokens).
  const std::vector<int32_t> a = RandomTokens(600, 5);
  const std::vector<int32_t> b = Concat(Head(a, 256), RandomTokens(256, 6));
  Put(a, 20);
  Put(b, 21);
  EXPECT_TRUE(GetJson("/v1/trie")["prefixes"].empty());  // nothing looked up
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Lookup(a), 600u);
  EXPECT_EQ(Lookup(b), 512u);
  EXPECT_EQ(Lookup(Head(a, 100)), 100u);
  // Visits: A0 = 3 + 1 + 1, A1 = A2 = 3, B1 = 1.

  const nlohmann::json trie = GetJson("/v1/trie?top=10");
  const nlohmann::json& p = trie["prefixes"];
  ASSERT_EQ(p.size(), 4u) << trie.dump(2);
  EXPECT_EQ(trie["nodes_scanned"], 4);
  EXPECT_EQ(p[0]["visits"], 5);
  EXPECT_EQ(p[0]["depth"], 0);
  EXPECT_EQ(p[0]["prefix_tokens"], 256);
  EXPECT_EQ(p[0]["tokens"], 256);
  EXPECT_EQ(p[0]["first_tokens"],
            nlohmann::json(std::vector<int32_t>(a.begin(), a.begin() + 8)));
  EXPECT_EQ(p[0]["namespace"], "default");
  EXPECT_EQ(p[0]["model"], kModel);
  EXPECT_EQ(p[0]["codec"], "raw");
  EXPECT_EQ(p[0]["bytes_logical"], 256 * kBytesPerToken);
  EXPECT_EQ(p[1]["visits"], 3);
  EXPECT_EQ(p[2]["visits"], 3);
  EXPECT_EQ((std::set<int>{p[1]["depth"], p[2]["depth"]}),
            (std::set<int>{1, 2}));
  EXPECT_EQ((std::set<int>{p[1]["prefix_tokens"], p[2]["prefix_tokens"]}),
            (std::set<int>{512, 600}));
  EXPECT_EQ(p[3]["visits"], 1);
  EXPECT_EQ(p[3]["depth"], 1);
  EXPECT_EQ(p[3]["first_tokens"][0], b[256]);
  EXPECT_EQ(p[3]["parent"], p[0]["node"]);
  // A0 was the last node visited.
  EXPECT_GE(p[0]["last_used_unix_ms"].get<int64_t>(),
            p[3]["last_used_unix_ms"].get<int64_t>());

  // top=N keeps the first N; the tenant filter keeps them all here.
  const nlohmann::json top2 = GetJson("/v1/trie?top=2&tenant=default");
  ASSERT_EQ(top2["prefixes"].size(), 2u);
  EXPECT_EQ(top2["prefixes"][0], p[0]);
  EXPECT_EQ(top2["prefixes"][1], p[1]);
  EXPECT_EQ(top2["tenant"], "default");
  EXPECT_EQ(GetJson("/v1/trie?top=1000")["prefixes"], p);

  for (const char* bad : {"0", "1001", "abc", "-1"}) {
    const nlohmann::json error =
        GetJson(absl::StrCat("/v1/trie?top=", bad), 400);
    EXPECT_EQ(
        error["error"],
        absl::StrCat("top must be an integer in [1, 1000], got '", bad, "'"));
  }
}

TEST_F(AdminApiTest, TrieProbabilitiesAndDistances) {
  // Three lookups in four pass through A's first chunk, one through B's.
  const std::vector<int32_t> a = RandomTokens(256, 31);
  const std::vector<int32_t> b = RandomTokens(256, 32);
  Put(a, 1);
  Put(b, 2);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Lookup(a), 256u);
  EXPECT_EQ(Lookup(b), 256u);
  const nlohmann::json trie = GetJson("/v1/trie?tenant=default");
  ASSERT_EQ(trie["prefixes"].size(), 2u) << trie.dump();
  // The Put counts as one pass too: 4 of 4 lookups for A (1 + 3), 2 for B,
  // barely decayed over 4 lookups.
  const nlohmann::json& top = trie["prefixes"][0];
  EXPECT_NEAR(top["probability"].get<double>(), 1.0, 0.01) << top.dump();
  EXPECT_NEAR(top["d_T"].get<double>(), 0.0, 0.02);
  const nlohmann::json& second = trie["prefixes"][1];
  EXPECT_NEAR(second["probability"].get<double>(), 0.5, 0.01);
  EXPECT_NEAR(second["d_T"].get<double>(), 1.0, 0.03);
  // The Lookup reports P̂ of the deepest chunk it matched.
  auto looked = client_->Lookup(kModel, b);
  ASSERT_TRUE(looked.ok());
  EXPECT_NEAR(looked->probability, 0.5, 0.15);
  EXPECT_EQ(client_->Lookup(kModel, RandomTokens(10, 33))->probability, 0);

  // d_T of two sequences: -log2 P̂ of their longest common stored prefix.
  auto ids = [](const std::vector<int32_t>& tokens) {
    std::string text;
    for (int32_t token : tokens)
      absl::StrAppend(&text, text.empty() ? "" : ",", token);
    return text;
  };
  const std::vector<int32_t> b_longer = Concat(b, RandomTokens(20, 34));
  const nlohmann::json same_prefix = GetJson(absl::StrCat(
      "/v1/trie/distance?tenant=default&model=", kModel, "&a=", ids(b_longer),
      "&b=", ids(Concat(b, RandomTokens(20, 35)))));
  EXPECT_EQ(same_prefix["stored_tokens"], 256);
  EXPECT_NEAR(same_prefix["d_T"].get<double>(), 1.0, 0.3) << same_prefix.dump();
  const nlohmann::json apart =
      GetJson(absl::StrCat("/v1/trie/distance?tenant=default&model=", kModel,
                           "&a=", ids(a), "&b=", ids(b)));
  EXPECT_EQ(apart["common_tokens"], 0);
  EXPECT_EQ(apart["d_T"], 0.0);
  GetJson(absl::StrCat("/v1/trie/distance?tenant=default&model=", kModel,
                       "&a=1,x&b=2"),
          400);
  GetJson("/v1/trie/distance?tenant=default&model=nope&a=1&b=1", 404);
  const nlohmann::json stats = GetJson("/v1/stats");
  EXPECT_EQ(stats["retention"]["policy"], "plt");
  EXPECT_EQ(stats["retention"]["namespaces"]["default"]["lookups"], 6);
}

TEST_F(AdminApiTest, HistorySamplesAreKept) {
  const nlohmann::json history = GetJson("/v1/history");
  EXPECT_EQ(history["capacity"], 720);
  ASSERT_GE(history["samples"].size(), 1u);  // one taken at start
  const nlohmann::json& first = history["samples"][0];
  EXPECT_GT(first["t"].get<int64_t>(), 0);
  EXPECT_TRUE(first["global"].contains("hit_rate"));
  // since= filters by time.
  EXPECT_TRUE(GetJson(absl::StrCat("/v1/history?since=",
                                   first["t"].get<int64_t>()))["samples"]
                  .size() < history["samples"].size());
  EXPECT_EQ(GetJson("/v1/history?since=x", 400)["error"],
            "since must be unix milliseconds, got 'x'");
}

TEST_F(AdminApiTest, TenantsAreCountedApartWithTheirQuotas) {
  // A server with two tenants; acme has a quota.
  const std::string config =
      (std::filesystem::temp_directory_path() /
       ("seqkv-admin-tenants-" + std::to_string(getpid()) + ".yaml"))
          .string();
  std::ofstream(config) << "tenants:\n"
                        << "  - name: acme\n    api_key_sha256: [\""
                        << Sha256Hex("acme-key")
                        << "\"]\n    quota_bytes: 10000000\n"
                        << "  - name: globex\n    api_key_sha256: [\""
                        << Sha256Hex("globex-key") << "\"]\n";
  server_.reset();
  StartServer({"--config=" + config});
  std::filesystem::remove(config);
  auto acme = server_->Connect("acme-key");
  auto globex = server_->Connect("globex-key");
  ASSERT_TRUE(acme.ok() && globex.ok());

  // The same tokens in both: namespaces never share chunks.
  const std::vector<int32_t> tokens = RandomTokens(600, 30);
  const PutResult acme_put = Put(tokens, 31, acme->get());
  const PutResult globex_put = Put(tokens, 32, globex->get());
  EXPECT_EQ(globex_put.chunks_deduped, 0u);
  EXPECT_EQ(Lookup(tokens, acme->get()), 600u);
  EXPECT_EQ(Lookup(tokens, acme->get()), 600u);
  EXPECT_EQ(Lookup(RandomTokens(40, 33), globex->get()), 0u);

  const nlohmann::json stats = GetJson("/v1/stats");
  const nlohmann::json& a = stats["tenants"]["acme"];
  const nlohmann::json& g = stats["tenants"]["globex"];
  EXPECT_EQ(a["puts"], 1);
  EXPECT_EQ(a["lookups"], 2);
  EXPECT_EQ(a["hit_tokens"], 1200);
  EXPECT_EQ(a["chunks_stored"], 3);
  EXPECT_EQ(a["quota_bytes"], 10000000);
  EXPECT_EQ(a["usage_bytes"],
            acme_put.bytes_stored + a["model_bytes"].get<uint64_t>());
  EXPECT_EQ(g["puts"], 1);
  EXPECT_EQ(g["lookups"], 1);
  EXPECT_EQ(g["lookup_tokens"], 40);
  EXPECT_EQ(g["hit_tokens"], 0);
  EXPECT_EQ(g["quota_bytes"], 0);
  EXPECT_EQ(g["usage_bytes"],
            globex_put.bytes_stored + g["model_bytes"].get<uint64_t>());
  EXPECT_EQ(stats["global"]["lookups"], 3);
  EXPECT_EQ(stats["global"]["chunks_stored"], 6);
  EXPECT_EQ(stats["global"]["bytes_stored"],
            acme_put.bytes_stored + globex_put.bytes_stored);
  EXPECT_EQ(GetJson("/v1/tenants/acme")["quota_bytes"], 10000000);

  // The trie report filters by tenant.
  const nlohmann::json acme_trie = GetJson("/v1/trie?tenant=acme");
  ASSERT_EQ(acme_trie["prefixes"].size(), 3u);
  for (const auto& prefix : acme_trie["prefixes"]) {
    EXPECT_EQ(prefix["namespace"], "acme");
    EXPECT_EQ(prefix["visits"], 2);
  }
  EXPECT_TRUE(GetJson("/v1/trie?tenant=globex")["prefixes"].empty());

  const HttpReply metrics = HttpGet(port_, "/metrics");
  EXPECT_NE(metrics.body.find("seqkv_quota_bytes{tenant=\"acme\"} 10000000\n"),
            std::string::npos);
  EXPECT_NE(metrics.body.find("seqkv_lookups_total{tenant=\"globex\"} 1\n"),
            std::string::npos);
}

TEST_F(AdminApiTest, HistoryHitRatePerInterval) {
  server_.reset();
  StartServer({"--admin_history_interval=100ms"});
  const std::vector<int32_t> a = RandomTokens(600, 40);
  Put(a, 41);
  // One lookup: 300 of its 350 tokens are stored. Its interval's hit rate is
  // exactly that, and intervals without lookups have none.
  EXPECT_EQ(Lookup(Concat(Head(a, 300), RandomTokens(50, 42))), 300u);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  const nlohmann::json samples = GetJson("/v1/history")["samples"];
  ASSERT_GE(samples.size(), 4u);
  int with_lookups = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const nlohmann::json& point = samples[i]["global"];
    if (i > 0) {
      EXPECT_GT(samples[i]["t"], samples[i - 1]["t"]);
    }
    if (point["interval_hit_rate"].is_null()) continue;
    ++with_lookups;
    EXPECT_DOUBLE_EQ(point["interval_hit_rate"].get<double>(), 300.0 / 350.0);
    EXPECT_DOUBLE_EQ(
        samples[i]["tenants"]["default"]["interval_hit_rate"].get<double>(),
        300.0 / 350.0);
  }
  EXPECT_EQ(with_lookups, 1);
  EXPECT_DOUBLE_EQ(samples.back()["global"]["hit_rate"].get<double>(),
                   300.0 / 350.0);
  EXPECT_EQ(samples.back()["tenants"]["default"]["puts"], 1);
}

TEST_F(AdminApiTest, MemoryIsReportedAndGivenBackWhenIdle) {
  StartServer({"--idle_release_after=2s"});
  // Idle since the start: released once, nothing held.
  std::vector<int32_t> tokens(300);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = 7000 + i;
  auto memory = [&] { return GetJson("/v1/stats")["memory"]; };
  auto wait_for_release = [&](uint64_t count) {
    for (int i = 0; i < 100 && memory()["idle_releases"] < count; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return memory();
  };
  nlohmann::json before = wait_for_release(1);
  EXPECT_GT(before["resident_bytes"].get<uint64_t>(), 1u << 20);
  ASSERT_GE(before["idle_releases"].get<uint64_t>(), 1u) << before.dump();
  EXPECT_EQ(before["chunk_buffers_idle_bytes"], 0);

  // A Put keeps its chunk buffers (a 256-token chunk and the 44-token rest)
  // for the next one, until the server has been idle for two seconds.
  Put(tokens, 50);
  const nlohmann::json busy = memory();
  const uint64_t releases = busy["idle_releases"].get<uint64_t>();
  EXPECT_EQ(busy["chunk_buffers_idle_bytes"].get<uint64_t>(),
            tokens.size() * kBytesPerToken)
      << busy.dump();
  const nlohmann::json after = wait_for_release(releases + 1);
  EXPECT_EQ(after["idle_releases"].get<uint64_t>(), releases + 1);
  EXPECT_EQ(after["chunk_buffers_idle_bytes"], 0);

  const HttpReply metrics = HttpGet(port_, "/metrics");
  for (const char* name :
       {"seqkv_resident_bytes ", "seqkv_chunk_buffers_idle_bytes 0\n",
        "seqkv_idle_releases_total "})
    EXPECT_NE(metrics.body.find(name), std::string::npos) << name;
}

TEST_F(AdminApiTest, HealthAndReadiness) {
  EXPECT_EQ(HttpGet(port_, "/healthz").body, "ok\n");
  EXPECT_EQ(HttpGet(port_, "/readyz").status, 200);
}

}  // namespace
}  // namespace seqkv::testing
