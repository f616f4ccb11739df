// Puts and Gets through shared memory against a real server: bit-exact
// round trips for every codec, both transports at once, and every way a
// client can misname a region answered with a precise status, the server
// unharmed.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "codec/model_state.h"
#include "gtest/gtest.h"
#include "model/model_state_builder.h"
#include "nlohmann/json.hpp"
#include "proto/layout_convert.h"
#include "seqkv/v1/kvcache.grpc.pb.h"
#include "seqkv/v1/region.pb.h"
#include "server/config.h"
#include "tests/integration/server_process.h"
#include "tests/scoped_temp_dir.h"
#include "tests/test_data.h"
#include "transport/fd_passing.h"
#include "transport/region_client.h"

namespace seqkv::testing {
namespace {

constexpr char kModel[] = "kvlm-23m";

KvCache Load(const std::string& name) {
  auto cache = ReadKvCacheFile(DataPath("kv/" + name + ".safetensors"));
  EXPECT_TRUE(cache.ok()) << cache.status();
  cache->layout.rope = {RopeStyle::kRotateHalf, 10000.0, 0};
  return std::move(*cache);
}

std::string TokenMajor(const KvCache& cache) {
  std::string bytes;
  cache.AppendTokenMajor(0, cache.num_tokens(), bytes);
  return bytes;
}

class ShmTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> flags = {}) {
    socket_ = dir_.string() + "/regions.sock";
    flags.push_back("--shm_listen=" + socket_);
    flags.push_back("--chunk_tokens=64");
    auto server = ServerProcess::Start(flags);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  std::unique_ptr<Client> Connect(bool shm, const std::string& api_key = "") {
    ClientOptions options;
    options.server = server_->address();
    options.api_key = api_key;
    if (shm) options.shm_socket = socket_;
    auto client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  // A raw stub, for requests the client library never builds.
  std::unique_ptr<v1::KvCacheService::Stub> Stub() {
    return v1::KvCacheService::NewStub(grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials()));
  }

  grpc::Status RawGet(v1::GetRequest request, const std::string& api_key = "") {
    grpc::ClientContext context;
    if (!api_key.empty())
      context.AddMetadata("authorization", "Bearer " + api_key);
    auto reader = Stub()->Get(&context, request);
    v1::GetResponse message;
    while (reader->Read(&message)) {
    }
    return reader->Finish();
  }

  static v1::GetRequest GetRequestFor(const KvCache& cache,
                                      const std::string& handle,
                                      uint64_t offset, uint64_t length) {
    v1::GetRequest request;
    request.set_model(kModel);
    for (int32_t token : cache.tokens) request.add_tokens(token);
    request.mutable_region_target()->set_region(handle);
    request.mutable_region_target()->set_offset(offset);
    request.mutable_region_target()->set_length(length);
    return request;
  }

  // The admin endpoint's /v1/stats "shm" object, and /metrics.
  nlohmann::json ShmStats() {
    auto body = server_->AdminGet("/v1/stats");
    EXPECT_TRUE(body.ok()) << body.status();
    return body.ok() ? nlohmann::json::parse(*body)["shm"] : nlohmann::json();
  }
  std::string Metrics() {
    auto body = server_->AdminGet("/metrics");
    EXPECT_TRUE(body.ok()) << body.status();
    return body.ok() ? *body : "";
  }

  void ExpectAlive(const std::string& api_key = "") {
    ASSERT_TRUE(server_->Alive());
    auto client = Connect(false, api_key);
    ASSERT_NE(client, nullptr);
    EXPECT_TRUE(client->Lookup(kModel, std::vector<int32_t>{1, 2, 3}).ok());
  }

