// A real etcd and three real seqkv-servers in a cluster, driven through the
// cluster client (an etcd:// target): routing, a node killed (misses, never
// errors), its rejoin with its data, etcd going away, and a drain.
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/cluster_client.h"
#include "cluster/etcd_gateway.h"
#include "cluster/member.h"
#include "cluster/member_watcher.h"
#include "cluster/placement.h"
#include "cluster/rendezvous.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/cluster/etcd_process.h"
#include "tests/integration/server_process.h"
#include "tests/test_certificates.h"

namespace seqkv {
namespace {

using testing::EtcdProcess;
using testing::ServerProcess;

constexpr uint32_t kChunkTokens = 16;
constexpr uint32_t kPromptTokens = 5 * kChunkTokens;
constexpr const char* kModel = "cluster-test";
const KvLayout kLayout{2, 2, 64, DType::kBF16};

// Prompt `i`: its own head (so its owner is its own), 80 tokens.
std::vector<int32_t> Prompt(int i) {
  std::vector<int32_t> tokens(kPromptTokens);
  for (uint32_t t = 0; t < kPromptTokens; ++t)
    tokens[t] = static_cast<int32_t>(1000 * (i + 1) + t);
  return tokens;
}

KvCache Cache(const std::vector<int32_t>& tokens) {
  KvCache cache;
  cache.layout = kLayout;
  cache.tokens = tokens;
  cache.AllocateTensors();
  for (size_t i = 0; i < cache.k.size(); ++i) {
    cache.k[i] = static_cast<std::byte>((i * 31 + tokens[0]) & 0xff);
    cache.v[i] = static_cast<std::byte>((i * 17 + tokens[0]) & 0xff);
  }
  return cache;
}

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto etcd = EtcdProcess::Start();
    ASSERT_TRUE(etcd.ok()) << etcd.status();
    etcd_ = std::move(*etcd);
    for (int i = 0; i < 3; ++i) {
      auto server = ServerProcess::Start(NodeFlags());
      ASSERT_TRUE(server.ok()) << server.status();
      servers_.push_back(std::move(*server));
    }
    watcher_ = std::make_unique<cluster::MemberWatcher>(
        std::vector<std::string>{etcd_->endpoint()}, "test");
    ASSERT_TRUE(watcher_->Start(absl::Seconds(5)).ok());
    ASSERT_TRUE(WaitForServing(3));
    ClientOptions options;
    options.server = absl::StrCat("etcd://", etcd_->endpoint(), "/test");
    options.timeout_s = 1;
    options.api_key = api_key_;
    options.tls_root_cert_file = tls_root_cert_file_;
    auto client = Client::Connect(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
    ModelRegistration registration;
    registration.model = kModel;
    registration.layout = kLayout;
    registration.chunk_tokens = kChunkTokens;
    registration.default_codec = "raw";
    auto registered = client_->RegisterModel(registration);
    ASSERT_TRUE(registered.ok()) << registered.status();
  }

  std::vector<std::string> NodeFlags(double drain_s = 0) {
    std::vector<std::string> flags = {
        absl::StrCat("--cluster_etcd=", etcd_->endpoint()),
        "--cluster_name=test", "--cluster_lease_s=2",
        absl::StrCat("--drain_s=", drain_s),
        absl::StrCat("--replicas_hot=", replicas_hot_)};
    flags.insert(flags.end(), extra_flags_.begin(), extra_flags_.end());
    return flags;
  }

