// Named KV layouts for benchmarks: real model shapes by name, or an explicit
// LAYERSxKV_HEADSxHEAD_DIM:DTYPE.
#ifndef SEQKV_BENCH_LOAD_LAYOUT_PRESETS_H_
#define SEQKV_BENCH_LOAD_LAYOUT_PRESETS_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "codec/kv_layout.h"

namespace seqkv::bench {

// "llama3-8b" (32 x 8 x 128 bf16), "llama3-70b" (80 x 8 x 128 bf16), "tiny"
// (6 x 2 x 128 bf16, the model of shared/data/lm) or "6x2x128:bf16".
// INVALID_ARGUMENT names the text when it is neither.
absl::StatusOr<KvLayout> ResolveLayout(std::string_view name);

// The preset names, comma separated, for usage messages.
std::string LayoutPresetNames();

// `name` reduced to [a-z0-9-], usable inside a model name.
std::string LayoutSlug(std::string_view name);

}  // namespace seqkv::bench

#endif  // SEQKV_BENCH_LOAD_LAYOUT_PRESETS_H_
