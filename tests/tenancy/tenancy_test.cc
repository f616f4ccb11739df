// Multi-tenancy against a real server: identity, isolation, shared
// namespaces, TLS and mTLS, quotas and rate limits.
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "codec/model_state.h"
#include "gtest/gtest.h"
#include "model/model_state_builder.h"
#include "nlohmann/json.hpp"
#include "server/config.h"
#include "tests/integration/server_process.h"
#include "tests/test_certificates.h"
#include "tests/test_data.h"

namespace seqkv::testing {
namespace {

constexpr char kModel[] = "kvlm-23m";

KvCache Load(const std::string& name) {
  auto cache = ReadKvCacheFile(DataPath("kv/" + name + ".safetensors"));
  EXPECT_TRUE(cache.ok()) << cache.status();
  cache->layout.rope = {RopeStyle::kRotateHalf, 10000.0, 0};
  return std::move(*cache);
}

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "seqkv-tenancy-XXXXXX")
            .string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

std::string TenantsYaml(bool with_globex_key = true,
                        const std::string& extra = "") {
  std::string yaml = "tenants:\n";
  yaml += "  - name: acme\n    api_key_sha256: [\"" + Sha256Hex("acme-key") +
          "\"]\n    client_cert_subjects: [\"CN=acme-worker\"]\n";
  yaml += "  - name: globex\n    api_key_sha256: [\"" +
          Sha256Hex(with_globex_key ? "globex-key" : "globex-new-key") +
          "\"]\n";
  yaml += "  - name: initech\n    api_key_sha256: [\"" +
          Sha256Hex("initech-key") +
          "\"]\n    quota_bytes: 2000000\n    on_quota: reject\n";
  yaml += "  - name: hooli\n    api_key_sha256: [\"" + Sha256Hex("hooli-key") +
          "\"]\n    quota_bytes: 2500000\n    on_quota: evict\n";
  yaml += "  - name: slowco\n    api_key_sha256: [\"" + Sha256Hex("slow-key") +
          "\"]\n    rate_limit_rps: 0.5\n    rate_limit_burst: 2\n";
  yaml += "  - name: smallco\n    api_key_sha256: [\"" +
          Sha256Hex("small-key") +
          "\"]\n    quota_bytes: 20000\n    on_quota: evict\n";
  // acme's kvlm-23m is the one globex reads (in system-prompts) and uses.
  yaml +=
      "shared_models:\n  - name: kvlm-23m\n    owner: acme\n"
      "    readers: [globex]\n";
  yaml +=
      "shared_namespaces:\n  - name: system-prompts\n"
      "    readers: [acme, globex]\n    writers: [acme]\n";
  return yaml + extra;
}

class TenancyTest : public ::testing::Test {
 protected:
  void StartServer(const std::string& yaml,
                   std::vector<std::string> flags = {}) {
    config_ = dir_.file("seqkv.yaml");
    WriteFile(config_, yaml);
    flags.push_back("--config=" + config_);
    auto server = ServerProcess::Start(flags);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  std::unique_ptr<Client> As(const std::string& key) {
    auto client = server_->Connect(key);
    EXPECT_TRUE(client.ok());
    return std::move(*client);
  }

  TempDir dir_;
  std::string config_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(TenancyTest, TenantsSeeOnlyTheirOwnData) {
  SEQKV_NEEDS_TEST_DATA("kv/c_chat_turn2.safetensors");
  StartServer(TenantsYaml());
  const KvCache cache = Load("c_chat_turn2");
  auto acme = As("acme-key");
  auto globex = As("globex-key");
  auto put = acme->Put({kModel, "lossless", ""}, cache);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(acme->Lookup(kModel, cache.tokens)->matched_tokens,
            cache.tokens.size());
  // Same prompt, other tenant: a miss, and Get returns nothing.
  EXPECT_EQ(globex->Lookup(kModel, cache.tokens)->matched_tokens, 0u);
  auto got = globex->Get({kModel}, cache.tokens);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->tokens.empty());
  // Naming the other tenant's namespace is refused, stored or not.
  EXPECT_EQ(globex->Lookup(kModel, cache.tokens, 0, "acme").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(globex->Lookup(kModel, std::vector<int32_t>{1, 2}, 0, "acme")
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  GetOptions other{kModel, "acme"};
  EXPECT_EQ(globex->Get(other, cache.tokens).status().code(),
            absl::StatusCode::kPermissionDenied);
  // Its own Put of the same cache is stored again, not deduplicated across.
  auto globex_put = globex->Put({kModel, "lossless", ""}, cache);
  ASSERT_TRUE(globex_put.ok());
  EXPECT_EQ(globex_put->chunks_deduped, 0u);
  EXPECT_EQ(globex_put->chunks_new, put->chunks_new);
  // Deleting in another tenant's namespace is refused.
  EXPECT_EQ(globex->Delete(kModel, {}, "acme").status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(TenancyTest, SharedNamespaceServesItsReadersOnly) {
  SEQKV_NEEDS_TEST_DATA("kv/c_chat_turn1.safetensors");
  StartServer(TenantsYaml());
  const KvCache prompt = Load("c_chat_turn1");
  auto acme = As("acme-key");
  auto globex = As("globex-key");
  auto initech = As("initech-key");
  ASSERT_TRUE(acme->Put({kModel, "raw", "system-prompts"}, prompt).ok());
  // A reader's plain lookup falls back to the shared namespace.
  auto hit = globex->Lookup(kModel, prompt.tokens);
  ASSERT_TRUE(hit.ok());
  EXPECT_EQ(hit->matched_tokens, prompt.tokens.size());
  EXPECT_EQ(hit->name_space, "system-prompts");
  auto got = globex->Get({kModel}, prompt.tokens);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->k == prompt.k && got->v == prompt.v);
  // Not a reader: no fallback (not even acme's model, which is shared with
  // globex alone), and no explicit access.
  EXPECT_EQ(initech->Lookup(kModel, prompt.tokens).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(initech->Lookup(kModel, prompt.tokens, 0, "system-prompts")
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  // A reader that is not a writer cannot write there.
  EXPECT_EQ(
      globex->Put({kModel, "raw", "system-prompts"}, prompt).status().code(),
      absl::StatusCode::kPermissionDenied);
}

TEST_F(TenancyTest, WrongMissingAndRevokedKeys) {
  StartServer(TenantsYaml());
  const std::vector<int32_t> tokens = {0, 1, 2};
  EXPECT_EQ(As("")->Lookup(kModel, tokens).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(As("not-a-key")->Lookup(kModel, tokens).status().code(),
            absl::StatusCode::kUnauthenticated);
  auto globex = As("globex-key");
  EXPECT_EQ(globex->Lookup(kModel, tokens).status().code(),
            absl::StatusCode::kNotFound);  // authenticated; model unknown
  // Rotate globex's key in the config and reload with SIGHUP.
  WriteFile(config_, TenantsYaml(/*with_globex_key=*/false));
  server_->Signal(SIGHUP);
  absl::StatusCode code = absl::StatusCode::kOk;
  for (int i = 0; i < 100; ++i) {
    code = globex->Lookup(kModel, tokens).status().code();
    if (code == absl::StatusCode::kUnauthenticated) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(code, absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(As("globex-new-key")->Lookup(kModel, tokens).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(TenancyTest, QuotaRejectLeavesTheStoreUnchanged) {
  SEQKV_NEEDS_TEST_DATA("kv/c_chat_turn1.safetensors",
                        "kv/c_chat_turn4.safetensors",
                        "kv/a_dev_00.safetensors");
  StartServer(TenantsYaml());
  auto initech = As("initech-key");
  const KvCache small = Load("c_chat_turn1");  // 170 tokens, ~1 MB raw
  const KvCache large = Load("c_chat_turn4");  // 577 tokens, ~3.5 MB raw
  ASSERT_TRUE(initech->Put({kModel, "raw", ""}, small).ok());
  auto refused = initech->Put({kModel, "raw", ""}, Load("a_dev_00"));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(initech->Lookup(kModel, large.tokens)->matched_tokens,
            small.tokens.size());
  auto body = server_->AdminGet("/v1/stats");
  ASSERT_TRUE(body.ok());
  EXPECT_NE(body->find("\"initech\""), std::string::npos);
}

TEST_F(TenancyTest, QuotaEvictsTheLeastRecentlyUsed) {
  SEQKV_NEEDS_TEST_DATA("kv/a_dev_01.safetensors", "kv/a_dev_02.safetensors");
  // Eviction itself: no fidelity tiers first (tests/tiers has those).
  StartServer(TenantsYaml(), {"--tiers=none"});
  auto hooli = As("hooli-key");
  // Three unrelated 1024-token documents, raw: 6.3 MB each, quota 2.5 MB:
  // each Put leaves only its most recent chunks.
  const KvCache a = Load("a_dev_01");
  const KvCache b = Load("a_dev_02");
  ASSERT_TRUE(hooli->Put({kModel, "raw", ""}, a).ok());
  ASSERT_TRUE(hooli->Put({kModel, "raw", ""}, b).ok());
  // Only the BOS they share is left of a.
  EXPECT_EQ(
      hooli->Lookup(kModel, a.tokens)->matched_tokens,
      std::mismatch(a.tokens.begin(), a.tokens.end(), b.tokens.begin()).first -
          a.tokens.begin());
  // Leaves go first, so what is left of b is a prefix of it.
  const uint32_t kept = hooli->Lookup(kModel, b.tokens)->matched_tokens;
  EXPECT_GT(kept, 0u);
  EXPECT_LE(kept * 6144u, 2500000u);
  EXPECT_EQ(kept % 256, 0u);
}

TEST_F(TenancyTest, CapacityEvictsFairlyAcrossTenants) {
  SEQKV_NEEDS_TEST_DATA("kv/a_dev_03.safetensors", "kv/a_dev_04.safetensors");
  StartServer(TenantsYaml(), {"--capacity_bytes=8000000"});
  auto acme = As("acme-key");
  auto globex = As("globex-key");
  ASSERT_TRUE(acme->Put({kModel, "raw", ""}, Load("a_dev_03")).ok());
  ASSERT_TRUE(globex->Put({kModel, "raw", ""}, Load("a_dev_04")).ok());
  // 2 x 6.3 MB raw under an 8 MB capacity: the larger tenant gives way, and
  // both keep a prefix.
  auto stats = acme->Lookup(kModel, Load("a_dev_03").tokens);
  ASSERT_TRUE(stats.ok());
  const uint32_t acme_kept = stats->matched_tokens;
  const uint32_t globex_kept =
      globex->Lookup(kModel, Load("a_dev_04").tokens)->matched_tokens;
  EXPECT_GT(acme_kept, 0u);
  EXPECT_GT(globex_kept, 0u);
  EXPECT_LE((acme_kept + globex_kept) * 6144u, 8000000u);
  auto body = server_->AdminGet("/v1/stats");
  ASSERT_TRUE(body.ok());
  const auto json = nlohmann::json::parse(*body);
  EXPECT_GT(json["global"]["evictions"].get<int>(), 0);
  EXPECT_LE(json["global"]["bytes_stored"].get<int64_t>(), 8000000);
}

// A cache of `tokens` random tokens in a one-layer layout (256 bytes a
// token).
KvCache Tiny(uint32_t tokens, uint32_t seed) {
  KvCache cache;
  cache.layout.num_layers = 1;
  cache.layout.num_kv_heads = 1;
  cache.layout.head_dim = 64;
  cache.layout.dtype = DType::kBF16;
  std::mt19937 rng(seed);
  for (uint32_t i = 0; i < tokens; ++i)
    cache.tokens.push_back(static_cast<int32_t>(rng() % 50000));
  cache.AllocateTensors();
  for (auto* tensor : {&cache.k, &cache.v})
    for (std::byte& b : *tensor) b = static_cast<std::byte>(rng());
  return cache;
}

bool SameData(const KvCache& a, const KvCache& b) {
  return a.tokens == b.tokens && a.k == b.k && a.v == b.v;
}

TEST_F(TenancyTest, ModelsArePrivateToTheTenantThatRegisteredThem) {
  SEQKV_NEEDS_TEST_DATA("kv/c_chat_turn2.safetensors",
                        "kv/c_chat_turn1.safetensors");
  StartServer(TenantsYaml());
  const KvCache cache = Load("c_chat_turn2");
  auto acme = As("acme-key");
  auto globex = As("globex-key");
  ModelRegistration registration{.model = "acme-private",
                                 .layout = cache.layout,
                                 .default_codec = "lossless"};
  ASSERT_TRUE(acme->RegisterModel(registration).ok());
  ASSERT_TRUE(acme->Put({"acme-private", "", ""}, cache).ok());

  // To globex the model does not exist: the answers of a name never used.
  auto unknown = globex->GetModel("never-registered");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  auto probed = globex->GetModel("acme-private");
  EXPECT_EQ(probed.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(probed.status().message(), "unknown model 'acme-private'");
  EXPECT_EQ(globex->Lookup("acme-private", cache.tokens).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(globex->Get({"acme-private"}, cache.tokens).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(globex->Delete("acme-private", {}).status().code(),
            absl::StatusCode::kNotFound);

  // globex registering the name makes its own model, a lossy default and
  // all; acme's keeps its default codec.
  registration.default_codec = "turbo:2";
  auto created = globex->RegisterModel(registration);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(*created);
  auto acme_model = acme->GetModel("acme-private");
  ASSERT_TRUE(acme_model.ok()) << acme_model.status();
  EXPECT_EQ(acme_model->default_codec, "lossless");
  const KvCache turn1 = Load("c_chat_turn1");
  auto acme_put = acme->Put({"acme-private", "", ""}, turn1);
  ASSERT_TRUE(acme_put.ok()) << acme_put.status();
  EXPECT_EQ(acme_put->codec, "lossless");
  auto globex_put = globex->Put({"acme-private", "", ""}, turn1);
  ASSERT_TRUE(globex_put.ok()) << globex_put.status();
  EXPECT_EQ(globex_put->codec, "turbo:2");
  // Both use the name independently: each finds its own data only.
  for (const KvCache* stored : {&cache, &turn1}) {
    auto got = acme->Get({"acme-private"}, stored->tokens);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(SameData(*got, *stored));
  }
  // globex finds the prefix it stored itself (turn 1), not acme's turn 2.
  EXPECT_EQ(globex->Lookup("acme-private", cache.tokens)->matched_tokens,
            turn1.tokens.size());

  // A Put under a name only another tenant uses makes the caller's own.
  ASSERT_TRUE(acme->Put({"acme-second", "raw", ""}, turn1).ok());
  auto own = globex->Put({"acme-second", "raw", ""}, turn1);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(own->chunks_deduped, 0u);
}

// A registration over a model's codec state, by its owner or by another
// tenant under the same name, leaves every stored chunk decoding to the
// same bytes, before and after a restart.
TEST_F(TenancyTest, NewCodecStateKeepsStoredChunksDecodable) {
  SEQKV_NEEDS_TEST_DATA("kv/c_chat_turn2.safetensors",
                        "kv/c_chat_turn1.safetensors", "lm");
  StartServer(TenantsYaml());
  const KvCache cache = Load("c_chat_turn2");
  auto state = BuildCodecStateFromModelDir(DataPath("lm"), cache.layout);
  ASSERT_TRUE(state.ok()) << state.status();
  // Another table: the same header, every value changed.
  std::map<std::string, std::string> other = *state;
  std::string& table = other[std::string(kLayer0TableKey)];
  for (size_t i = 24; i < table.size(); i += 2) table[i] ^= 0x5a;
  auto acme = As("acme-key");
  auto globex = As("globex-key");
  const std::string codec = "predictive:rel_mse=0.01";
  ASSERT_TRUE(acme->RegisterModel({.model = "tabled",
                                   .layout = cache.layout,
                                   .codec_state = *state})
                  .ok());
  ASSERT_TRUE(acme->Put({"tabled", codec, ""}, cache).ok());
  auto first = acme->Get({"tabled"}, cache.tokens);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->num_tokens(), cache.num_tokens());

  auto created = globex->RegisterModel(
      {.model = "tabled", .layout = cache.layout, .codec_state = other});
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(*created);
  auto got = acme->Get({"tabled"}, cache.tokens);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(SameData(*got, *first));

  // The owner replaces its table: a new version; the chunks keep theirs.
  created = acme->RegisterModel(
      {.model = "tabled", .layout = cache.layout, .codec_state = other});
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_FALSE(*created);
  got = acme->Get({"tabled"}, cache.tokens);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(SameData(*got, *first));
  const KvCache turn1 = Load("c_chat_turn1");
  ASSERT_TRUE(acme->Put({"tabled", codec, ""}, turn1).ok());
  auto second = acme->Get({"tabled"}, turn1.tokens);
  ASSERT_TRUE(second.ok()) << second.status();

  ASSERT_TRUE(server_->Restart().ok());
  acme = As("acme-key");
  got = acme->Get({"tabled"}, cache.tokens);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(SameData(*got, *first));
  got = acme->Get({"tabled"}, turn1.tokens);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(SameData(*got, *second));
}

TEST_F(TenancyTest, ASharedModelIsReadOnlyToItsReaders) {
  SEQKV_NEEDS_TEST_DATA("kv/c_chat_turn1.safetensors");
  StartServer(TenantsYaml());
  const KvCache prompt = Load("c_chat_turn1");
  auto acme = As("acme-key");
  auto globex = As("globex-key");
  auto initech = As("initech-key");
  ASSERT_TRUE(acme->Put({kModel, "raw", "system-prompts"}, prompt).ok());
  auto seen = globex->GetModel(kModel);
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(initech->GetModel(kModel).status().code(),
            absl::StatusCode::kNotFound);
  // A reader may register it unchanged (as a worker does at start), not
  // change it.
  ModelRegistration registration{.model = kModel, .layout = prompt.layout};
  auto same = globex->RegisterModel(registration);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_FALSE(*same);
  registration.default_codec = "turbo:2";
  auto changed = globex->RegisterModel(registration);
  EXPECT_EQ(changed.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(acme->GetModel(kModel)->default_codec, "");
  // Its owner may.
  auto updated = acme->RegisterModel(registration);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(globex->GetModel(kModel)->default_codec, "turbo:2");
  // initech, no reader, makes its own.
  auto own = initech->RegisterModel(registration);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_TRUE(*own);
}

TEST_F(TenancyTest, ModelRecordsCountAgainstTheQuota) {
  StartServer(TenantsYaml());
  auto small = As("small-key");
  // One-token Puts under fresh names, each a model record of about 550
  // bytes: the chunks are evicted to stay under the 20000-byte quota, the
  // records cannot be.
  const KvCache one = Tiny(1, 7);
  absl::Status refused;
  int stored = 0;
  for (int i = 0; i < 100 && refused.ok(); ++i) {
    std::string name = std::to_string(i);
    name.resize(256, 'm');
    auto put = small->Put({name, "raw", ""}, one);
    if (put.ok())
      ++stored;
    else
      refused = put.status();
  }
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_GT(stored, 10);
  EXPECT_LT(stored, 40);
  auto body = server_->AdminGet("/v1/stats");
  ASSERT_TRUE(body.ok());
  const auto tenant = nlohmann::json::parse(*body)["tenants"]["smallco"];
  EXPECT_GT(tenant["model_bytes"].get<int64_t>(), 10 * 500) << tenant;
  EXPECT_LE(tenant["usage_bytes"].get<int64_t>(), 20000) << tenant;
  EXPECT_EQ(tenant["usage_bytes"].get<int64_t>(),
            tenant["model_bytes"].get<int64_t>() +
                tenant["bytes_stored"].get<int64_t>());
  // Codec state counts too.
  auto state = small->RegisterModel(
      {.model = "stateful",
       .layout = one.layout,
       .codec_state = {{"blob", std::string(30000, 'x')}}});
  EXPECT_EQ(state.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(TenancyTest, RateLimit) {
  StartServer(TenantsYaml());
  auto slow = As("slow-key");
  const std::vector<int32_t> tokens = {0, 1};
  int limited = 0;
  for (int i = 0; i < 4; ++i)
    if (slow->Lookup(kModel, tokens).status().code() ==
        absl::StatusCode::kResourceExhausted)
      ++limited;
  EXPECT_GE(limited, 2);
}

TEST(ConfigTest, TheShippedExampleIsValid) {
  auto config =
      LoadConfig(std::string(SEQKV_SOURCE_DIR) + "/deploy/seqkv.example.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tenants.size(), 2u);
  EXPECT_EQ(config->tenants[0].api_key_sha256[0], Sha256Hex("foo"));
  EXPECT_EQ(config->shared_namespaces[0].readers.size(), 2u);
}

TEST_F(TenancyTest, BadConfigIsRefusedAtStartup) {
  config_ = dir_.file("bad.yaml");
  WriteFile(config_, "tenants:\n  - name: a\n    api_key_sha256: [\"xyz\"]\n");
  auto server = ServerProcess::Start({"--config=" + config_});
  EXPECT_FALSE(server.ok());
  EXPECT_EQ(ParseConfig("tenants: [").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseConfig(TenantsYaml() + "  - name: x\n    readers: [nobody]\n")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TenancyTest, TlsAndMutualTls) {
  SEQKV_NEEDS_TEST_DATA("kv/c_chat_turn1.safetensors");
  ASSERT_TRUE(testing::MakeTestCertificates(dir_.file("")));
  const std::string tls = "tls:\n  cert_file: " + dir_.file("server.pem") +
                          "\n  key_file: " + dir_.file("server.key") +
                          "\n  client_ca_file: " + dir_.file("ca.pem") + "\n";
  StartServer(TenantsYaml(true, tls));
  const KvCache cache = Load("c_chat_turn1");
  ClientOptions options;
  options.server = server_->address();
  options.timeout_s = 30;
  options.tls_root_cert_file = dir_.file("ca.pem");
  // TLS with an API key.
  options.api_key = "globex-key";
  auto globex = Client::Connect(options);
  ASSERT_TRUE(globex.ok());
  auto put = (*globex)->Put({kModel, "raw", ""}, cache);
  ASSERT_TRUE(put.ok()) << put.status();
  // mTLS: the client certificate's subject is the identity (tenant acme).
  options.api_key.clear();
  options.tls_cert_file = dir_.file("client.pem");
  options.tls_key_file = dir_.file("client.key");
  auto acme = Client::Connect(options);
  ASSERT_TRUE(acme.ok());
  // globex's model (and data) are not acme's.
  EXPECT_EQ((*acme)->Lookup(kModel, cache.tokens).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE((*acme)->Put({kModel, "raw", ""}, cache).ok());
  EXPECT_EQ((*acme)->Lookup(kModel, cache.tokens)->matched_tokens,
            cache.tokens.size());
  // Plaintext to a TLS port fails.
  auto plain = server_->Connect("globex-key");
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE((*plain)->Lookup(kModel, cache.tokens).ok());
}

}  // namespace
}  // namespace seqkv::testing
