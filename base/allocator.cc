// jemalloc's compiled-in options for every program that links
// seqkv_allocator (jemalloc reads the global `malloc_conf` at start-up;
// MALLOC_CONF in the environment still overrides it).
//
// oversize_threshold:0 keeps allocations above 8 MiB in the ordinary arenas.
// By default jemalloc gives them a dedicated arena that returns every freed
// extent to the kernel at once, so each 32 MiB chunk buffer (a Put's chunk, a
// Get's message buffers, gRPC's receive slices) was mapped and faulted in
// afresh: on the 2-core VM, 32 MiB Gets ran 8-10x faster without it, at a
// tenth of the server CPU per byte (docs/benchmarks/bench.md).
//
// dirty_decay_ms:-1 keeps freed pages instead of purging them over the next
// 10 s. Under a steady stream of large chunks the purge handed back pages
// that the next chunk faulted in again: 2,000-3,400 faults per 32 MiB Get,
// and Gets ran at 55-60% of the speed they reach without purging. The server
// returns the memory when it goes idle instead (ReleaseFreedMemory).
#include "base/allocator.h"

#include <jemalloc/jemalloc.h>

#include <string>

#include "absl/strings/str_cat.h"

extern "C" {
// NOLINTNEXTLINE: jemalloc looks the symbol up by this exact name.
const char* malloc_conf = "oversize_threshold:0,dirty_decay_ms:-1";
}

namespace seqkv {

absl::Status ReleaseFreedMemory() {
  const std::string purge_all =
      absl::StrCat("arena.", MALLCTL_ARENAS_ALL, ".purge");
  if (const int error =
          mallctl(purge_all.c_str(), nullptr, nullptr, nullptr, 0);
      error != 0)
    return absl::InternalError(
        absl::StrCat("jemalloc ", purge_all, " failed with error ", error));
  return absl::OkStatus();
}

}  // namespace seqkv
