// Lets a fuzz target hand the standalone driver valid inputs to mutate.
//
// A target defines `std::string MakeSeed(uint64_t seed)` returning a valid
// input (for a decoder: a real encoding of random data) and registers it with
// SEQKV_FUZZ_SEED_GENERATOR(MakeSeed). The standalone driver mutates such
// inputs, which reaches much deeper into a decoder than random bytes do.
// libFuzzer builds ignore the generator; write a seed corpus for them with
// the standalone driver's --write_seeds=DIR.
#ifndef SEQKV_TESTS_FUZZ_FUZZ_SEEDS_H_
#define SEQKV_TESTS_FUZZ_FUZZ_SEEDS_H_

#include <cstdint>
#include <string>

namespace seqkv::fuzz {

using SeedGenerator = std::string (*)(uint64_t seed);

inline SeedGenerator& RegisteredSeedGenerator() {
  static SeedGenerator generator = nullptr;
  return generator;
}

struct SeedRegistrar {
  explicit SeedRegistrar(SeedGenerator generator) {
    RegisteredSeedGenerator() = generator;
  }
};

}  // namespace seqkv::fuzz

#define SEQKV_FUZZ_SEED_GENERATOR(generator) \
  static ::seqkv::fuzz::SeedRegistrar seqkv_fuzz_seed_registrar_(generator)

#endif  // SEQKV_TESTS_FUZZ_FUZZ_SEEDS_H_