  ScopedTempDir dir_{"seqkv-shm"};
  std::string socket_;
  std::unique_ptr<ServerProcess> server_;
};

// Every codec: what a Get through shared memory returns is exactly what a
// Get through messages returns, and, for the lossless ones, what was put.
TEST_F(ShmTest, RoundTripsBitExactForEveryCodec) {
  SEQKV_NEEDS_TEST_DATA("kv/a_dev_00.safetensors");
  Start();
  const KvCache full = Load("a_dev_00");
  KvCache cache = full;
  cache.tokens.resize(300);  // 4 full chunks and a partial one
  cache.ResizeTensors();
  {
    // The tensors are [layer][head][token][dim]: keep each row's first 300.
    const size_t row = size_t{cache.layout.head_dim} * 2;
    const size_t rows =
        size_t{cache.layout.num_layers} * cache.layout.num_kv_heads;
    for (size_t r = 0; r < rows; ++r) {
      std::memcpy(cache.k.data() + r * 300 * row,
                  full.k.data() + r * full.num_tokens() * row, 300 * row);
      std::memcpy(cache.v.data() + r * 300 * row,
                  full.v.data() + r * full.num_tokens() * row, 300 * row);
    }
  }
  ASSERT_TRUE(cache.Validate().ok());
  auto shm = Connect(true);
  auto grpc = Connect(false);
  ASSERT_TRUE(shm->uses_shared_memory());
  ModelRegistration registration;
  registration.model = kModel;
  registration.layout = cache.layout;
  auto state = BuildCodecStateFromModelDir(DataPath("lm"), cache.layout);
  ASSERT_TRUE(state.ok()) << state.status();
  registration.codec_state = *state;
  ASSERT_TRUE(grpc->RegisterModel(registration).ok());
  const std::string expected = TokenMajor(cache);
  int namespace_index = 0;
  for (const std::string codec :
       {"raw", "lossless", "turbo:4", "kivi:2", "predictive:rel_mse=0.01"}) {
    SCOPED_TRACE(codec);
    const std::string name_space = "";
    // Each codec under tokens of its own, so nothing deduplicates.
    KvCache put = cache;
    for (int32_t& token : put.tokens) token += 1000 * ++namespace_index % 7;
    put.tokens[0] = 100000 + namespace_index;
    auto stored = shm->Put({kModel, codec, name_space}, put);
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ(stored->tokens, 300u);
    auto by_messages = grpc->Get({kModel}, put.tokens);
    ASSERT_TRUE(by_messages.ok()) << by_messages.status();
    auto by_region = shm->Get({kModel}, put.tokens);
    ASSERT_TRUE(by_region.ok()) << by_region.status();
    EXPECT_EQ(by_region->tokens, put.tokens);
    EXPECT_TRUE(by_region->k == by_messages->k &&
                by_region->v == by_messages->v);
    if (codec == "raw" || codec == "lossless") {
      EXPECT_EQ(TokenMajor(*by_region), expected);
    }
    // A range that starts and ends inside chunks, into an offset of a
    // region the caller owns, leaving the bytes around it alone.
    auto region = shm->CreateRegion(8 << 20);
    ASSERT_TRUE(region.ok()) << region.status();
    std::memset((*region)->bytes().data(), 0xab, (*region)->size());
    auto placed = shm->GetIntoRegion({kModel, "", 50, 250}, put.tokens,
                                     **region, 4096, 4 << 20);
    ASSERT_TRUE(placed.ok()) << placed.status();
    const size_t token_bytes = cache.layout.bytes_per_token();
    ASSERT_EQ(placed->data_bytes, 200 * token_bytes);
    EXPECT_EQ(placed->matched_tokens, 300u);
    const std::string messages = TokenMajor(*by_messages);
    EXPECT_EQ(
        std::memcmp((*region)->bytes().data() + 4096,
                    messages.data() + 50 * token_bytes, placed->data_bytes),
        0);
    EXPECT_EQ((*region)->bytes()[4095], std::byte{0xab});
    EXPECT_EQ((*region)->bytes()[4096 + placed->data_bytes], std::byte{0xab});
    ASSERT_TRUE(shm->UnregisterRegion(**region).ok());
  }
  // A Put from the caller's own region, read back through messages.
  auto region = shm->CreateRegion(expected.size() + 8192);
  ASSERT_TRUE(region.ok());
  std::memcpy((*region)->bytes().data() + 8192, expected.data(),
              expected.size());
  KvCache fresh = cache;
  fresh.tokens[0] = 424242;
  auto put = shm->PutFromRegion({kModel, "raw"}, cache.layout, fresh.tokens,
                                **region, 8192);
  ASSERT_TRUE(put.ok()) << put.status();
  auto back = grpc->Get({kModel}, fresh.tokens);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(TokenMajor(*back), expected);
}

// A Get whose prompt would need a scratch region over max_scratch_bytes
// comes in messages, the same bytes.
TEST_F(ShmTest, PromptsPastTheScratchLimitUseMessages) {
  SEQKV_NEEDS_TEST_DATA("kv/a_dev_01.safetensors");
  Start();
  const KvCache cache = Load("a_dev_01");
  ASSERT_TRUE(Connect(true)->Put({kModel, "raw"}, cache).ok());
  ClientOptions options;
  options.server = server_->address();
  options.shm_socket = socket_;
  options.max_scratch_bytes = TokenMajor(cache).size() - 1;
  auto limited = Client::Connect(options);
  ASSERT_TRUE(limited.ok()) << limited.status();
  auto got = (*limited)->Get({kModel}, cache.tokens);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(TokenMajor(*got), TokenMajor(cache));
  EXPECT_EQ(ShmStats()["get_calls"], 0);
  // One byte more and it goes through a region.
  options.max_scratch_bytes += 1;
  auto enough = Client::Connect(options);
  ASSERT_TRUE(enough.ok());
  got = (*enough)->Get({kModel}, cache.tokens);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(TokenMajor(*got), TokenMajor(cache));
  EXPECT_EQ(ShmStats()["get_calls"], 1);
}

// Clients of both transports at once, each reading what the others wrote.
TEST_F(ShmTest, BothTransportsAtOnce) {
  SEQKV_NEEDS_TEST_DATA("kv/a_dev_01.safetensors");
  Start();
  const KvCache base = Load("a_dev_01");
  const std::string expected = TokenMajor(base);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto writer = Connect(t % 2 == 0);
      auto reader = Connect(t % 2 == 1);
      for (int i = 0; i < 3; ++i) {
        KvCache cache = base;
        cache.tokens[0] = 1000 * t + i;
        if (!writer->Put({kModel, "raw"}, cache).ok()) ++failures;
        auto got = reader->Get({kModel}, cache.tokens);
        if (!got.ok() || TokenMajor(*got) != expected) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  ExpectAlive();
}

TEST_F(ShmTest, BoundsViolationsAreOutOfRangeAndWriteNothing) {
  SEQKV_NEEDS_TEST_DATA("kv/a_dev_02.safetensors");
  Start();
  const KvCache cache = Load("a_dev_02");
  auto shm = Connect(true);
  ASSERT_TRUE(shm->Put({kModel, "raw"}, cache).ok());
  const uint64_t bytes = TokenMajor(cache).size();
  auto region = shm->CreateRegion(bytes);
  ASSERT_TRUE(region.ok());
  const uint64_t size = (*region)->size();
  std::memset((*region)->bytes().data(), 0x5a, size);
  const std::string& handle = (*region)->handle();
  // Past the end, wrapping around, and too small for the data.
  for (const auto& [offset, length] :
       std::vector<std::pair<uint64_t, uint64_t>>{
           {size, 1}, {1, size}, {~uint64_t{0}, 2}, {0, bytes - 1}}) {
    grpc::Status status = RawGet(GetRequestFor(cache, handle, offset, length));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE)
        << offset << "+" << length << ": " << status.error_message();
  }
  for (std::byte b : (*region)->bytes()) ASSERT_EQ(b, std::byte{0x5a});
  // A Put naming bytes outside the region stores nothing.
  {
    grpc::ClientContext context;
    v1::PutResponse response;
    auto writer = Stub()->Put(&context, &response);
    v1::PutRequest request;
    request.mutable_header()->set_model(kModel);
    for (int32_t token : cache.tokens)
      request.mutable_header()->add_tokens(token + 1);
    ASSERT_TRUE(writer->Write(request));
    request.mutable_region_data()->set_region(handle);
    request.mutable_region_data()->set_offset(size - 100);
    request.mutable_region_data()->set_length(bytes);
    writer->Write(request);
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE)
        << status.error_message();
  }
  std::vector<int32_t> shifted(cache.tokens);
  for (int32_t& token : shifted) token += 1;
  auto looked = shm->Lookup(kModel, shifted);
  ASSERT_TRUE(looked.ok());
  EXPECT_EQ(looked->matched_tokens, 0u);
  // A handle that is not 16 bytes, and one nobody registered.
  EXPECT_EQ(RawGet(GetRequestFor(cache, "abc", 0, 1)).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(
      RawGet(GetRequestFor(cache, std::string(16, '\0'), 0, 1)).error_code(),
      grpc::StatusCode::NOT_FOUND);
  // One Get that fits.
  EXPECT_TRUE(RawGet(GetRequestFor(cache, handle, 0, bytes)).ok());
  // The admin endpoint counts each of these by kind, and the region
  // traffic: the client's Put (through its scratch region) and that Get.
  const nlohmann::json shm_stats = ShmStats();
  EXPECT_EQ(shm_stats["enabled"], true);
  EXPECT_EQ(shm_stats["errors"]["bounds"], 5);  // 4 Gets and the Put
  EXPECT_EQ(shm_stats["errors"]["bad_handle"], 1);
  EXPECT_EQ(shm_stats["errors"]["region_gone"], 1);
  EXPECT_EQ(shm_stats["errors"]["ownership"], 0);
  EXPECT_EQ(shm_stats["put_calls"], 1);
  EXPECT_EQ(shm_stats["put_bytes"], bytes);
  EXPECT_EQ(shm_stats["get_calls"], 1);
  EXPECT_EQ(shm_stats["get_bytes"], bytes);
  const uint64_t mapped =
      std::bit_ceil(std::max<uint64_t>(bytes, 1 << 20)) + size;
  EXPECT_EQ(shm_stats["regions"], 2);
  EXPECT_EQ(shm_stats["mapped_bytes"], mapped);
  EXPECT_EQ(shm_stats["tenants"]["default"]["regions"], 2);
  EXPECT_EQ(shm_stats["tenants"]["default"]["mapped_bytes"], mapped);
  const std::string metrics = Metrics();
  for (const std::string& line : std::vector<std::string>{
           "seqkv_shm_regions 2",
           "seqkv_shm_tenant_regions{tenant=\"default\"} 2",
           absl::StrCat("seqkv_shm_mapped_bytes ", mapped),
           "seqkv_shm_errors_total{kind=\"bounds\"} 5",
           "seqkv_shm_errors_total{kind=\"bad_handle\"} 1",
           "seqkv_shm_errors_total{kind=\"region_gone\"} 1",
           "seqkv_shm_errors_total{kind=\"ownership\"} 0",
           "seqkv_shm_put_calls_total 1", "seqkv_shm_get_calls_total 1",
           absl::StrCat("seqkv_shm_get_bytes_total ", bytes)})
    EXPECT_NE(metrics.find("\n" + line + "\n"), std::string::npos) << line;
  ExpectAlive();
}

// Regions belong to the tenant that registered them, live as long as the
// connection that did, and count against the tenant's limit.
TEST_F(ShmTest, OwnershipAndLifetime) {
  SEQKV_NEEDS_TEST_DATA("kv/a_dev_03.safetensors");
  const std::string config = dir_.string() + "/seqkv.yaml";
  {
    std::ofstream(config) << "tenants:\n  - name: acme\n    api_key_sha256: [\""
                          << Sha256Hex("acme-key")
                          << "\"]\n  - name: globex\n    api_key_sha256: [\""
                          << Sha256Hex("globex-key") << "\"]\n";
  }
  Start({"--config=" + config, "--shm_max_regions_per_tenant=2"});
  const KvCache cache = Load("a_dev_03");
  const uint64_t bytes = TokenMajor(cache).size();
  auto acme = Connect(true, "acme-key");
  ASSERT_TRUE(acme->Put({kModel, "raw"}, cache).ok());
  auto acme_region = acme->CreateRegion(bytes);
  ASSERT_TRUE(acme_region.ok()) << acme_region.status();
  // globex names acme's region: refused, whatever it asks for.
  auto globex = Connect(true, "globex-key");
  ASSERT_TRUE(globex->Put({kModel, "raw"}, cache).ok());
  grpc::Status denied = RawGet(
      GetRequestFor(cache, (*acme_region)->handle(), 0, bytes), "globex-key");
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << denied.error_message();
  EXPECT_EQ(ShmStats()["errors"]["ownership"], 1);
  EXPECT_TRUE(RawGet(GetRequestFor(cache, (*acme_region)->handle(), 0, bytes),
                     "acme-key")
                  .ok());
  // A wrong key registers nothing.
  auto stranger = transport::RegionConnection::Connect(socket_, "Bearer nope");
  ASSERT_TRUE(stranger.ok());
  EXPECT_EQ((*stranger)->CreateRegion(4096).status().code(),
            absl::StatusCode::kUnauthenticated);
  // The tenant's limit: acme's client already holds one scratch region (its
  // Put) and this one.
  EXPECT_EQ(acme->CreateRegion(4096).status().code(),
            absl::StatusCode::kResourceExhausted);
  // Once its connection closes, the region is gone for everyone.
  const std::string handle = (*acme_region)->handle();
  acme.reset();
  for (int i = 0; i < 100; ++i) {  // the server notices the close at once
    if (RawGet(GetRequestFor(cache, handle, 0, bytes), "acme-key")
            .error_code() == grpc::StatusCode::NOT_FOUND)
      break;
    usleep(10000);
  }
  EXPECT_EQ(
      RawGet(GetRequestFor(cache, handle, 0, bytes), "acme-key").error_code(),
      grpc::StatusCode::NOT_FOUND);
  // Per tenant: acme's regions went with its connection; globex holds its
  // client's scratch region.
  const nlohmann::json tenants = ShmStats()["tenants"];
  EXPECT_FALSE(tenants.contains("acme")) << tenants.dump();
  EXPECT_EQ(tenants["globex"]["regions"], 1) << tenants.dump();
  EXPECT_NE(Metrics().find("\nseqkv_shm_tenant_regions{tenant=\"globex\"} 1\n"),
            std::string::npos);
  // Its limit is free again.
  auto again = Connect(true, "acme-key");
  EXPECT_TRUE(again->CreateRegion(4096).ok());
  ExpectAlive("globex-key");
}

// What the server refuses to map, and a client that keeps writing to its
// region or lets it go during Gets.
TEST_F(ShmTest, UnsafeRegionsAreRefusedAndGoneRegionsAbortGets) {
  SEQKV_NEEDS_TEST_DATA("kv/a_dev_04.safetensors");
  Start();
  // Not sealed against shrinking (truncating it would fault the server),
  // and not a memfd at all: refused, nothing mapped.
  auto sock = transport::ConnectSeqpacket(socket_);
  ASSERT_TRUE(sock.ok()) << sock.status();
  const int unsealed =
      memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT_EQ(ftruncate(unsealed, 1 << 20), 0);
  FILE* regular = tmpfile();
  ASSERT_EQ(ftruncate(fileno(regular), 1 << 20), 0);
  for (const int fd : {unsealed, fileno(regular), -1}) {
    v1::RegionRequest request;
    request.mutable_register_region();
    ASSERT_TRUE(
        transport::SendDatagram(*sock, request.SerializeAsString(), fd).ok());
    auto answer = transport::ReceiveDatagram(*sock);
    ASSERT_TRUE(answer.ok()) << answer.status();
    v1::RegionResponse response;
    ASSERT_TRUE(response.ParseFromString(answer->bytes));
    EXPECT_EQ(response.code(),
              fd < 0 ? static_cast<int>(absl::StatusCode::kInvalidArgument)
                     : static_cast<int>(absl::StatusCode::kFailedPrecondition))
        << response.message();
  }
  // A datagram that is not a request at all.
  ASSERT_TRUE(transport::SendDatagram(*sock, "\xff\xff garbage").ok());
  auto answer = transport::ReceiveDatagram(*sock);
  ASSERT_TRUE(answer.ok());
  v1::RegionResponse garbage;
  ASSERT_TRUE(garbage.ParseFromString(answer->bytes));
  EXPECT_EQ(garbage.code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  close(unsealed);
  fclose(regular);
  close(*sock);
  const KvCache cache = Load("a_dev_04");
  const uint64_t bytes = TokenMajor(cache).size();
  auto shm = Connect(true);
  ASSERT_TRUE(shm->Put({kModel, "raw"}, cache).ok());
  // Gets into a region whose connection closes meanwhile: each is OK or
  // answered ABORTED / NOT_FOUND; none harms the server.
  for (int round = 0; round < 5; ++round) {
    auto holder = transport::RegionConnection::Connect(socket_, "");
    ASSERT_TRUE(holder.ok());
    auto region = (*holder)->CreateRegion(bytes);
    ASSERT_TRUE(region.ok());
    std::atomic<bool> stop{false};
    std::thread getter([&] {
      while (!stop) {
        grpc::Status status =
            RawGet(GetRequestFor(cache, (*region)->handle(), 0, bytes));
        const auto code = status.error_code();
        EXPECT_TRUE(code == grpc::StatusCode::OK ||
                    code == grpc::StatusCode::ABORTED ||
                    code == grpc::StatusCode::NOT_FOUND)
            << status.error_message();
        if (code == grpc::StatusCode::NOT_FOUND) break;
      }
    });
    usleep(20000 * (round + 1));
    holder->reset();  // closes the connection: the server drops the region
    getter.join();
    stop = true;
  }
  // A client scribbling over its region while Gets write there spoils
  // only its own copy: Gets are OK or ABORTED, and the stored chunk is not
  // taken for damaged (it is served whole afterwards).
  {
    auto region = shm->CreateRegion(bytes);
    ASSERT_TRUE(region.ok());
    std::atomic<bool> stop{false};
    std::thread scribbler([&] {
      uint8_t value = 0;
      while (!stop)
        std::memset((*region)->bytes().data(), ++value, (*region)->size());
    });
    for (int i = 0; i < 20; ++i) {
      grpc::Status status =
          RawGet(GetRequestFor(cache, (*region)->handle(), 0, bytes));
      EXPECT_TRUE(status.ok() ||
                  status.error_code() == grpc::StatusCode::ABORTED)
          << status.error_message();
    }
    stop = true;
    scribbler.join();
    auto whole = Connect(false)->Get({kModel}, cache.tokens);
    ASSERT_TRUE(whole.ok()) << whole.status();
    EXPECT_EQ(TokenMajor(*whole), TokenMajor(cache));
  }
  ExpectAlive();
}

TEST_F(ShmTest, ServerWithoutRegionSocketRefusesSlices) {
  SEQKV_NEEDS_TEST_DATA("kv/a_dev_05.safetensors");
  auto server = ServerProcess::Start({"--shm_listen=none"});
  ASSERT_TRUE(server.ok());
  server_ = std::move(*server);
  const KvCache cache = Load("a_dev_05");
  ASSERT_TRUE(Connect(false)->Put({kModel, "raw"}, cache).ok());
  grpc::Status status =
      RawGet(GetRequestFor(cache, std::string(16, 'r'), 0, 1 << 20));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << status.error_message();
  EXPECT_EQ(ShmStats()["enabled"], false);
  EXPECT_NE(Metrics().find("\nseqkv_shm_regions 0\n"), std::string::npos);
}

}  // namespace
}  // namespace seqkv::testing
