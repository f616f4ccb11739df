// Runs a libFuzzer-style target (LLVMFuzzerTestOneInput) without libFuzzer:
// on the files named on the command line, then for a fixed number of
// iterations on random bytes and on mutations of valid inputs from the
// target's seed generator (fuzz_seeds.h). Deterministic for a given --seed,
// so a failure in CI reproduces with the same command.
//
// Each input is placed so that it ends exactly at a page boundary followed by
// an inaccessible page: a decoder that reads past the end of its input
// crashes here even without sanitizers.
//
// Usage: NAME [--iterations=N] [--seconds=S] [--seed=N] [--max_len=N]
//             [--write_seeds=DIR] [FILE...]
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fuzz_seeds.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

// A mapping whose last accessible byte is followed by a PROT_NONE page.
class GuardedBuffer {
 public:
  ~GuardedBuffer() { Release(); }

  // Copies `input` so that it ends right before the guard page.
  const uint8_t* Place(std::string_view input) {
    if (input.size() > capacity_) Reserve(input.size());
    uint8_t* start = base_ + capacity_ - input.size();
    if (!input.empty()) std::memcpy(start, input.data(), input.size());
    return start;
  }

 private:
  void Reserve(size_t size) {
    Release();
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    capacity_ = (size + page - 1) / page * page;
    if (capacity_ == 0) capacity_ = page;
    mapping_size_ = capacity_ + page;
    void* mapping = mmap(nullptr, mapping_size_, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapping == MAP_FAILED) {
      std::perror("mmap");
      std::abort();
    }
    base_ = static_cast<uint8_t*>(mapping);
    if (mprotect(base_ + capacity_, page, PROT_NONE) != 0) {
      std::perror("mprotect");
      std::abort();
    }
  }
  void Release() {
    if (base_ != nullptr) munmap(base_, mapping_size_);
    base_ = nullptr;
    capacity_ = 0;
  }

  uint8_t* base_ = nullptr;
  size_t capacity_ = 0;
  size_t mapping_size_ = 0;
};

std::string RandomBytes(std::mt19937_64& rng, size_t max_len) {
  // Mostly short inputs: headers are where decoders make their choices.
  const size_t len = rng() % 4 == 0 ? rng() % (max_len + 1) : rng() % 64;
  std::string out(len, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

void Mutate(std::string& s, std::mt19937_64& rng, size_t max_len) {
  const int count = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < count; ++i) {
    const size_t pos = s.empty() ? 0 : rng() % s.size();
    switch (rng() % 7) {
      case 0:  // flip one bit
        if (!s.empty()) s[pos] ^= static_cast<char>(1 << (rng() % 8));
        break;
      case 1:  // overwrite a byte with an interesting value
        if (!s.empty()) {
          static constexpr uint8_t kValues[] = {0, 1, 0x7F, 0x80, 0xFF, 0xFE};
          s[pos] = static_cast<char>(kValues[rng() % std::size(kValues)]);
        }
        break;
      case 2:  // truncate
        s.resize(s.empty() ? 0 : rng() % s.size());
        break;
      case 3:  // erase a run
        if (!s.empty()) s.erase(pos, 1 + rng() % 16);
        break;
      case 4:  // insert random bytes
        if (s.size() < max_len) {
          std::string extra(1 + rng() % 8, '\0');
          for (char& c : extra) c = static_cast<char>(rng());
          s.insert(s.empty() ? 0 : pos, extra);
        }
        break;
      case 5:  // overwrite a little-endian word (lengths, counts)
        if (s.size() >= 4) {
          const size_t at = rng() % (s.size() - 3);
          const uint32_t word = static_cast<uint32_t>(rng()) >> (rng() % 32);
          std::memcpy(&s[at], &word, 4);
        }
        break;
      default:  // duplicate a run (repeated structure)
        if (!s.empty() && s.size() < max_len) {
          const size_t len = std::min<size_t>(1 + rng() % 32, s.size() - pos);
          s.insert(rng() % s.size(), s.substr(pos, len));
        }
    }
  }
}

bool ParseFlag(std::string_view arg, std::string_view name, uint64_t& value) {
  if (arg.substr(0, name.size()) != name) return false;
  value =
      std::strtoull(std::string(arg.substr(name.size())).c_str(), nullptr, 10);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t iterations = 2000, seconds = 0, seed = 1, max_len = 4096;
  std::string write_seeds;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (ParseFlag(arg, "--iterations=", iterations) ||
        ParseFlag(arg, "--seconds=", seconds) ||
        ParseFlag(arg, "--seed=", seed) ||
        ParseFlag(arg, "--max_len=", max_len))
      continue;
    if (arg.substr(0, 14) == "--write_seeds=") {
      write_seeds = std::string(arg.substr(14));
    } else if (arg.substr(0, 2) == "--") {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    } else {
      files.emplace_back(arg);
    }
  }

  const seqkv::fuzz::SeedGenerator generator =
      seqkv::fuzz::RegisteredSeedGenerator();
  if (!write_seeds.empty()) {
    if (generator == nullptr) {
      std::fprintf(stderr, "this target has no seed generator\n");
      return 2;
    }
    for (uint64_t i = 0; i < iterations; ++i) {
      const std::string path = write_seeds + "/seed_" + std::to_string(i);
      std::ofstream(path, std::ios::binary) << generator(seed + i);
    }
    return 0;
  }

  GuardedBuffer buffer;
  auto run = [&](std::string_view input) {
    LLVMFuzzerTestOneInput(buffer.Place(input), input.size());
  };
  for (const std::string& path : files) {
    std::ifstream file(path, std::ios::binary);
    if (!file) {
      std::fprintf(stderr, "cannot read %s\n", path.c_str());
      return 2;
    }
    run(std::string(std::istreambuf_iterator<char>(file), {}));
  }

  std::mt19937_64 rng(seed);
  std::vector<std::string> valid;
  const auto start = std::chrono::steady_clock::now();
  uint64_t done = 0;
  for (; done < iterations; ++done) {
    if (seconds != 0 && std::chrono::steady_clock::now() - start >
                            std::chrono::seconds(seconds))
      break;
    if (generator == nullptr || rng() % 8 == 0) {
      run(RandomBytes(rng, max_len));
      continue;
    }
    // A small rotating pool of valid inputs; each is also run unmutated once.
    if (valid.size() < 16 || rng() % 64 == 0) {
      std::string fresh = generator(rng());
      run(fresh);
      if (valid.size() < 16)
        valid.push_back(std::move(fresh));
      else
        valid[rng() % valid.size()] = std::move(fresh);
    }
    std::string input = valid[rng() % valid.size()];
    Mutate(input, rng, std::max<size_t>(max_len, input.size()));
    run(input);
  }
  std::printf("%llu inputs (+%zu files), seed %llu: no crash\n",
              static_cast<unsigned long long>(done), files.size(),
              static_cast<unsigned long long>(seed));
  return 0;
}
