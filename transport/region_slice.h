// The offset messages of seqkv.v1: a RegionSlice named by a Put or Get,
// checked and resolved to the bytes it names.
#ifndef SEQKV_TRANSPORT_REGION_SLICE_H_
#define SEQKV_TRANSPORT_REGION_SLICE_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "seqkv/v1/kvcache.pb.h"
#include "transport/region_registry.h"

namespace seqkv::transport {

// The bytes `slice` names, for a call of `tenant`. FAILED_PRECONDITION
// when `registry` is null (the server serves no regions);
// INVALID_ARGUMENT for a handle of the wrong size; RegionRegistry::
// Resolve's statuses otherwise (NOT_FOUND, PERMISSION_DENIED,
// OUT_OF_RANGE). `what` names the field in messages ("region_data").
// Refusals are counted in the registry's metrics().
absl::StatusOr<RegionView> ResolveSlice(const RegionRegistry* registry,
                                        std::string_view tenant,
                                        const v1::RegionSlice& slice,
                                        absl::string_view what);

}  // namespace seqkv::transport

#endif  // SEQKV_TRANSPORT_REGION_SLICE_H_
