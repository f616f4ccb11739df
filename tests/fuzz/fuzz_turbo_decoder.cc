// Fuzzes the turbo:B decoder (see baseline_codec_fuzz.h for the input).
#include "tests/fuzz/baseline_codec_fuzz.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

constexpr const char* kSpecs[] = {"turbo:2", "turbo:2.5", "turbo:3",
                                  "turbo:3.5", "turbo:4"};

std::string MakeSeed(uint64_t seed) {
  return seqkv::fuzz::MakeBaselineSeed(seed, kSpecs);
}
SEQKV_FUZZ_SEED_GENERATOR(MakeSeed);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return seqkv::fuzz::FuzzBaselineDecoder(data, size, kSpecs);
}
