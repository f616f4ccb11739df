#include "transport/region_client.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "seqkv/v1/region.pb.h"
#include "transport/fd_passing.h"

namespace seqkv::transport {
namespace {

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

absl::StatusOr<v1::RegionResponse> Exchange(int socket,
                                            const v1::RegionRequest& request,
                                            int fd) {
  if (auto status = SendDatagram(socket, request.SerializeAsString(), fd);
      !status.ok())
    return status;
  auto datagram = ReceiveDatagram(socket);
  if (!datagram.ok()) {
    if (absl::IsOutOfRange(datagram.status()))
      return absl::UnavailableError("the server closed the region socket");
    return datagram.status();
  }
  if (datagram->fd >= 0) close(datagram->fd);
  v1::RegionResponse response;
  if (!response.ParseFromString(datagram->bytes))
    return absl::DataLossError("the region socket's answer does not parse");
  if (response.code() != 0)
    return absl::Status(static_cast<absl::StatusCode>(response.code()),
                        response.message());
  return response;
}

}  // namespace

SharedRegion::~SharedRegion() {
  munmap(base_, size_);
  close(fd_);
}

absl::StatusOr<std::unique_ptr<RegionConnection>> RegionConnection::Connect(
    const std::string& path, std::string authorization) {
  auto fd = ConnectSeqpacket(path);
  if (!fd.ok()) return fd.status();
  return std::unique_ptr<RegionConnection>(
      new RegionConnection(*fd, std::move(authorization)));
}

RegionConnection::~RegionConnection() { close(fd_); }

std::string RegionConnection::tenant() const {
  absl::MutexLock lock(&mutex_);
  return tenant_;
}

absl::StatusOr<std::shared_ptr<SharedRegion>> RegionConnection::CreateRegion(
    size_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("a region needs bytes");
  const int fd = memfd_create("seqkv-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return Errno("memfd_create");
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0 ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
    absl::Status status = Errno("sizing and sealing the region");
    close(fd);
    return status;
  }
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_POPULATE, fd, 0);
  if (base == MAP_FAILED) {
    absl::Status status = Errno("mapping the region");
    close(fd);
    return status;
  }
  std::shared_ptr<SharedRegion> region(
      new SharedRegion(fd, static_cast<std::byte*>(base), bytes));
  v1::RegionRequest request;
  request.mutable_register_region()->set_authorization(authorization_);
  absl::MutexLock lock(&mutex_);
  auto response = Exchange(fd_, request, fd);
  if (!response.ok()) return response.status();
  region->handle_ = response->region();
  tenant_ = response->tenant();
  return region;
}

absl::Status RegionConnection::Unregister(const SharedRegion& region) {
  v1::RegionRequest request;
  request.mutable_unregister_region()->set_region(region.handle());
  absl::MutexLock lock(&mutex_);
  return Exchange(fd_, request, -1).status();
}

}  // namespace seqkv::transport
