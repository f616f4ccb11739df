#include "transport/mapped_region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace seqkv::transport {

absl::StatusOr<std::shared_ptr<MappedRegion>> MappedRegion::Map(
    int fd, RegionOwner owner, uint64_t max_bytes) {
  auto fail = [fd](absl::Status status) {
    close(fd);
    return status;
  };
  struct stat info;
  if (fstat(fd, &info) != 0)
    return fail(absl::InvalidArgumentError(absl::StrCat(
        "cannot stat the region's descriptor: ", std::strerror(errno))));
  if (!S_ISREG(info.st_mode))
    return fail(absl::FailedPreconditionError(
        "a region must be a memfd (memfd_create), not a socket, pipe, "
        "device or directory"));
  // Only memfds (shmem files created with MFD_ALLOW_SEALING) take seals;
  // for any other file F_GET_SEALS fails or reports F_SEAL_SEAL alone.
  const int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0)
    return fail(absl::FailedPreconditionError(
        "a region must be a memfd sealed with F_SEAL_SHRINK "
        "(memfd_create(..., MFD_ALLOW_SEALING), then fcntl(fd, "
        "F_ADD_SEALS, F_SEAL_SHRINK)): otherwise truncating it would fault "
        "the server"));
  if ((seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) != 0)
    return fail(absl::FailedPreconditionError(
        "the region is sealed against writes; Gets write into it"));
  const uint64_t size = static_cast<uint64_t>(info.st_size);
  if (size == 0) return fail(absl::InvalidArgumentError("the region is empty"));
  if (size > max_bytes)
    return fail(absl::InvalidArgumentError(
        absl::StrCat("the region's ", size, " bytes are over the ", max_bytes,
                     " a region may have (--shm_max_region_bytes)")));
  // Not MAP_POPULATE: populating faults in every page the client left
  // unallocated, and the memory would be the server's (its cgroup is
  // charged), so a client could make it allocate --shm_max_region_bytes
  // per region. Mapped lazily, a page is allocated only where a call
  // touches it, within the bytes that call moves.
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED)
    return fail(absl::ResourceExhaustedError(absl::StrCat(
        "cannot map the region's ", size, " bytes: ", std::strerror(errno))));
  return std::shared_ptr<MappedRegion>(new MappedRegion(
      fd, static_cast<std::byte*>(base), size, std::move(owner)));
}

MappedRegion::~MappedRegion() {
  munmap(base_, size_);
  close(fd_);
}

absl::StatusOr<std::span<std::byte>> MappedRegion::Slice(
    uint64_t offset, uint64_t length) const {
  if (offset > size_ || length > size_ - offset)
    return absl::OutOfRangeError(absl::StrCat(
        "bytes [", offset, ", ", offset, " + ", length, ") are outside region ",
        name_, ", which has ", size_, " bytes"));
  return std::span<std::byte>(base_ + offset, length);
}

}  // namespace seqkv::transport
