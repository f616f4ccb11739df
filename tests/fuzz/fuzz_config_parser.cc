// Fuzzes the YAML config parser: any text gives a config or INVALID_ARGUMENT.
#include <cstdint>
#include <random>
#include <string>

#include "server/config.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

std::string MakeSeed(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string hash = seqkv::Sha256Hex(std::to_string(rng()));
  return "tenants:\n  - name: t" + std::to_string(rng() % 10) +
         "\n    api_key_sha256: [\"" + hash +
         "\"]\n    quota_bytes: " + std::to_string(rng() % 100000) +
         "\n    on_quota: reject\nshared_namespaces:\n  - name: s\n"
         "    readers: [t1]\n    writers: []\ncapacity_bytes: 5\n";
}
SEQKV_FUZZ_SEED_GENERATOR(MakeSeed);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto config = seqkv::ParseConfig(
      std::string(reinterpret_cast<const char*>(data), size));
  if (!config.ok() &&
      config.status().code() != absl::StatusCode::kInvalidArgument)
    std::abort();
  return 0;
}
