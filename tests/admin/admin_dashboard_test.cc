// The dashboard in a real browser: headless Chromium loads the page from a
// running server, runs its scripts, and the numbers it shows must be those
// of /v1/stats. Also saves a screenshot into the build directory.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/admin_server.h"
#include "server/cache_engine.h"
#include "server/config.h"
#include "server/dashboard/admin_auth.h"
#include "storage/kv_store.h"
#include "tests/admin/admin_test_util.h"
#include "tests/integration/server_process.h"
#include "tests/test_data.h"

namespace seqkv::testing {
namespace {

constexpr char kModel[] = "kvlm-23m";

// The browser from Debian's chromium package. Missing is a failure, not a
// skip: scripts/setup installs it.
std::string Chromium() {
  const CommandResult found = RunCommand("command -v chromium");
  std::string path = found.out.substr(0, found.out.find('\n'));
  return found.exit_code == 0 ? path : "";
}

struct Element {
  bool found = false;
  std::string text;
  std::string value;  // data-value
};

// The element with id="id" in serialized DOM: its data-value and the text
// up to its first child tag.
Element FindElement(const std::string& dom, const std::string& id) {
  Element element;
  const size_t at = dom.find(absl::StrCat(" id=\"", id, "\""));
  if (at == std::string::npos) return element;
  const size_t open = dom.rfind('<', at);
  const size_t close = dom.find('>', at);
  if (open == std::string::npos || close == std::string::npos) return element;
  const std::string tag = dom.substr(open, close - open);
  std::smatch match;
  if (std::regex_search(tag, match, std::regex(" data-value=\"([^\"]*)\"")))
    element.value = match[1];
  element.text = dom.substr(close + 1, dom.find('<', close) - close - 1);
  element.found = true;
  return element;
}

class DashboardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    chromium_ = Chromium();
    ASSERT_FALSE(chromium_.empty())
        << "chromium is not installed: run scripts/setup (package chromium)";
    auto server = ServerProcess::Start({"--admin_history_interval=200ms"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    auto client = server_->Connect();
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
    port_ = PortOf(server_->admin_address());
    std::string pattern =
        (std::filesystem::temp_directory_path() / "seqkv-chromium-XXXXXX")
            .string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    profile_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    if (!profile_.empty()) std::filesystem::remove_all(profile_, ignored);
  }

  // Runs headless Chromium on the dashboard with `mode` (--dump-dom and/or
  // --screenshot=FILE); returns its stdout.
  std::string Browse(const std::string& mode) {
    const std::string command = absl::StrCat(
        "timeout 90 ", chromium_,
        " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage"
        " --disable-background-networking --disable-component-update"
        " --disable-sync --no-first-run --no-default-browser-check"
        " --hide-scrollbars --window-size=1280,900"
        " --virtual-time-budget=5000 --user-data-dir=",
        profile_, " ", mode, " http://127.0.0.1:", port_, "/ 2>", profile_,
        "/stderr.txt");
    const CommandResult result = RunCommand(command);
    std::ifstream err(profile_ + "/stderr.txt");
    std::string stderr_text((std::istreambuf_iterator<char>(err)),
                            std::istreambuf_iterator<char>());
    EXPECT_EQ(result.exit_code, 0) << command << "\n" << stderr_text;
    return result.out;
  }

  void Traffic() {
    // Real caches: two RAG prompts sharing their first document, a chat.
    std::vector<KvCache> caches;
    for (const char* name :
         {"b_rag_00_D1_D2", "b_rag_02_D1_D3", "c_chat_turn1", "c_chat_turn2"}) {
      auto cache =
          ReadKvCacheFile(DataPath(absl::StrCat("kv/", name, ".safetensors")));
      ASSERT_TRUE(cache.ok()) << cache.status();
      cache->layout.rope = {RopeStyle::kRotateHalf, 10000.0, 0};
      caches.push_back(std::move(*cache));
    }
    // Spread over a few history samples so the charts have a course.
    for (size_t i = 0; i < caches.size(); ++i) {
      ASSERT_TRUE(client_->Put({kModel, "lossless", ""}, caches[i]).ok());
      for (size_t j = 0; j <= i; ++j)
        ASSERT_TRUE(client_->Lookup(kModel, caches[j].tokens).ok());
      if (i + 1 < caches.size()) {
        ASSERT_TRUE(client_->Lookup(kModel, caches[i + 1].tokens).ok());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }

  std::string chromium_;
  std::string profile_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Client> client_;
  int port_ = 0;
};

void ExpectValue(const std::string& dom, const std::string& id,
                 const nlohmann::json& expected) {
  SCOPED_TRACE(id);
  const Element element = FindElement(dom, id);
  ASSERT_TRUE(element.found);
  double shown = 0;
  ASSERT_TRUE(absl::SimpleAtod(element.value, &shown)) << element.value;
  EXPECT_DOUBLE_EQ(shown, expected.get<double>());
  EXPECT_FALSE(element.text.empty());
}

void ExpectCount(const std::string& dom, const std::string& id,
                 const nlohmann::json& expected) {
  ExpectValue(dom, id, expected);
  const std::string text =
      absl::StrReplaceAll(FindElement(dom, id).text, {{",", ""}});
  EXPECT_EQ(text, absl::StrCat(expected.get<uint64_t>())) << id;
}

void ExpectPercent(const std::string& dom, const std::string& id,
                   const nlohmann::json& expected) {
  ExpectValue(dom, id, expected);
  std::string text = FindElement(dom, id).text;
  ASSERT_FALSE(text.empty());
  ASSERT_EQ(text.back(), '%') << text;
  double percent = 0;
  ASSERT_TRUE(absl::SimpleAtod(text.substr(0, text.size() - 1), &percent));
  EXPECT_NEAR(percent, 100 * expected.get<double>(), 0.05 + 1e-9) << text;
}

TEST_F(DashboardTest, ShowsTheNumbersOfTheStatsEndpoint) {
  SEQKV_NEEDS_TEST_DATA(
      "kv/b_rag_00_D1_D2.safetensors", "kv/b_rag_02_D1_D3.safetensors",
      "kv/c_chat_turn1.safetensors", "kv/c_chat_turn2.safetensors");
  Traffic();
  if (HasFatalFailure()) return;
  auto body = server_->AdminGet("/v1/stats");
  ASSERT_TRUE(body.ok()) << body.status();
  const nlohmann::json stats = nlohmann::json::parse(*body);
  auto trie = server_->AdminGet("/v1/trie?top=15");
  ASSERT_TRUE(trie.ok()) << trie.status();
  const nlohmann::json prefixes = nlohmann::json::parse(*trie)["prefixes"];
  ASSERT_GT(stats["global"]["hit_tokens"].get<uint64_t>(), 0u);
  ASSERT_GT(stats["global"]["chunks_deduped"].get<uint64_t>(), 0u);

  // One browser run dumps the DOM and takes the screenshot.
  const std::string png =
      absl::StrCat(SEQKV_ARTIFACT_DIR, "/admin-dashboard.png");
  std::filesystem::remove(png);
  const std::string dom = Browse(absl::StrCat("--dump-dom --screenshot=", png));
  ASSERT_NE(dom.find("data-loaded=\"true\""), std::string::npos)
      << "the page's scripts did not finish a refresh:\n"
      << dom;
  EXPECT_EQ(FindElement(dom, "error").text, "");

  const nlohmann::json& g = stats["global"];
  ExpectPercent(dom, "global-hit-rate", g["hit_rate"]);
  ExpectValue(dom, "global-dedup-ratio", g["dedup_ratio"]);
  ExpectValue(dom, "global-compression-ratio", g["compression_ratio"]);
  ExpectValue(dom, "global-bytes-stored", g["bytes_stored"]);
  for (const char* field : {"chunks_stored", "lookups", "puts", "evictions"})
    ExpectCount(
        dom, absl::StrCat("global-", absl::StrReplaceAll(field, {{"_", "-"}})),
        g[field]);

  // A live gauge: it moved between the two reads, but it is there.
  const Element resident = FindElement(dom, "memory-resident-bytes");
  double resident_bytes = 0;
  EXPECT_TRUE(absl::SimpleAtod(resident.value, &resident_bytes))
      << resident.value;
  EXPECT_GT(resident_bytes, 0) << resident.text;

  const nlohmann::json& t = stats["tenants"]["default"];
  ExpectPercent(dom, "tenant-default-hit-rate", t["hit_rate"]);
  for (const char* field :
       {"lookups", "puts", "chunks_stored", "chunks_deduped", "evictions"})
    ExpectCount(dom,
                absl::StrCat("tenant-default-",
                             absl::StrReplaceAll(field, {{"_", "-"}})),
                t[field]);
  for (const char* field : {"bytes_logical", "bytes_stored", "dedup_ratio",
                            "compression_ratio", "usage_bytes", "quota_bytes"})
    ExpectValue(dom,
                absl::StrCat("tenant-default-",
                             absl::StrReplaceAll(field, {{"_", "-"}})),
                t[field]);

  // The top prefixes table, in the order of /v1/trie.
  ASSERT_FALSE(prefixes.empty());
  for (size_t i = 0; i < prefixes.size(); ++i) {
    const std::string rank = absl::StrCat("prefix-", i + 1);
    ExpectCount(dom, rank + "-visits", prefixes[i]["visits"]);
    ExpectValue(dom, rank + "-prefix-tokens", prefixes[i]["prefix_tokens"]);
  }
  EXPECT_FALSE(
      FindElement(dom, absl::StrCat("prefix-", prefixes.size() + 1)).found);
  // The trie view holds the same nodes, each folded under its parent.
  EXPECT_NE(dom.find(absl::StrCat("data-nodes=\"", prefixes.size(), "\"")),
            std::string::npos);
  for (const nlohmann::json& prefix : prefixes)
    EXPECT_TRUE(FindElement(dom, absl::StrCat("trie-node-",
                                              prefix["node"].get<std::string>()))
                    .found)
        << prefix.dump();

  // The history ring fed the charts with the samples taken during traffic.
  std::smatch samples;
  ASSERT_TRUE(
      std::regex_search(dom, samples, std::regex("data-samples=\"(\\d+)\"")));
  EXPECT_GE(std::stoi(samples[1]), 5);

  std::ifstream in(png, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 20000u) << png;
  EXPECT_EQ(bytes.substr(0, 8), "\x89PNG\r\n\x1a\n");
  std::cout << "dashboard screenshot: " << png << "\n";
}

TEST_F(DashboardTest, AsksForTheTokenWhenTheEndpointNeedsOne) {
  // An admin server of its own (in this process) whose data routes need a
  // token the browser does not have: the page must ask for it and show no
  // numbers.
  KvStoreOptions options;
  options.path = profile_ + "/db";
  options.sync_commits = false;
  auto store = KvStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status();
  CacheEngine engine(store->get(), EngineOptions{});
  ASSERT_TRUE(engine.Start().ok());
  AdminServer admin(&engine, AdminServerOptions{});
  ASSERT_TRUE(admin.Start("127.0.0.1:0", Sha256Hex("s3cret")).ok());
  admin.SetReady(true);
  port_ = admin.port();
  const std::string dom = Browse("--dump-dom");
  EXPECT_EQ(dom.find("data-loaded="), std::string::npos);
  const size_t form = dom.find("<form id=\"token-form\"");
  ASSERT_NE(form, std::string::npos) << dom;
  EXPECT_EQ(dom.substr(form, dom.find('>', form) - form).find("hidden"),
            std::string::npos)
      << "the token form is still hidden";
  EXPECT_EQ(FindElement(dom, "global-lookups").text, "–");
  EXPECT_EQ(FindElement(dom, "server-state").text, "ready");
}

// Until its first fetch lands the page says it is loading, not that the
// store is empty; a store far below its tenant's quota still fills the
// stored-bytes chart (its axis follows the data, not the quota).
TEST_F(DashboardTest, LoadsFirstThenScalesStoredBytesToTheData) {
  const HttpReply page = HttpGet(port_, "/");
  ASSERT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("loading…"), std::string::npos);
  EXPECT_EQ(page.body.find("no tenant has stored"), std::string::npos);
  std::string dom = Browse("--dump-dom");
  ASSERT_NE(dom.find("data-loaded=\"true\""), std::string::npos) << dom;
  EXPECT_NE(dom.find("no tenant has stored or looked up anything yet"),
            std::string::npos);
  EXPECT_EQ(dom.find("loading…"), std::string::npos);

  const std::string config = profile_ + "/seqkv.yaml";
  std::ofstream(config) << "tenants:\n  - name: acme\n    api_key_sha256: [\""
                        << Sha256Hex("acme-key")
                        << "\"]\n    quota_bytes: 10000000000\n";
  auto server = ServerProcess::Start(
      {"--config=" + config, "--admin_history_interval=200ms"});
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = std::move(*server);
  port_ = PortOf(server_->admin_address());
  auto client = server_->Connect("acme-key");
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE(
      (*client)
          ->Put({kModel, "raw", ""}, SyntheticCache(RandomTokens(300, 7), 8))
          .ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  auto body = server_->AdminGet("/v1/tenants/acme");
  ASSERT_TRUE(body.ok()) << body.status();
  const double usage =
      nlohmann::json::parse(*body)["usage_bytes"].get<double>();
  ASSERT_GT(usage, 0);

  dom = Browse("--dump-dom");
  std::smatch top;
  ASSERT_TRUE(std::regex_search(
      dom, top,
      std::regex("id=\"chart-usage-bytes\"[^>]*data-y-max=\"([0-9.e+]+)\"")))
      << dom;
  const double y_max = std::stod(top[1]);
  EXPECT_GE(y_max, usage);
  EXPECT_LE(y_max, 2.5 * usage) << "the axis is not scaled to the data";
}

}  // namespace
}  // namespace seqkv::testing
