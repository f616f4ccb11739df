// seqkv-redis-bench: Redis SET and GET of large values from N concurrent
// clients (one connection each), measured like `seqkv bench` so that
// bench/compare can put the two side by side. redis-benchmark is built for
// small values; this sends the same byte counts seqkv's chunks carry.
#include <hiredis/hiredis.h>

#include <iostream>
#include <memory>
#include <random>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "bench/load/timed_loop.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "Redis host");
ABSL_FLAG(int, port, 6379, "Redis port");
ABSL_FLAG(std::string, unix_socket, "",
          "connect to Redis over this Unix socket instead of --host/--port");
ABSL_FLAG(std::string, op, "set", "set or get");
ABSL_FLAG(int, clients, 4, "concurrent clients");
ABSL_FLAG(uint64_t, bytes, 1 << 20, "bytes per value");
ABSL_FLAG(int, keys_per_client, 4,
          "distinct keys each client cycles through (bounds Redis's memory); "
          "0: every SET writes a key never written before, as every seqkv "
          "bench Put stores a chunk never stored before (set only)");
ABSL_FLAG(double, duration_s, 5, "seconds to run");
ABSL_FLAG(uint32_t, warmup_ops, 1,
          "untimed commands per client before timing starts");
ABSL_FLAG(bool, json, false, "print JSON");

namespace seqkv::bench {
namespace {

struct ContextDeleter {
  void operator()(redisContext* context) const { redisFree(context); }
};
struct ReplyDeleter {
  void operator()(void* reply) const { freeReplyObject(reply); }
};
using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

absl::Status Check(redisContext* context, redisReply* reply) {
  if (reply == nullptr)
    return absl::UnavailableError(
        absl::StrCat("redis: ", context->err ? context->errstr : "no reply"));
  if (reply->type == REDIS_REPLY_ERROR)
    return absl::InternalError(
        absl::StrCat("redis: ", std::string(reply->str, reply->len)));
  return absl::OkStatus();
}

int Run() {
  const std::string op = absl::GetFlag(FLAGS_op);
  if (op != "set" && op != "get") {
    std::cerr << "--op must be set or get\n";
    return 2;
  }
  const uint64_t bytes = absl::GetFlag(FLAGS_bytes);
  const int keys_per_client = absl::GetFlag(FLAGS_keys_per_client);
  if (keys_per_client < 0 || (keys_per_client == 0 && op != "set")) {
    std::cerr << "--keys_per_client must be positive (0 only with --op set)\n";
    return 2;
  }
  // New keys make Redis allocate memory for every SET, where cycling
  // through a few keys lets it reuse the memory of the value it replaces.
  const bool new_keys = keys_per_client == 0;
  std::string value(bytes, '\0');
  std::mt19937_64 rng(1);
  for (char& c : value) c = static_cast<char>(rng());

  auto make_op = [&](int index) -> Operation {
    timeval timeout{60, 0};
    const std::string unix_socket = absl::GetFlag(FLAGS_unix_socket);
    auto context = std::shared_ptr<redisContext>(
        unix_socket.empty()
            ? redisConnectWithTimeout(absl::GetFlag(FLAGS_host).c_str(),
                                      absl::GetFlag(FLAGS_port), timeout)
            : redisConnectUnixWithTimeout(unix_socket.c_str(), timeout),
        ContextDeleter());
    if (!context || context->err) {
      std::cerr << "redis connect: "
                << (context ? context->errstr : "out of memory") << "\n";
      return nullptr;
    }
    auto next = std::make_shared<int>(0);
    if (new_keys) {
      return [context, next, index, bytes, &value]() -> absl::Status {
        const std::string key =
            absl::StrCat("seqkv-bench:new:", bytes, ":", index, ":", (*next)++);
        ReplyPtr reply(static_cast<redisReply*>(
            redisCommand(context.get(), "SET %b %b", key.data(), key.size(),
                         value.data(), value.size())));
        return Check(context.get(), reply.get());
      };
    }
    auto names = std::make_shared<std::vector<std::string>>();
    for (int k = 0; k < keys_per_client; ++k)
      names->push_back(absl::StrCat("seqkv-bench:", bytes, ":", index, ":", k));
    // GET needs the values in place first; not timed.
    for (const std::string& key : *names) {
      ReplyPtr reply(static_cast<redisReply*>(
          redisCommand(context.get(), "SET %b %b", key.data(), key.size(),
                       value.data(), value.size())));
      if (!Check(context.get(), reply.get()).ok()) return nullptr;
    }
    if (op == "set") {
      return [context, names, next, &value]() -> absl::Status {
        const std::string& key = (*names)[(*next)++ % names->size()];
        ReplyPtr reply(static_cast<redisReply*>(
            redisCommand(context.get(), "SET %b %b", key.data(), key.size(),
                         value.data(), value.size())));
        return Check(context.get(), reply.get());
      };
    }
    return [context, names, next, bytes]() -> absl::Status {
      const std::string& key = (*names)[(*next)++ % names->size()];
      ReplyPtr reply(static_cast<redisReply*>(
          redisCommand(context.get(), "GET %b", key.data(), key.size())));
      if (auto status = Check(context.get(), reply.get()); !status.ok())
        return status;
      if (reply->type != REDIS_REPLY_STRING || reply->len != bytes)
        return absl::DataLossError("redis GET returned another size");
      return absl::OkStatus();
    };
  };
  TimedLoopOptions loop;
  loop.clients = absl::GetFlag(FLAGS_clients);
  loop.duration_s = absl::GetFlag(FLAGS_duration_s);
  loop.warmup_ops = absl::GetFlag(FLAGS_warmup_ops);
  loop.bytes_per_op = bytes;
  TimedLoopResult result = RunTimedLoop(loop, make_op);
  nlohmann::json json = {{"command", "redis"},
                         {"config",
                          {{"op", op},
                           {"clients", absl::GetFlag(FLAGS_clients)},
                           {"warmup_ops", absl::GetFlag(FLAGS_warmup_ops)},
                           {"keys_per_client", keys_per_client},
                           {"transport", absl::GetFlag(FLAGS_unix_socket).empty()
                                             ? "tcp"
                                             : "unix"},
                           {"bytes", bytes}}},
                         {"ops", {{op, TimedLoopJson(result)}}}};
  std::cout << (absl::GetFlag(FLAGS_json) ? json.dump() : json.dump(2))
            << std::endl;
  return result.errors == 0 ? 0 : 1;
}

}  // namespace
}  // namespace seqkv::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return seqkv::bench::Run();
}