  // Waits up to 10 s for `count` serving members.
  bool WaitForServing(size_t count) {
    for (int i = 0; i < 200; ++i) {
      if (watcher_->view()->Serving().size() == count) {
        // Let the client's own watcher see it too.
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  // Which server holds prompt `i` (its head is on one node only).
  int Owner(int i) {
    int owner = -1;
    for (size_t s = 0; s < servers_.size(); ++s) {
      if (servers_[s]->pid() <= 0) continue;
      auto direct = servers_[s]->Connect();
      if (!direct.ok()) continue;
      auto found = (*direct)->Lookup(kModel, Prompt(i));
      if (found.ok() && found->matched_tokens == kPromptTokens) {
        EXPECT_EQ(owner, -1) << "prompt " << i << " on two nodes";
        owner = static_cast<int>(s);
      }
    }
    return owner;
  }

  void PutPrompts(int count) {
    PutOptions put;
    put.model = kModel;
    put.codec = "raw";
    for (int i = 0; i < count; ++i) {
      auto stored = client_->Put(put, Cache(Prompt(i)));
      ASSERT_TRUE(stored.ok()) << i << ": " << stored.status();
    }
  }

  uint32_t replicas_hot_ = 0;  // the nodes' --replicas_hot
  std::vector<std::string> extra_flags_;
  std::string api_key_;
  // The CA the nodes' certificates are checked against; empty: no TLS.
  std::string tls_root_cert_file_;
  std::unique_ptr<EtcdProcess> etcd_;
  std::vector<std::unique_ptr<ServerProcess>> servers_;
  std::unique_ptr<cluster::MemberWatcher> watcher_;
  std::unique_ptr<Client> client_;
};

TEST_F(ClusterTest, RoutesEachPromptToOneOwner) {
  constexpr int kPrompts = 24;
  PutPrompts(kPrompts);
  std::vector<int> per_node(3);
  for (int i = 0; i < kPrompts; ++i) {
    auto found = client_->Lookup(kModel, Prompt(i));
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_EQ(found->matched_tokens, kPromptTokens) << i;
    auto by_chunks = client_->LookupByChunks(kModel, Prompt(i), kChunkTokens);
    ASSERT_TRUE(by_chunks.ok()) << by_chunks.status();
    EXPECT_EQ(by_chunks->matched_tokens, kPromptTokens) << i;
    const int owner = Owner(i);
    ASSERT_GE(owner, 0) << i;
    ++per_node[owner];
  }
  // Every node owns a share (24 heads over 3 nodes).
  for (int count : per_node) EXPECT_GT(count, 0);

  GetOptions get;
  get.model = kModel;
  auto fetched = client_->Get(get, Prompt(7));
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  const KvCache expected = Cache(Prompt(7));
  EXPECT_EQ(fetched->tokens, expected.tokens);
  EXPECT_EQ(fetched->k, expected.k);
  EXPECT_EQ(fetched->v, expected.v);

  // A prompt never stored: a miss, from its owner.
  std::vector<int32_t> unknown = Prompt(999);
  auto missed = client_->Lookup(kModel, unknown);
  ASSERT_TRUE(missed.ok()) << missed.status();
  EXPECT_EQ(missed->matched_tokens, 0u);

  // Delete reaches every node: the prompt's first chunk and all below it.
  auto deleted = client_->Delete(
      kModel, std::span<const int32_t>(Prompt(3)).first(kChunkTokens));
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->chunks_deleted, kPromptTokens / kChunkTokens);
  EXPECT_EQ(client_->Lookup(kModel, Prompt(3))->matched_tokens, 0u);

  // Each node's admin endpoint lists the three members.
  auto status = servers_[0]->AdminGet("/v1/cluster");
  ASSERT_TRUE(status.ok()) << status.status();
  const auto json = nlohmann::json::parse(*status);
  EXPECT_EQ(json["members"].size(), 3u);
  EXPECT_EQ(json["etcd_reachable"], true);
  EXPECT_EQ(json["cluster"], "test");
}

TEST_F(ClusterTest, KilledNodeCostsMissesNotErrorsAndRejoinsWithItsData) {
  constexpr int kPrompts = 18;
  PutPrompts(kPrompts);
  std::vector<int> owner(kPrompts);
  for (int i = 0; i < kPrompts; ++i) owner[i] = Owner(i);
  constexpr int kVictim = 1;
  ASSERT_NE(std::count(owner.begin(), owner.end(), kVictim), 0);
  ASSERT_TRUE(servers_[kVictim]->Kill().ok());

  // Before its lease expires the client still routes to it: misses within
  // the per-call deadline, never errors.
  for (int i = 0; i < kPrompts; ++i) {
    auto found = client_->Lookup(kModel, Prompt(i));
    ASSERT_TRUE(found.ok()) << i << ": " << found.status();
    EXPECT_EQ(found->matched_tokens, owner[i] == kVictim ? 0u : kPromptTokens)
        << i;
    GetOptions get;
    get.model = kModel;
    auto fetched = client_->Get(get, Prompt(i));
    ASSERT_TRUE(fetched.ok()) << i << ": " << fetched.status();
    EXPECT_EQ(fetched->num_tokens(), owner[i] == kVictim ? 0u : kPromptTokens);
  }
  // Puts go to the next owner meanwhile.
  PutOptions put;
  put.model = kModel;
  put.codec = "raw";
  std::vector<int32_t> fresh = Prompt(500);
  ASSERT_TRUE(client_->Put(put, Cache(fresh)).ok());
  EXPECT_EQ(client_->Lookup(kModel, fresh)->matched_tokens, kPromptTokens);

  // Its lease expires: it drops out.
  ASSERT_TRUE(WaitForServing(2));

  // It restarts on its data (another port) and owns its share again.
  ASSERT_TRUE(servers_[kVictim]->Restart().ok());
  ASSERT_TRUE(WaitForServing(3));
  absl::SleepFor(ClusterClient::kDownFor);
  for (int i = 0; i < kPrompts; ++i) {
    auto found = client_->Lookup(kModel, Prompt(i));
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_EQ(found->matched_tokens, kPromptTokens) << i;
  }
}

// A prompt's placement head (the default 2 chunks): what replicas hold.
constexpr uint32_t kHeadTokens = 2 * kChunkTokens;
std::vector<int32_t> Head(const std::vector<int32_t>& tokens) {
  return {tokens.begin(), tokens.begin() + kHeadTokens};
}

// Which servers hold all of `tokens`.
std::vector<int> Holders(std::vector<std::unique_ptr<ServerProcess>>& servers,
                         const std::vector<int32_t>& tokens) {
  std::vector<int> holders;
  for (size_t s = 0; s < servers.size(); ++s) {
    auto direct = servers[s]->Connect();
    if (!direct.ok()) continue;
    auto found = (*direct)->Lookup(kModel, tokens);
    if (found.ok() && found->matched_tokens == tokens.size())
      holders.push_back(static_cast<int>(s));
  }
  return holders;
}

// Nodes started with --replicas_hot=2.
class HotClusterTest : public ClusterTest {
 protected:
  HotClusterTest() { replicas_hot_ = 2; }
};

TEST_F(HotClusterTest, HotHeadsByTheOwnersVisitsAreReplicated) {
  // The nodes ask for two owners of hot heads; the cluster config says what
  // is hot: a head a third of its owner's lookups pass through.
  EXPECT_EQ(watcher_->view()->ReplicasHot(), 2u);
  cluster::EtcdGateway etcd({etcd_->endpoint()}, absl::Seconds(2));
  ASSERT_TRUE(etcd.Put(cluster::ConfigKey("test"),
                       R"({"hot_lookups": 1, "hot_window": 3})")
                  .ok());
  for (int i = 0; i < 100 && watcher_->view()->placement.hot_window != 3; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(watcher_->view()->placement.hot_window, 3u);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto cluster_status = servers_[0]->AdminGet("/v1/cluster");
  ASSERT_TRUE(cluster_status.ok()) << cluster_status.status();
  EXPECT_EQ(nlohmann::json::parse(*cluster_status)["replicas_hot"], 2);

  constexpr int kPrompts = 24;
  PutPrompts(kPrompts);
  const std::vector<int32_t> hot = Prompt(0), cold = Prompt(1);
  // Every prompt is looked up twice, the hot one 12 times more: its owner
  // sees it in about half its lookups, the cold one in a tenth.
  for (int round = 0; round < 2; ++round)
    for (int i = 0; i < kPrompts; ++i)
      ASSERT_EQ(client_->Lookup(kModel, Prompt(i))->matched_tokens,
                kPromptTokens);
  for (int i = 0; i < 12; ++i)
    ASSERT_EQ(client_->Lookup(kModel, hot)->matched_tokens, kPromptTokens);
  // The servers apply visits to their statistics within a second.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto found_hot = client_->Lookup(kModel, hot);
  ASSERT_TRUE(found_hot.ok()) << found_hot.status();
  EXPECT_GE(found_hot->head_probability, 1.0 / 3);
  auto found_cold = client_->Lookup(kModel, cold);
  ASSERT_TRUE(found_cold.ok()) << found_cold.status();
  EXPECT_GT(found_cold->head_probability, 0.0);
  EXPECT_LT(found_cold->head_probability, 1.0 / 3);

  // The next Put of the hot prompt (what a worker does after its Lookup)
  // stores its head on a second owner; the cold one stays on one.
  PutOptions put;
  put.model = kModel;
  put.codec = "raw";
  ASSERT_TRUE(client_->Put(put, Cache(hot)).ok());
  ASSERT_TRUE(client_->Put(put, Cache(cold)).ok());
  const std::vector<int> holders = Holders(servers_, Head(hot));
  ASSERT_EQ(holders.size(), 2u);
  EXPECT_EQ(Holders(servers_, Head(cold)).size(), 1u);
  // The replica holds the head, not the rest of the prompt.
  EXPECT_EQ(Holders(servers_, hot).size(), 1u);

  // Either holder may die: the hot head stays a hit, at once.
  for (int holder : holders) {
    ASSERT_TRUE(servers_[holder]->Kill().ok());
    auto found = client_->Lookup(kModel, hot);
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_GE(found->matched_tokens, kHeadTokens) << "holder " << holder;
    ASSERT_TRUE(servers_[holder]->Restart().ok());
    ASSERT_TRUE(WaitForServing(3));
    absl::SleepFor(ClusterClient::kDownFor);
  }

  // The restarted nodes learn the head's traffic again.
  for (int i = 0; i < 4; ++i)
    ASSERT_EQ(client_->Lookup(kModel, hot)->matched_tokens, kPromptTokens);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ASSERT_GE(client_->Lookup(kModel, hot)->head_probability, 1.0 / 3);

  // An owner that lacks the hot head (it was away while the head was
  // stored on the others): the replica answers, Lookup and Get alike.
  const std::vector<cluster::Member> serving = watcher_->view()->Serving();
  const uint64_t key = cluster::PlacementKey(kModel, "", hot, kChunkTokens,
                                             watcher_->view()->placement);
  const std::string owner_address =
      serving[cluster::RankMembers(key, serving).front()].address;
  int owner = -1;
  for (size_t s = 0; s < servers_.size(); ++s)
    if (servers_[s]->address() == owner_address) owner = static_cast<int>(s);
  ASSERT_GE(owner, 0);
  auto direct = servers_[owner]->Connect();
  ASSERT_TRUE(direct.ok());
  ASSERT_TRUE(
      (*direct)
          ->Delete(kModel, std::span<const int32_t>(hot).first(kChunkTokens))
          .ok());
  ASSERT_EQ(Holders(servers_, Head(hot)).size(), 1u);
  auto found = client_->Lookup(kModel, hot);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->matched_tokens, kHeadTokens);
  GetOptions get;
  get.model = kModel;
  auto fetched = client_->Get(get, hot);
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(fetched->num_tokens(), kHeadTokens);
  // The next Put stores the prompt on the owner again.
  ASSERT_TRUE(client_->Put(put, Cache(hot)).ok());
  EXPECT_EQ(Holders(servers_, Head(hot)).size(), 2u);
  EXPECT_EQ(Holders(servers_, hot).size(), 1u);
}

TEST_F(ClusterTest, ClusterConfigAsksForReplicasToo) {
  // Without --replicas_hot the config's replicas_hot applies.
  EXPECT_EQ(watcher_->view()->ReplicasHot(), 1u);
  cluster::EtcdGateway etcd({etcd_->endpoint()}, absl::Seconds(2));
  ASSERT_TRUE(etcd.Put(cluster::ConfigKey("test"),
                       R"({"replicas_hot": 3, "hot_lookups": 1,
                           "hot_window": 2})")
                  .ok());
  for (int i = 0; i < 100 && watcher_->view()->ReplicasHot() != 3; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(watcher_->view()->ReplicasHot(), 3u);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // A prompt every lookup of its owner passes through is hot (P̂ 1, at
  // least the half asked).
  PutPrompts(1);
  ASSERT_EQ(client_->Lookup(kModel, Prompt(0))->matched_tokens, kPromptTokens);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto found = client_->Lookup(kModel, Prompt(0));
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_GE(found->head_probability, 0.5);
  PutOptions put;
  put.model = kModel;
  put.codec = "raw";
  ASSERT_TRUE(client_->Put(put, Cache(Prompt(0))).ok());
  EXPECT_EQ(Holders(servers_, Head(Prompt(0))).size(), 3u);
}

// Nodes that share one tenant config: "capped" may store 200,000 bytes
// (about two prompts) in the whole cluster, refusing beyond.
// Nodes that serve only TLS: the cluster client reaches each member over
// TLS with the caller's credentials, and a plaintext client gets nothing.
class TlsClusterTest : public ClusterTest {
 protected:
  TlsClusterTest() {
    char pattern[] = "/tmp/seqkv-cluster-tls-XXXXXX";
    dir_ = mkdtemp(pattern);
    made_ = testing::MakeTestCertificates(dir_);
    const std::string config = dir_ + "/seqkv.yaml";
    // sha256("quota-key")
    std::ofstream(config)
        << "tenants:\n  - name: worker\n    api_key_sha256: "
           "[\"39caa843d334f04de1fd14398f3a0417df9a82e9e14c94011a611fd30aebe8c4"
           "\"]\ntls:\n  cert_file: "
        << dir_ << "/server.pem\n  key_file: " << dir_ << "/server.key\n";
    extra_flags_ = {"--config=" + config};
    api_key_ = "quota-key";
    tls_root_cert_file_ = dir_ + "/ca.pem";
  }
  ~TlsClusterTest() override { std::filesystem::remove_all(dir_); }

  std::string dir_;
  bool made_ = false;
};

TEST_F(TlsClusterTest, MembersAreReachedOverTls) {
  ASSERT_TRUE(made_);
  PutPrompts(6);
  for (int i = 0; i < 6; ++i) {
    auto found = client_->Lookup(kModel, Prompt(i));
    ASSERT_TRUE(found.ok()) << i << ": " << found.status();
    EXPECT_EQ(found->matched_tokens, kPromptTokens) << i;
  }
  // The prompts are spread over the members, each of which speaks TLS only.
  for (const auto& server : servers_) {
    auto plaintext = server->Connect(api_key_);
    if (!plaintext.ok()) continue;
    EXPECT_FALSE((*plaintext)->Lookup(kModel, Prompt(0)).ok());
  }
}

class QuotaClusterTest : public ClusterTest {
 protected:
  QuotaClusterTest() {
    char pattern[] = "/tmp/seqkv-cluster-quota-XXXXXX";
    config_dir_ = mkdtemp(pattern);
    const std::string config = config_dir_ + "/seqkv.yaml";
    // sha256("quota-key")
    std::ofstream(config)
        << "tenants:\n  - name: capped\n    api_key_sha256: "
           "[\"39caa843d334f04de1fd14398f3a0417df9a82e9e14c94011a611fd30aebe8c4"
           "\"]\n    quota_bytes: 200000\n    on_quota: reject\n";
    extra_flags_ = {"--config=" + config, "--cluster_report_s=1"};
    api_key_ = "quota-key";
  }
  ~QuotaClusterTest() override { std::filesystem::remove_all(config_dir_); }

  absl::StatusOr<PutResult> PutOn(int server, int prompt) {
    auto direct = servers_[server]->Connect(api_key_);
    if (!direct.ok()) return direct.status();
    PutOptions put;
    put.model = kModel;
    put.codec = "raw";
    return (*direct)->Put(put, Cache(Prompt(prompt)));
  }

  std::string config_dir_;
};

TEST_F(QuotaClusterTest, QuotaHoldsAcrossTheCluster) {
  // Node B holds one prompt (80 KiB of the 200,000 bytes).
  ASSERT_TRUE(PutOn(1, 100).ok());
  // Node A takes what is left, then refuses.
  absl::Status refused_on_a;
  for (int i = 0; i < 5 && refused_on_a.ok(); ++i)
    refused_on_a = PutOn(0, i).status();
  EXPECT_EQ(refused_on_a.code(), absl::StatusCode::kResourceExhausted)
      << refused_on_a;
  // Node B alone could take another prompt (160 KiB of 200,000 bytes), but
  // A's share counts there once A has reported it (a few seconds).
  absl::Status refused_on_b;
  for (int i = 0; i < 100 && refused_on_b.ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    refused_on_b = PutOn(1, 200 + i).status();
    if (refused_on_b.ok()) {
      // Accepted before A's report arrived: take it back and try again.
      auto direct = servers_[1]->Connect(api_key_);
      ASSERT_TRUE(direct.ok());
      ASSERT_TRUE((*direct)
                      ->Delete(kModel, std::span<const int32_t>(Prompt(200 + i))
                                           .first(kChunkTokens))
                      .ok());
    }
  }
  ASSERT_EQ(refused_on_b.code(), absl::StatusCode::kResourceExhausted)
      << refused_on_b;
  EXPECT_NE(refused_on_b.message().find("cluster-wide"), std::string::npos)
      << refused_on_b;
  // What A frees is B's to use, once A reports it.
  auto direct_a = servers_[0]->Connect(api_key_);
  ASSERT_TRUE(direct_a.ok());
  ASSERT_TRUE((*direct_a)->Delete(kModel, {}).ok());
  absl::Status accepted_on_b = absl::UnknownError("not tried");
  for (int i = 0; i < 100 && !accepted_on_b.ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    accepted_on_b = PutOn(1, 300).status();
  }
  EXPECT_TRUE(accepted_on_b.ok()) << accepted_on_b;
}

// What `command` prints on stdout.
std::string Output(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;)
    out.append(buffer, n);
  pclose(pipe);
  return out;
}

TEST_F(ClusterTest, DashboardShowsTheMembers) {
  // Debian's chromium (scripts/setup), as the admin dashboard's own test.
  const std::string chromium = Output("command -v chromium");
  ASSERT_FALSE(chromium.empty()) << "chromium is not installed";
  PutPrompts(6);
  // Each node's record carries its bytes within --cluster_report_s (5 s).
  nlohmann::json cluster;
  for (int i = 0; i < 80; ++i) {
    auto answer = servers_[0]->AdminGet("/v1/cluster");
    ASSERT_TRUE(answer.ok()) << answer.status();
    cluster = nlohmann::json::parse(*answer);
    bool reported = cluster["members"].size() == 3;
    for (const auto& member : cluster["members"])
      reported = reported && member["bytes_stored"].get<uint64_t>() > 0;
    if (reported) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  char pattern[] = "/tmp/seqkv-chromium-XXXXXX";
  const std::string profile = mkdtemp(pattern);
  const std::string dom = Output(absl::StrCat(
      "timeout 90 ", chromium.substr(0, chromium.find('\n')),
      " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage"
      " --no-first-run --virtual-time-budget=5000 --user-data-dir=",
      profile, " --dump-dom http://", servers_[0]->admin_address(),
      "/ 2>/dev/null"));
  std::filesystem::remove_all(profile);
  EXPECT_NE(dom.find("id=\"cluster-summary\" data-value=\"3\""),
            std::string::npos)
      << dom.substr(0, 2000);
  for (const auto& member : cluster["members"]) {
    const std::string id = member["id"];
    EXPECT_NE(dom.find(absl::StrCat(
                  "id=\"member-", id, "-bytes-stored\" data-value=\"",
                  member["bytes_stored"].get<uint64_t>(), "\"")),
              std::string::npos)
        << id;
  }
}

TEST_F(ClusterTest, EtcdDownKeepsServingWithTheLastMembership) {
  PutPrompts(6);
  etcd_->Kill();
  std::string readyz;
  for (int i = 0; i < 100; ++i) {
    auto answer = servers_[0]->AdminGet("/readyz");
    ASSERT_TRUE(answer.ok()) << answer.status();  // still ready: 200
    readyz = *answer;
    if (readyz.find("etcd unreachable") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(readyz.find("etcd unreachable"), std::string::npos) << readyz;
  auto metrics = servers_[0]->AdminGet("/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_NE(metrics->find("seqkv_cluster_etcd_reachable 0"), std::string::npos);
  for (int i = 0; i < 6; ++i) {
    auto found = client_->Lookup(kModel, Prompt(i));
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_EQ(found->matched_tokens, kPromptTokens) << i;
  }
  ASSERT_TRUE(etcd_->Restart().ok());
  bool back = false;
  for (int i = 0; i < 100 && !back; ++i) {
    auto answer = servers_[0]->AdminGet("/metrics");
    back =
        answer.ok() &&
        answer->find("seqkv_cluster_etcd_reachable 1") != std::string::npos &&
        answer->find("seqkv_cluster_registered 1") != std::string::npos;
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(back);
  EXPECT_TRUE(WaitForServing(3));
}

TEST_F(ClusterTest, DrainingNodeLeavesBeforeItStops) {
  auto draining = ServerProcess::Start(NodeFlags(/*drain_s=*/1));
  ASSERT_TRUE(draining.ok()) << draining.status();
  ASSERT_TRUE(WaitForServing(4));
  const auto start = std::chrono::steady_clock::now();
  (*draining)->Signal(SIGTERM);
  bool saw_draining = false;
  for (int i = 0; i < 40 && !saw_draining; ++i) {
    const auto view = watcher_->view();
    saw_draining = view->members.size() == 4 && view->Serving().size() == 3;
    if (!saw_draining)
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_TRUE(saw_draining);
  EXPECT_EQ((*draining)->Stop(), 0);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  // It left (revoked its lease) rather than waiting to expire.
  bool gone = false;
  for (int i = 0; i < 20 && !gone; ++i) {
    gone = watcher_->view()->members.size() == 3;
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_TRUE(gone);
}

}  // namespace
}  // namespace seqkv
