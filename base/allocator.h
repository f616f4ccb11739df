#ifndef SEQKV_BASE_ALLOCATOR_H_
#define SEQKV_BASE_ALLOCATOR_H_

#include "absl/status/status.h"

namespace seqkv {

// The allocator of every program that links seqkv_allocator (jemalloc,
// configured in allocator.cc) keeps the memory it frees for reuse instead of
// returning it to the kernel on a timer. This hands every freed page back
// now; the server calls it once it has been idle for a while.
absl::Status ReleaseFreedMemory();

}  // namespace seqkv

#endif  // SEQKV_BASE_ALLOCATOR_H_
