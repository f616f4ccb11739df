// The server's limits against hostile or broken clients, on a live server:
// declared layouts that would need more memory than exists, many
// concurrent Puts and registrations under a small memory budget, streams
// that stall or are never read, one tenant opening too many streams, and a
// second server started on a port in use. Memory is checked from the
// server's /proc status (its peak resident set).
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proto/layout_convert.h"
#include "seqkv/v1/kvcache.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/run_command.h"
#include "tests/scoped_temp_dir.h"

namespace seqkv {
namespace {

using testing::ServerProcess;

constexpr uint64_t kMiB = 1 << 20;

// A field of /proc/PID/status in bytes ("VmHWM", "VmRSS") or as a count
// ("Threads"); 0 if unreadable.
uint64_t ProcStatus(pid_t pid, const std::string& field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, field + ":")) continue;
    std::string value = line.substr(field.size() + 1);
    const bool kilobytes = absl::StrContains(value, "kB");
    uint64_t number = 0;
    if (!absl::SimpleAtoi(
            absl::StripSuffix(absl::StripAsciiWhitespace(value), " kB"),
            &number))
      return 0;
    return kilobytes ? number * 1024 : number;
  }
  return 0;
}

std::unique_ptr<v1::KvCacheService::Stub> Stub(const ServerProcess& server) {
  return v1::KvCacheService::NewStub(grpc::CreateChannel(
      server.address(), grpc::InsecureChannelCredentials()));
}

v1::PutRequest Header(const std::string& model, const KvLayout& layout,
                      uint32_t tokens, const std::string& codec = "raw") {
  v1::PutRequest request;
  v1::PutHeader& header = *request.mutable_header();
  header.set_model(model);
  *header.mutable_layout() = LayoutToProto(layout);
  for (uint32_t i = 0; i < tokens; ++i) header.add_tokens(1000 + i);
  header.set_codec(codec);
  return request;
}

v1::PutRequest Data(size_t bytes) {
  v1::PutRequest request;
  request.set_data(std::string(bytes, '\x11'));
  return request;
}

// A Put that sends its header and `data_bytes`, then waits for the test
// to end it (Finish) or for the server to.
struct OpenPut {
  grpc::ClientContext context;
  v1::PutResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::PutRequest>> writer;
};

std::unique_ptr<OpenPut> StartPut(v1::KvCacheService::Stub& stub,
                                  const v1::PutRequest& header,
                                  size_t data_bytes) {
  auto put = std::make_unique<OpenPut>();
  put->writer = stub.Put(&put->context, &put->response);
  put->writer->Write(header);
  if (data_bytes > 0) put->writer->Write(Data(data_bytes));
  return put;
}

nlohmann::json StatsJson(const ServerProcess& server) {
  auto body = server.AdminGet("/v1/stats");
  EXPECT_TRUE(body.ok()) << body.status();
  return body.ok() ? nlohmann::json::parse(*body) : nlohmann::json();
}

std::string Metrics(const ServerProcess& server) {
  auto body = server.AdminGet("/metrics");
  EXPECT_TRUE(body.ok()) << body.status();
  return body.ok() ? *body : "";
}

