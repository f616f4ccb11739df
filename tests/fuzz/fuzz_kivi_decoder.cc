// Fuzzes the kivi:B decoder (see baseline_codec_fuzz.h for the input).
#include "tests/fuzz/baseline_codec_fuzz.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

constexpr const char* kSpecs[] = {"kivi:1", "kivi:2", "kivi:3",
                                  "kivi:4", "kivi:5", "kivi:8"};

std::string MakeSeed(uint64_t seed) {
  return seqkv::fuzz::MakeBaselineSeed(seed, kSpecs);
}
SEQKV_FUZZ_SEED_GENERATOR(MakeSeed);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return seqkv::fuzz::FuzzBaselineDecoder(data, size, kSpecs);
}
