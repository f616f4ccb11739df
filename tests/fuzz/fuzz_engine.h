// The CacheEngine a fuzz target drives: a real RocksDB in a temporary
// directory of its own, alive for the whole process (fuzzers never shut
// down cleanly) and removed at exit.
#ifndef SEQKV_TESTS_FUZZ_FUZZ_ENGINE_H_
#define SEQKV_TESTS_FUZZ_FUZZ_ENGINE_H_

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "server/cache_engine.h"

namespace seqkv::fuzz {

// Starts the process's engine, `name` naming its directory; chunks of
// `chunk_tokens` tokens and one codec thread. Call once per process.
inline CacheEngine& StartFuzzEngine(const std::string& name,
                                    uint32_t chunk_tokens) {
  static std::filesystem::path* dir = nullptr;
  if (dir != nullptr) std::abort();
  dir = new std::filesystem::path(
      std::filesystem::temp_directory_path() /
      ("seqkv-fuzz-" + name + "-" + std::to_string(::getpid())));
  std::filesystem::remove_all(*dir);
  auto store = KvStore::Open({dir->string(), false});
  if (!store.ok()) std::abort();
  EngineOptions options;
  options.default_chunk_tokens = chunk_tokens;
  options.codec_threads = 1;
  auto* engine = new CacheEngine(store->release(), options);
  if (!engine->Start().ok()) std::abort();
  std::atexit([] { std::filesystem::remove_all(*dir); });
  return *engine;
}

}  // namespace seqkv::fuzz

#endif  // SEQKV_TESTS_FUZZ_FUZZ_ENGINE_H_