TEST(Limits, AHugeDeclaredLayoutIsRefusedBeforeAnyMemoryIsSpent) {
  auto server = ServerProcess::Start({"--memory_budget_bytes=268435456"});
  ASSERT_TRUE(server.ok()) << server.status();
  const pid_t pid = (*server)->pid();
  const uint64_t baseline = ProcStatus(pid, "VmHWM");
  auto stub = Stub(**server);

  // 1024 layers x 1024 heads x 65536 fp32: 512 GiB per token.
  const KvLayout huge{1024, 1024, 65536, DType::kFP32};
  auto put = StartPut(*stub, Header("huge", huge, 1), 1);
  put->writer->WritesDone();
  grpc::Status status = put->writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "--max_chunk_bytes"))
      << status.error_message();

  // A 70B model's layout with 65536-token chunks: 20 GiB a chunk.
  v1::RegisterModelRequest registration;
  registration.set_model("seventy-b");
  *registration.mutable_layout() =
      LayoutToProto(KvLayout{80, 8, 128, DType::kBF16});
  registration.set_chunk_tokens(65536);
  v1::RegisterModelResponse registered;
  grpc::ClientContext context;
  status = stub->RegisterModel(&context, registration, &registered);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();

  EXPECT_LT(ProcStatus(pid, "VmHWM"), baseline + 64 * kMiB);
  // Nothing of either was stored.
  grpc::ClientContext get_model;
  v1::GetModelRequest which;
  which.set_model("huge");
  v1::GetModelResponse model;
  EXPECT_EQ(stub->GetModel(&get_model, which, &model).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST(Limits, ConcurrentPutsStayWithinTheMemoryBudget) {
  constexpr uint64_t kBudget = 128 * kMiB;
  auto server =
      ServerProcess::Start({absl::StrCat("--memory_budget_bytes=", kBudget),
                            "--max_chunk_bytes=33554432", "--memory_wait=500ms",
                            "--chunk_buffer_pool_bytes=0"});
  ASSERT_TRUE(server.ok()) << server.status();
  const pid_t pid = (*server)->pid();
  const uint64_t baseline = ProcStatus(pid, "VmHWM");
  auto stub = Stub(**server);

  // 16 layers x 8 heads x 128 bf16: 64 KiB a token; 256-token chunks of
  // 16 MiB. Each Put sends one token's bytes, so each holds one chunk.
  const KvLayout layout{16, 8, 128, DType::kBF16};
  std::vector<std::unique_ptr<OpenPut>> puts;
  for (int i = 0; i < 24; ++i)
    puts.push_back(StartPut(*stub,
                            Header(absl::StrCat("model-", i), layout, 1024),
                            layout.bytes_per_token()));
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const uint64_t peak = ProcStatus(pid, "VmHWM");
  const nlohmann::json memory = StatsJson(**server)["memory"];
  EXPECT_LE(memory["peak_reserved_bytes"].get<uint64_t>(), kBudget);
  EXPECT_GT(memory["budget_refusals"].get<uint64_t>(), 0u);
  int refused = 0;
  for (auto& put : puts) {
    // The Puts that hold a chunk end short of their data.
    put->writer->WritesDone();
    const grpc::Status status = put->writer->Finish();
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++refused;
      EXPECT_TRUE(absl::StrContains(status.error_message(), "memory budget"))
          << status.error_message();
    } else {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << status.error_message();
    }
  }
  // 24 chunks of 16 MiB were asked for; at most 8 fit at once.
  EXPECT_GE(refused, 16);
  // The budget, and what gRPC holds of the messages besides.
  EXPECT_LT(peak, baseline + kBudget + 48 * kMiB)
      << "peak resident " << peak / kMiB << " MiB, baseline " << baseline / kMiB
      << " MiB";

  // Everything is given back: a whole Put fits again.
  for (int attempt = 0;
       attempt < 50 && StatsJson(**server)["memory"]["reserved_bytes"] != 0;
       ++attempt)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(StatsJson(**server)["memory"]["reserved_bytes"], 0);
  auto whole = StartPut(*stub, Header("whole", layout, 300), 0);
  for (int i = 0; i < 300; ++i)
    ASSERT_TRUE(whole->writer->Write(Data(layout.bytes_per_token())));
  whole->writer->WritesDone();
  const grpc::Status status = whole->writer->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(whole->response.tokens(), 300u);
}

TEST(Limits, ConcurrentRegistrationsStayWithinTheMemoryBudget) {
  constexpr uint64_t kBudget = 64 * kMiB;
  auto server = ServerProcess::Start(
      {absl::StrCat("--memory_budget_bytes=", kBudget), "--memory_wait=500ms",
       "--max_chunk_bytes=16777216"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = Stub(**server);
  // Four registrations of 48 MiB of codec state each, in 4 MiB pieces.
  std::vector<grpc::Status> results(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      grpc::ClientContext context;
      v1::RegisterModelStreamResponse response;
      auto writer = stub->RegisterModelStream(&context, &response);
      v1::RegisterModelStreamRequest message;
      message.mutable_registration()->set_model(absl::StrCat("state-", i));
      *message.mutable_registration()->mutable_layout() =
          LayoutToProto(KvLayout{2, 2, 64, DType::kBF16});
      writer->Write(message);
      for (int piece = 0; piece < 12; ++piece) {
        v1::RegisterModelStreamRequest next;
        next.mutable_codec_state_piece()->set_key("blob");
        next.mutable_codec_state_piece()->set_data(
            std::string(4 * kMiB, static_cast<char>(piece)));
        if (!writer->Write(next)) break;
      }
      writer->WritesDone();
      results[i] = writer->Finish();
    });
  }
  for (std::thread& thread : threads) thread.join();
  int refused = 0;
  for (const grpc::Status& status : results) {
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++refused;
      EXPECT_TRUE(absl::StrContains(status.error_message(), "memory budget"))
          << status.error_message();
    } else {
      EXPECT_TRUE(status.ok()) << status.error_message();
    }
  }
  EXPECT_GE(refused, 1);
  const nlohmann::json memory = StatsJson(**server)["memory"];
  EXPECT_LE(memory["peak_reserved_bytes"].get<uint64_t>(), kBudget);
  EXPECT_EQ(memory["reserved_bytes"], 0);
}

