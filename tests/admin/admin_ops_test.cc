// What operators and orchestrators see of a real seqkv-server: per-method
// gRPC metrics (checked by promtool where installed), gRPC health checking
// by service name, reflection, the probe listener and a Unix socket.
#include <google/protobuf/descriptor.pb.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/admin/admin_test_util.h"
#include "tests/integration/server_process.h"
#include "tests/scoped_temp_dir.h"

namespace seqkv::testing {
namespace {

constexpr char kModel[] = "ops-test";
constexpr char kService[] = "seqkv.v1.KvCacheService";
using HealthResponse = grpc::health::v1::HealthCheckResponse;

std::chrono::system_clock::time_point Deadline() {
  return std::chrono::system_clock::now() + std::chrono::seconds(20);
}

std::shared_ptr<grpc::Channel> Channel(const std::string& address) {
  return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
}

// grpc.health.v1.Health/Check for `service`, as a load balancer asks.
grpc::Status CheckHealth(const std::string& address, const std::string& service,
                         HealthResponse& response) {
  auto stub = grpc::health::v1::Health::NewStub(Channel(address));
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  return stub->Check(&context, request, &response);
}

// The answers of reflection of one version (v1 or v1alpha) to `requests`,
// sent on one stream in turn.
template <typename Reflection, typename Request, typename Response>
grpc::Status Reflect(const std::string& address,
                     const std::vector<Request>& requests,
                     std::vector<Response>& responses) {
  auto stub = Reflection::NewStub(Channel(address));
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  auto stream = stub->ServerReflectionInfo(&context);
  for (const Request& request : requests) {
    Response response;
    if (!stream->Write(request) || !stream->Read(&response)) break;
    responses.push_back(std::move(response));
  }
  stream->WritesDone();
  Response extra;
  EXPECT_FALSE(stream->Read(&extra)) << "an answer without a request";
  return stream->Finish();
}

// What reflection of one version answers to list_services and to
// file_containing_symbol for kService, on one stream: the services it lists
// and the names of the files that describe kService.
template <typename Reflection, typename Request, typename Response>
void ExpectReflectionDescribesTheService(const std::string& address) {
  std::vector<Request> requests(2);
  requests[0].set_list_services("");
  requests[1].set_file_containing_symbol(kService);
  std::vector<Response> responses;
  const grpc::Status status =
      Reflect<Reflection, Request, Response>(address, requests, responses);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(responses.size(), 2u);

  std::vector<std::string> names;
  for (const auto& service : responses[0].list_services_response().service())
    names.push_back(service.name());
  EXPECT_NE(std::find(names.begin(), names.end(), kService), names.end());

  ASSERT_TRUE(responses[1].has_file_descriptor_response())
      << responses[1].error_response().error_message();
  bool described = false;
  for (const std::string& bytes :
       responses[1].file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(bytes));
    for (const auto& service : file.service())
      if (file.package() + "." + service.name() == kService) described = true;
  }
  EXPECT_TRUE(described) << "no file descriptor declares " << kService;
  EXPECT_EQ(responses[1].original_request().file_containing_symbol(), kService);
}

// The samples of a Prometheus text page: "name{labels}" -> value.
std::map<std::string, double> Samples(const std::string& text) {
  std::map<std::string, double> samples;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line.front() == '#') continue;
    const size_t space = line.rfind(' ');
    double value = 0;
    if (space == absl::string_view::npos ||
        !absl::SimpleAtod(line.substr(space + 1), &value))
      continue;
    samples[std::string(line.substr(0, space))] = value;
  }
  return samples;
}

std::string Labels(const std::string& method, const std::string& extra = "") {
  return absl::StrCat("{grpc_service=\"", kService, "\",grpc_method=\"", method,
                      "\"", extra, "}");
}

class OpsTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> flags = {}) {
    auto server = ServerProcess::Start(std::move(flags));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    admin_port_ = PortOf(server_->admin_address());
  }
  std::string Metrics() {
    const HttpReply reply = HttpGet(admin_port_, "/metrics");
    EXPECT_EQ(reply.status, 200);
    return reply.body;
  }

  std::unique_ptr<ServerProcess> server_;
  int admin_port_ = 0;
};

