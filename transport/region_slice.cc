#include "transport/region_slice.h"

#include "absl/strings/str_cat.h"

namespace seqkv::transport {

absl::StatusOr<RegionView> ResolveSlice(const RegionRegistry* registry,
                                        std::string_view tenant,
                                        const v1::RegionSlice& slice,
                                        absl::string_view what) {
  if (registry == nullptr)
    return absl::FailedPreconditionError(absl::StrCat(
        what,
        " names a shared memory region, but this server takes none "
        "(start it with --shm_listen); send the bytes in messages"));
  if (slice.region().size() != kRegionHandleBytes) {
    registry->metrics().RecordError(RegionError::kBadHandle);
    return absl::InvalidArgumentError(
        absl::StrCat(what, ".region must be a ", kRegionHandleBytes,
                     "-byte handle from the region socket, not ",
                     slice.region().size(), " bytes"));
  }
  auto view =
      registry->Resolve(tenant, slice.region(), slice.offset(), slice.length());
  if (!view.ok()) {
    registry->metrics().RecordResolveError(view.status());
    return absl::Status(view.status().code(),
                        absl::StrCat(what, ": ", view.status().message()));
  }
  return view;
}

}  // namespace seqkv::transport