TEST(Limits, StalledPutsAndUnreadGetsAreCancelled) {
  auto server = ServerProcess::Start({"--stream_idle_timeout_s=2"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = Stub(**server);
  const KvLayout layout{4, 2, 128, DType::kBF16};
  // 64 MiB to Get: more than any flow-control window holds.
  const uint32_t tokens = 64 * kMiB / layout.bytes_per_token();
  {
    auto put = StartPut(*stub, Header("m", layout, tokens), 0);
    for (uint32_t sent = 0; sent < tokens; sent += 256)
      ASSERT_TRUE(put->writer->Write(Data(
          std::min<uint32_t>(256, tokens - sent) * layout.bytes_per_token())));
    put->writer->WritesDone();
    ASSERT_TRUE(put->writer->Finish().ok());
  }

  std::vector<std::unique_ptr<OpenPut>> puts;
  for (int i = 0; i < 20; ++i)
    puts.push_back(StartPut(*stub, Header("m", layout, 16), 0));
  struct OpenGet {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::GetResponse>> reader;
  };
  std::vector<std::unique_ptr<OpenGet>> gets;
  v1::GetRequest request;
  request.set_model("m");
  for (uint32_t i = 0; i < tokens; ++i) request.add_tokens(1000 + i);
  for (int i = 0; i < 5; ++i) {
    auto get = std::make_unique<OpenGet>();
    get->reader = stub->Get(&get->context, request);
    gets.push_back(std::move(get));
  }
  const auto start = std::chrono::steady_clock::now();
  for (auto& put : puts) {
    // Cancelled by the server, which gRPC reports as CANCELLED whatever the
    // handler returns.
    const grpc::Status status = put->writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED)
        << status.error_message();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  // The Gets were cancelled on the server's side: reading now ends early.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  for (auto& get : gets) {
    v1::GetResponse message;
    uint64_t received = 0;
    while (get->reader->Read(&message)) received += message.data().size();
    EXPECT_FALSE(get->reader->Finish().ok());
    EXPECT_LT(received, uint64_t{tokens} * layout.bytes_per_token());
  }
  const std::string metrics = Metrics(**server);
  EXPECT_TRUE(absl::StrContains(metrics, "seqkv_open_streams 0")) << metrics;
  EXPECT_FALSE(
      absl::StrContains(metrics, "seqkv_stream_idle_cancellations_total 0\n"));
}

TEST(Limits, OneTenantCannotHoldMoreStreamsThanItsLimit) {
  auto server = ServerProcess::Start({"--max_streams_per_tenant=3"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = Stub(**server);
  const KvLayout layout{2, 2, 64, DType::kBF16};
  auto first =
      StartPut(*stub, Header("m", layout, 2), 2 * layout.bytes_per_token());
  first->writer->WritesDone();
  ASSERT_TRUE(first->writer->Finish().ok());
  std::vector<std::unique_ptr<OpenPut>> held;
  for (int i = 0; i < 3; ++i)
    held.push_back(StartPut(*stub, Header("m", layout, 4), 0));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto fourth = StartPut(*stub, Header("m", layout, 4), 0);
  grpc::Status status = fourth->writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_TRUE(
      absl::StrContains(status.error_message(), "--max_streams_per_tenant"))
      << status.error_message();
  // Unary calls are not streams: a Lookup still answers.
  auto client = (*server)->Connect();
  ASSERT_TRUE(client.ok());
  const std::vector<int32_t> tokens = {1000, 1001};
  EXPECT_TRUE((*client)->Lookup("m", tokens).ok());
  for (auto& put : held) {
    put->context.TryCancel();
    put->writer->Finish();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto again =
      StartPut(*stub, Header("m", layout, 4), 4 * layout.bytes_per_token());
  again->writer->WritesDone();
  status = again->writer->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST(Limits, ASecondServerRefusesAPortInUse) {
  auto server = ServerProcess::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  testing::ScopedTempDir other;
  // `timeout`: a server that wrongly starts would serve until killed.
  const auto result = testing::RunCommand(absl::StrCat(
      "timeout 30 ", SEQKV_BIN_DIR,
      "/seqkv-server --listen=", (*server)->address(),
      " --admin_listen= --data_dir=", other.path().string(), " 2>&1"));
  EXPECT_EQ(result.exit_code, 1) << result.out;
  EXPECT_TRUE(absl::StrContains(result.out, "cannot listen")) << result.out;
}

}  // namespace
}  // namespace seqkv

namespace seqkv {
namespace {

TEST(Limits, StalledCallsHoldNoMoreThreadsThanTheLimit) {
  auto server =
      ServerProcess::Start({"--max_threads=12", "--max_streams_per_tenant=0"});
  ASSERT_TRUE(server.ok()) << server.status();
  const pid_t pid = (*server)->pid();
  auto stub = Stub(**server);
  const KvLayout layout{2, 2, 64, DType::kBF16};
  const uint64_t threads_before = ProcStatus(pid, "Threads");
  std::vector<std::unique_ptr<OpenPut>> held;
  for (int i = 0; i < 40; ++i)
    held.push_back(StartPut(*stub, Header("m", layout, 4), 0));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  // The calls beyond the limit wait for a thread instead of starting one.
  EXPECT_LE(ProcStatus(pid, "Threads"), threads_before + 12);
  for (auto& put : held) {
    put->context.TryCancel();
    put->writer->Finish();
  }
  auto put =
      StartPut(*stub, Header("m", layout, 4), 4 * layout.bytes_per_token());
  put->writer->WritesDone();
  const grpc::Status status = put->writer->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
}

}  // namespace
}  // namespace seqkv