TEST_F(OpsTest, MetricsCountCallsByMethodAndStatusWithLatencies) {
  Start();
  auto client = server_->Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  const std::vector<int32_t> tokens = RandomTokens(300, 1);
  ASSERT_TRUE(
      (*client)->Put({kModel, "raw", ""}, SyntheticCache(tokens, 2)).ok());
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE((*client)->Lookup(kModel, tokens).ok());
  // An unknown model: NOT_FOUND, counted apart from the successes.
  EXPECT_EQ((*client)->Lookup("no-such-model", tokens).status().code(),
            absl::StatusCode::kNotFound);

  const std::map<std::string, double> samples = Samples(Metrics());
  auto sample = [&](const std::string& name) {
    auto it = samples.find(name);
    EXPECT_NE(it, samples.end()) << name;
    return it == samples.end() ? -1.0 : it->second;
  };
  EXPECT_EQ(sample("seqkv_grpc_server_started_total" + Labels("Lookup")), 4);
  EXPECT_EQ(sample("seqkv_grpc_server_handled_total" +
                   Labels("Lookup", ",grpc_code=\"OK\"")),
            3);
  EXPECT_EQ(sample("seqkv_grpc_server_handled_total" +
                   Labels("Lookup", ",grpc_code=\"NOT_FOUND\"")),
            1);
  EXPECT_EQ(sample("seqkv_grpc_server_handled_total" +
                   Labels("Put", ",grpc_code=\"OK\"")),
            1);
  // The histogram: cumulative buckets up to +Inf, which equals _count.
  const std::string bucket = "seqkv_grpc_server_handling_seconds_bucket";
  EXPECT_EQ(sample(bucket + Labels("Lookup", ",le=\"+Inf\"")), 4);
  EXPECT_EQ(
      sample("seqkv_grpc_server_handling_seconds_count" + Labels("Lookup")), 4);
  const double sum =
      sample("seqkv_grpc_server_handling_seconds_sum" + Labels("Lookup"));
  EXPECT_GT(sum, 0);
  EXPECT_LT(sum, 60);
  double previous = 0;
  for (const char* le : {"0.0001", "0.001", "0.01", "0.1", "1", "10", "30"}) {
    const double count =
        sample(bucket + Labels("Lookup", absl::StrCat(",le=\"", le, "\"")));
    EXPECT_GE(count, previous) << le;
    previous = count;
  }
  EXPECT_LE(previous, 4);
}

TEST_F(OpsTest, MetricsPassPromtool) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "needs promtool (Debian package prometheus, which "
                    "scripts/setup installs)";
  Start();
  auto client = server_->Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  const std::vector<int32_t> tokens = RandomTokens(100, 3);
  ASSERT_TRUE(
      (*client)->Put({kModel, "raw", ""}, SyntheticCache(tokens, 4)).ok());
  EXPECT_FALSE((*client)->Lookup("no-such-model", tokens).ok());
  HealthResponse health;
  ASSERT_TRUE(CheckHealth(server_->address(), "", health).ok());

  ScopedTempDir dir("seqkv-promtool");
  const std::string page = (dir.path() / "metrics.txt").string();
  std::ofstream(page) << Metrics();
  const CommandResult lint =
      RunCommand(absl::StrCat("promtool check metrics < ", page, " 2>&1"));
  EXPECT_EQ(lint.exit_code, 0) << lint.out;
  EXPECT_EQ(lint.out, "") << "promtool found problems";
}

TEST_F(OpsTest, HealthAnswersForTheServerAndTheServiceByName) {
  Start();
  for (const std::string service : {"", kService}) {
    HealthResponse response;
    const grpc::Status status =
        CheckHealth(server_->address(), service, response);
    ASSERT_TRUE(status.ok()) << "'" << service << "': " << status.error_code()
                             << " " << status.error_message();
    EXPECT_EQ(response.status(), HealthResponse::SERVING) << service;
  }
  HealthResponse response;
  EXPECT_EQ(
      CheckHealth(server_->address(), "no.such.Service", response).error_code(),
      grpc::StatusCode::NOT_FOUND);
}

