// Fuzzes the range decoder two ways:
//  1. the input (after a one-byte header) is decoded as a stream with a
//     schedule of bits, bit trees, frequency symbols and raw bits chosen by
//     the header: every decoded value must be in range and nothing may crash;
//  2. the input bytes are used as symbols, encoded and decoded again: the
//     round trip must be exact and Finish() must accept it.
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "codec/entropy/adaptive_model.h"
#include "codec/entropy/range_coder.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

using seqkv::entropy::AdaptiveFrequencyModel;
using seqkv::entropy::BitModel;
using seqkv::entropy::BitTreeModel;
using seqkv::entropy::DualRateBitModel;
using seqkv::entropy::RangeDecoder;
using seqkv::entropy::RangeEncoder;

constexpr uint32_t kAlphabet = 300;

struct Models {
  BitModel bit;
  DualRateBitModel<> dual;
  BitTreeModel<5> tree;
  AdaptiveFrequencyModel freq{kAlphabet, 32, 4096};
};

// The op for step i of a schedule: 0 bit, 1 dual-rate bit, 2 tree, 3 symbol,
// 4 raw bits (width 1..32).
int Op(uint64_t schedule, size_t i) {
  return static_cast<int>(((schedule + i) * 0x9E3779B97F4A7C15ull) >> 61) % 5;
}
int RawWidth(size_t i) { return 1 + static_cast<int>(i * 7 % 32); }
size_t NumSteps(uint8_t header) { return 16 + size_t{header} * 8; }

void Abort(const char* what) {
  std::fprintf(stderr, "%s\n", what);
  std::abort();
}

std::string MakeSeed(uint64_t seed) {
  std::mt19937_64 rng(seed);
  const uint8_t header = static_cast<uint8_t>(rng());
  std::string out(1, static_cast<char>(header));
  RangeEncoder encoder(out);
  Models models;
  for (size_t i = 0; i < NumSteps(header); ++i) {
    switch (Op(header, i)) {
      case 0:
        encoder.EncodeBit(models.bit, rng() % 5 == 0);
        break;
      case 1:
        encoder.EncodeBit(models.dual, rng() % 3 == 0);
        break;
      case 2:
        encoder.EncodeTree(models.tree, rng() % 7);
        break;
      case 3:
        encoder.EncodeSymbol(models.freq,
                             rng() % 4 ? rng() % 8 : rng() % kAlphabet);
        break;
      default: {
        const int width = RawWidth(i);
        encoder.EncodeBits(static_cast<uint32_t>(rng()) >> (32 - width), width);
      }
    }
  }
  encoder.Finish();
  return out;
}
SEQKV_FUZZ_SEED_GENERATOR(MakeSeed);

void DecodeHostile(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const uint8_t header = data[0];
  RangeDecoder decoder(
      std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  Models models;
  for (size_t i = 0; i < NumSteps(header); ++i) {
    switch (Op(header, i)) {
      case 0:
        if (decoder.DecodeBit(models.bit) > 1) Abort("bit");
        break;
      case 1:
        if (decoder.DecodeBit(models.dual) > 1) Abort("dual bit");
        break;
      case 2:
        if (decoder.DecodeTree(models.tree) >= 32) Abort("tree");
        break;
      case 3:
        if (decoder.DecodeSymbol(models.freq) >= kAlphabet) Abort("symbol");
        break;
      default: {
        const int width = RawWidth(i);
        const uint64_t value = decoder.DecodeBits(width);
        if (value >> width) Abort("raw bits");
      }
    }
  }
  (void)decoder.Finish();
}

void RoundTrip(const uint8_t* data, size_t size) {
  std::string out;
  {
    RangeEncoder encoder(out);
    Models models;
    for (size_t i = 0; i < size; ++i) {
      const uint8_t b = data[i];
      switch (b % 5) {
        case 0:
          encoder.EncodeBit(models.bit, b >> 7);
          break;
        case 1:
          encoder.EncodeBit(models.dual, (b >> 3) & 1);
          break;
        case 2:
          encoder.EncodeTree(models.tree, b >> 3);
          break;
        case 3:
          encoder.EncodeSymbol(models.freq, b + (i % 2) * 44);
          break;
        default:
          encoder.EncodeBits(b * 0x01010101u, 1 + b % 32);
      }
    }
    encoder.Finish();
  }
  RangeDecoder decoder(out);
  Models models;
  for (size_t i = 0; i < size; ++i) {
    const uint8_t b = data[i];
    uint32_t got, want;
    switch (b % 5) {
      case 0:
        got = decoder.DecodeBit(models.bit);
        want = b >> 7;
        break;
      case 1:
        got = decoder.DecodeBit(models.dual);
        want = (b >> 3) & 1;
        break;
      case 2:
        got = decoder.DecodeTree(models.tree);
        want = b >> 3;
        break;
      case 3:
        got = decoder.DecodeSymbol(models.freq);
        want = b + (i % 2) * 44;
        break;
      default: {
        const int width = 1 + b % 32;
        got = decoder.DecodeBits(width);
        want = width == 32 ? b * 0x01010101u
                           : (b * 0x01010101u) & ((1u << width) - 1);
      }
    }
    if (got != want) Abort("round trip mismatch");
  }
  if (!decoder.Finish().ok()) Abort("round trip rejected");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  DecodeHostile(data, size);
  RoundTrip(data, size);
  return 0;
}
