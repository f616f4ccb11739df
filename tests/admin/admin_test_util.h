// Helpers of the admin endpoint's tests: HTTP with status codes, synthetic
// caches, running a command and reading its output.
#ifndef SEQKV_TESTS_ADMIN_ADMIN_TEST_UTIL_H_
#define SEQKV_TESTS_ADMIN_ADMIN_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "model/kv_cache.h"
#include "tests/run_command.h"

namespace seqkv::testing {

struct HttpReply {
  int status = 0;  // 0: no connection
  std::string body;
  std::string www_authenticate;
  std::string content_type;
};

// GET http://127.0.0.1:port/path, with "Authorization: <authorization>" if
// it is not empty.
HttpReply HttpGet(int port, const std::string& path,
                  const std::string& authorization = "");

// Port of a "127.0.0.1:PORT" address.
int PortOf(const std::string& address);

// A cache with the given tokens and random bf16 values: 2 layers, 1 kv
// head, head_dim 64 (512 bytes a token), so tests move little data.
KvCache SyntheticCache(std::vector<int32_t> tokens, uint32_t seed);
// `count` token ids from a seeded generator.
std::vector<int32_t> RandomTokens(size_t count, uint32_t seed);

}  // namespace seqkv::testing

#endif  // SEQKV_TESTS_ADMIN_ADMIN_TEST_UTIL_H_