// v1alpha comes from libgrpc++_reflection; v1, which Debian 12's gRPC (1.51)
// lacks, from the server's own forwarder (server/reflection_v1.h). Both
// describe the service alike.
TEST_F(OpsTest, ReflectionDescribesTheServiceInV1AlphaAndV1) {
  Start();
  ExpectReflectionDescribesTheService<
      grpc::reflection::v1alpha::ServerReflection,
      grpc::reflection::v1alpha::ServerReflectionRequest,
      grpc::reflection::v1alpha::ServerReflectionResponse>(server_->address());
  ExpectReflectionDescribesTheService<
      grpc::reflection::v1::ServerReflection,
      grpc::reflection::v1::ServerReflectionRequest,
      grpc::reflection::v1::ServerReflectionResponse>(server_->address());
}

// An unknown symbol is an error answer on the stream in both versions, not
// the end of the stream.
TEST_F(OpsTest, ReflectionV1AnswersUnknownSymbolsLikeV1Alpha) {
  Start();
  std::vector<grpc::reflection::v1::ServerReflectionRequest> requests(2);
  requests[0].set_file_containing_symbol("no.such.Service");
  requests[1].set_list_services("");
  std::vector<grpc::reflection::v1::ServerReflectionResponse> responses;
  const grpc::Status status =
      Reflect<grpc::reflection::v1::ServerReflection,
              grpc::reflection::v1::ServerReflectionRequest,
              grpc::reflection::v1::ServerReflectionResponse>(
          server_->address(), requests, responses);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].error_response().error_code(),
            static_cast<int>(grpc::StatusCode::NOT_FOUND));
  EXPECT_GT(responses[1].list_services_response().service_size(), 0);
}

TEST_F(OpsTest, ProbeListenerServesHealthAndReadinessAlone) {
  // 0.0.0.0: where a kubelet reaches it; no admin token is needed for it.
  Start({"--probe_listen=0.0.0.0:0"});
  const int port = server_->probe_port();
  ASSERT_GT(port, 0);
  const HttpReply live = HttpGet(port, "/healthz");
  EXPECT_EQ(live.status, 200);
  EXPECT_EQ(live.body, "ok\n");
  const HttpReply ready = HttpGet(port, "/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body, "ready\n");
  // Nothing else: no stats, metrics or dashboard on the probe port.
  for (const char* path : {"/metrics", "/v1/stats", "/"})
    EXPECT_EQ(HttpGet(port, path).status, 404) << path;
  // The admin port keeps serving the probes too.
  EXPECT_EQ(HttpGet(admin_port_, "/readyz").status, 200);
}

TEST_F(OpsTest, BadProbeAddressIsRefusedAtStartup) {
  EXPECT_FALSE(ServerProcess::Start({"--probe_listen=nonsense"}).ok());
}

TEST_F(OpsTest, ClientTalksOverAUnixSocket) {
  ScopedTempDir dir("seqkv-unix");
  const std::string address =
      absl::StrCat("unix:", (dir.path() / "seqkv.sock").string());
  Start({"--listen=" + address});
  ASSERT_TRUE(std::filesystem::is_socket(dir.path() / "seqkv.sock"));
  ClientOptions options;
  options.server = address;
  options.timeout_s = 60;
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status();
  const std::vector<int32_t> tokens = RandomTokens(300, 5);
  const KvCache cache = SyntheticCache(tokens, 6);
  ASSERT_TRUE((*client)->Put({kModel, "lossless", ""}, cache).ok());
  auto lookup = (*client)->Lookup(kModel, tokens);
  ASSERT_TRUE(lookup.ok()) << lookup.status();
  EXPECT_EQ(lookup->matched_tokens, 300u);
  GetOptions get;
  get.model = kModel;
  auto got = (*client)->Get(get, tokens);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->k == cache.k && got->v == cache.v);
  HealthResponse health;
  ASSERT_TRUE(CheckHealth(address, kService, health).ok());
  EXPECT_EQ(health.status(), HealthResponse::SERVING);
}

}  // namespace
}  // namespace seqkv::testing
