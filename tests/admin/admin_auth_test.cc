// The admin token: required off loopback, checked on every data route.
#include "server/dashboard/admin_auth.h"

#include <filesystem>

#include "gtest/gtest.h"
#include "server/admin_server.h"
#include "server/cache_engine.h"
#include "server/config.h"
#include "storage/kv_store.h"
#include "tests/admin/admin_test_util.h"

namespace seqkv::testing {
namespace {

TEST(AdminAuthTest, LoopbackHosts) {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "::1", "[::1]",
                           "localhost", "LocalHost", "::ffff:127.0.0.1"})
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  for (const char* host :
       {"", "0.0.0.0", "::", "[::]", "10.0.0.1", "192.168.1.10", "example.com",
        "128.0.0.1", "::ffff:10.0.0.1", "localhost.example.com"})
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
}

TEST(AdminAuthTest, BearerHeaderParsing) {
  EXPECT_EQ(BearerToken("Bearer abc").value_or(""), "abc");
  EXPECT_EQ(BearerToken("bearer  abc ").value_or(""), "abc");
  EXPECT_FALSE(BearerToken("Basic abc").has_value());
  EXPECT_FALSE(BearerToken("Bearer ").has_value());
  EXPECT_FALSE(BearerToken("").has_value());
}

TEST(AdminAuthTest, TokenDigestValidation) {
  EXPECT_FALSE(AdminToken::FromSha256Hex("")->required());
  EXPECT_EQ(AdminToken::FromSha256Hex("abc").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      AdminToken::FromSha256Hex(std::string(63, 'a') + "g").status().code(),
      absl::StatusCode::kInvalidArgument);
  // Upper-case hex is the same digest.
  std::string upper = Sha256Hex("s3cret");
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  auto token = AdminToken::FromSha256Hex(upper);
  ASSERT_TRUE(token.ok());
  EXPECT_TRUE(token->Matches("s3cret"));
  EXPECT_FALSE(token->Matches("s3cret "));
  EXPECT_FALSE(token->Matches(""));
}

// A real engine on a fresh store, and its admin server.
class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "seqkv-admin-XXXXXX")
            .string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    KvStoreOptions options;
    options.path = dir_ + "/db";
    options.sync_commits = false;
    auto store = KvStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    engine_ = std::make_unique<CacheEngine>(store_.get(), EngineOptions{});
    ASSERT_TRUE(engine_->Start().ok());
    admin_ = std::make_unique<AdminServer>(engine_.get(), AdminServerOptions{});
  }
  void TearDown() override {
    admin_.reset();
    engine_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string dir_;
  std::unique_ptr<KvStore> store_;
  std::unique_ptr<CacheEngine> engine_;
  std::unique_ptr<AdminServer> admin_;
};

TEST_F(AdminServerTest, RefusesToListenBeyondLoopbackWithoutAToken) {
  // Start refuses before it binds: no socket is opened on these addresses.
  for (const char* address : {"0.0.0.0:0", "[::]:0", ":0", "10.1.2.3:0"}) {
    const absl::Status status = admin_->Start(address);
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << address;
    EXPECT_NE(status.message().find("admin token"), std::string::npos)
        << status.message();
  }
  EXPECT_EQ(admin_->Start("0.0.0.0:0", "not-a-digest").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(admin_->Start("127.0.0.1").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(AdminServerTest, LoopbackWithoutATokenIsOpen) {
  ASSERT_TRUE(admin_->Start("127.0.0.1:0").ok());
  EXPECT_EQ(HttpGet(admin_->port(), "/v1/stats").status, 200);
}

TEST_F(AdminServerTest, TokenIsRequiredOnDataRoutes) {
  ASSERT_TRUE(admin_->Start("127.0.0.1:0", Sha256Hex("s3cret")).ok());
  admin_->SetReady(true);
  const int port = admin_->port();
  for (const char* path : {"/v1/stats", "/v1/tenants/default", "/v1/trie",
                           "/v1/history", "/metrics", "/nowhere"}) {
    SCOPED_TRACE(path);
    const HttpReply none = HttpGet(port, path);
    EXPECT_EQ(none.status, 401);
    EXPECT_EQ(none.www_authenticate, "Bearer realm=\"seqkv-admin\"");
    EXPECT_NE(none.body.find("Authorization: Bearer"), std::string::npos);
    const HttpReply wrong = HttpGet(port, path, "Bearer s3cre");
    EXPECT_EQ(wrong.status, 401);
    EXPECT_NE(wrong.body.find("does not match"), std::string::npos);
    EXPECT_EQ(HttpGet(port, path, "Basic czNjcmV0").status, 401);
    EXPECT_EQ(HttpGet(port, path, "s3cret").status, 401);
  }
  EXPECT_EQ(HttpGet(port, "/v1/stats", "Bearer s3cret").status, 200);
  EXPECT_EQ(HttpGet(port, "/v1/stats", "bearer s3cret").status, 200);
  EXPECT_EQ(HttpGet(port, "/v1/trie", "Bearer s3cret").status, 200);
  EXPECT_EQ(HttpGet(port, "/v1/history", "Bearer s3cret").status, 200);
  EXPECT_EQ(HttpGet(port, "/metrics", "Bearer s3cret").status, 200);
  // An unknown tenant is a 404 only for those who may ask.
  EXPECT_EQ(HttpGet(port, "/v1/tenants/default", "Bearer s3cret").status, 404);
  // Probes and the page's static files carry no data.
  EXPECT_EQ(HttpGet(port, "/healthz").status, 200);
  EXPECT_EQ(HttpGet(port, "/readyz").status, 200);
  EXPECT_EQ(HttpGet(port, "/").status, 200);
  EXPECT_EQ(HttpGet(port, "/static/chart.min.js").status, 200);
}

TEST_F(AdminServerTest, ServesTheDashboardFiles) {
  ASSERT_TRUE(admin_->Start("127.0.0.1:0").ok());
  const HttpReply page = HttpGet(admin_->port(), "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("<script src=\"/static/dashboard.js\""),
            std::string::npos);
  const HttpReply chart = HttpGet(admin_->port(), "/static/chart.min.js");
  EXPECT_EQ(chart.status, 200);
  EXPECT_EQ(chart.content_type, "text/javascript; charset=utf-8");
  EXPECT_NE(chart.body.find("Chart.js v"), std::string::npos);
  EXPECT_GT(chart.body.size(), 100000u);
  EXPECT_EQ(HttpGet(admin_->port(), "/static/dashboard.css").status, 200);
  EXPECT_EQ(HttpGet(admin_->port(), "/static/nope.js").status, 404);
  EXPECT_EQ(HttpGet(admin_->port(), "/static/../CMakeLists.txt").status, 404);
}

}  // namespace
}  // namespace seqkv::testing
