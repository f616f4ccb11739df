// Fuzzes the offset messages of the same-host data plane: RegionSlices in
// Put and Get requests, resolved against a registry holding two real
// memfd regions of two tenants, and the region socket's requests. The
// first byte picks the kind:
//  - 0: a serialized PutRequest, 1: a GetRequest. A region handle of one
//    byte stands for one of the two registered handles, so that inputs
//    reach them. A slice resolves only for the caller's own region and
//    only inside it (its bytes are then touched, end to end); another
//    tenant's region is PERMISSION_DENIED whatever the offsets;
//  - 2: a region socket datagram (no descriptor). Nothing registers
//    without a descriptor and nothing unregisters another connection's
//    region: the registry keeps its two regions.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>

#include "seqkv/v1/kvcache.pb.h"
#include "seqkv/v1/region.pb.h"
#include "tests/fuzz/fuzz_seeds.h"
#include "transport/region_registry.h"
#include "transport/region_service.h"
#include "transport/region_slice.h"

namespace {

using seqkv::transport::RegionRegistry;

constexpr uint64_t kOwnBytes = 64 << 10;

struct Registered {
  RegionRegistry registry{{.max_regions_per_tenant = 4}};
  seqkv::transport::RegionService service{
      &registry,
      [](std::string_view authorization) -> absl::StatusOr<std::string> {
        return std::string("caller");
      },
      {}};
  std::string own, other;  // handles: the caller's, another tenant's
};

int SealedMemfd(uint64_t bytes) {
  const int fd = memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0 || ftruncate(fd, static_cast<off_t>(bytes)) != 0 ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0)
    std::abort();
  return fd;
}

Registered& State() {
  static Registered* state = [] {
    auto* s = new Registered;
    if (!s->registry
             .Register(SealedMemfd(kOwnBytes),
                       {.tenant = "caller", .connection = 100}, s->own)
             .ok() ||
        !s->registry
             .Register(SealedMemfd(4096),
                       {.tenant = "other", .connection = 101}, s->other)
             .ok())
      std::abort();
    return s;
  }();
  return *state;
}

void CheckSlice(seqkv::v1::RegionSlice slice) {
  Registered& state = State();
  if (slice.region().size() == 1)
    slice.set_region((slice.region()[0] & 1) ? state.other : state.own);
  auto view = seqkv::transport::ResolveSlice(&state.registry, "caller", slice,
                                             "region_data");
  if (slice.region() == state.other) {
    if (view.status().code() != absl::StatusCode::kPermissionDenied)
      std::abort();
    return;
  }
  if (!view.ok()) {
    if (slice.region() == state.own && slice.offset() <= kOwnBytes &&
        slice.length() <= kOwnBytes - slice.offset())
      std::abort();  // inside the region, yet refused
    return;
  }
  if (slice.region() != state.own || slice.offset() > kOwnBytes ||
      slice.length() > kOwnBytes - slice.offset() ||
      view->bytes.size() != slice.length())
    std::abort();
  if (!view->bytes.empty()) {
    view->bytes.front() = std::byte{1};
    view->bytes.back() = std::byte{2};
  }
}

std::string MakeSeed(uint64_t seed) {
  std::mt19937_64 rng(seed);
  seqkv::v1::RegionSlice slice;
  slice.set_region(std::string(1, static_cast<char>(rng() & 1)));
  slice.set_offset(rng() % (kOwnBytes + 2));
  slice.set_length(rng() % (kOwnBytes + 2));
  switch (seed % 3) {
    case 0: {
      seqkv::v1::PutRequest request;
      *request.mutable_region_data() = slice;
      return std::string(1, '\0') + request.SerializeAsString();
    }
    case 1: {
      seqkv::v1::GetRequest request;
      request.set_model("m");
      request.add_tokens(1);
      *request.mutable_region_target() = slice;
      return std::string(1, '\1') + request.SerializeAsString();
    }
    default: {
      seqkv::v1::RegionRequest request;
      if (rng() & 1) {
        request.mutable_register_region()->set_authorization("Bearer k");
      } else {
        request.mutable_unregister_region()->set_region(
            rng() & 1 ? State().own : std::string(16, 'x'));
      }
      return std::string(1, '\2') + request.SerializeAsString();
    }
  }
}

}  // namespace

SEQKV_FUZZ_SEED_GENERATOR(MakeSeed);

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      seqkv::v1::PutRequest request;
      if (request.ParseFromString(input) && request.has_region_data())
        CheckSlice(request.region_data());
      break;
    }
    case 1: {
      seqkv::v1::GetRequest request;
      if (request.ParseFromString(input) && request.has_region_target())
        CheckSlice(request.region_target());
      break;
    }
    default: {
      Registered& state = State();
      seqkv::v1::RegionResponse response = state.service.Handle(
          1, {.pid = 1, .uid = geteuid(), .gid = 0}, {input, -1});
      if (response.code() == 0 || state.registry.regions() != 2) std::abort();
      break;
    }
  }
  return 0;
}
