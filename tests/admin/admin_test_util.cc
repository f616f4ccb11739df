#include "tests/admin/admin_test_util.h"

#include <httplib.h>

#include <cstdio>
#include <random>

#include "absl/strings/numbers.h"

namespace seqkv::testing {

HttpReply HttpGet(int port, const std::string& path,
                  const std::string& authorization) {
  httplib::Client http("127.0.0.1", port);
  http.set_read_timeout(std::chrono::seconds(30));
  httplib::Headers headers;
  if (!authorization.empty()) headers.emplace("Authorization", authorization);
  auto result = http.Get(path, headers);
  HttpReply reply;
  if (!result) return reply;
  reply.status = result->status;
  reply.body = result->body;
  reply.www_authenticate = result->get_header_value("WWW-Authenticate");
  reply.content_type = result->get_header_value("Content-Type");
  return reply;
}

int PortOf(const std::string& address) {
  int port = 0;
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port))
    return 0;
  return port;
}

std::vector<int32_t> RandomTokens(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> tokens(count);
  for (int32_t& token : tokens) token = static_cast<int32_t>(rng() % 50000);
  return tokens;
}

KvCache SyntheticCache(std::vector<int32_t> tokens, uint32_t seed) {
  KvCache cache;
  cache.layout.num_layers = 2;
  cache.layout.num_kv_heads = 1;
  cache.layout.head_dim = 64;
  cache.layout.dtype = DType::kBF16;
  cache.tokens = std::move(tokens);
  cache.AllocateTensors();
  std::mt19937 rng(seed);
  for (auto* tensor : {&cache.k, &cache.v})
    for (std::byte& b : *tensor) b = static_cast<std::byte>(rng());
  return cache;
}

}  // namespace seqkv::testing
