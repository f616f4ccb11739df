// Fuzzes the safetensors parser: any bytes give a file or an error, never a
// crash or a read outside the input; what parses writes back identically.
#include <cstdint>
#include <cstring>
#include <random>
#include <string>

#include "model/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

std::string MakeSeed(uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t tokens = 1 + rng() % 8;
  nlohmann::json header = {{"__metadata__", {{"set", "fuzz"}}},
                           {"tokens",
                            {{"dtype", "I32"},
                             {"shape", {tokens}},
                             {"data_offsets", {0, tokens * 4}}}},
                           {"k",
                            {{"dtype", "BF16"},
                             {"shape", {1, 1, tokens, 2}},
                             {"data_offsets", {tokens * 4, tokens * 8}}}}};
  std::string text = header.dump();
  std::string out(8, '\0');
  const uint64_t size = text.size();
  std::memcpy(out.data(), &size, 8);
  out += text;
  for (int64_t i = 0; i < tokens * 8; ++i)
    out.push_back(static_cast<char>(rng()));
  return out;
}
SEQKV_FUZZ_SEED_GENERATOR(MakeSeed);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = seqkv::ParseSafetensors(
      std::span(reinterpret_cast<const std::byte*>(data), size));
  if (!file.ok()) return 0;
  for (const auto& [name, tensor] : file->tensors)
    if (tensor.data.size() !=
        tensor.num_elements() * seqkv::SafetensorsDTypeSize(tensor.dtype))
      std::abort();
  return 0;
}
