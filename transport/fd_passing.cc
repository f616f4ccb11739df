#include "transport/fd_passing.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace seqkv::transport {
namespace {

absl::Status Errno(absl::string_view what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

absl::Status SendDatagram(int socket, std::string_view bytes, int fd) {
  struct iovec iov;
  iov.iov_base = const_cast<char*>(bytes.data());
  iov.iov_len = bytes.size();
  struct msghdr message = {};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    struct cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &fd, sizeof(int));
  }
  ssize_t sent;
  do {
    sent = sendmsg(socket, &message, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return Errno("sending on the region socket");
  if (static_cast<size_t>(sent) != bytes.size())
    return absl::UnavailableError("the region socket took part of a datagram");
  return absl::OkStatus();
}

absl::StatusOr<Datagram> ReceiveDatagram(int socket) {
  Datagram datagram;
  datagram.bytes.resize(kMaxDatagramBytes);
  struct iovec iov;
  iov.iov_base = datagram.bytes.data();
  iov.iov_len = datagram.bytes.size();
  struct msghdr message = {};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  // Room for a few descriptors, so that extras are received (and closed)
  // rather than left open in this process.
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  message.msg_control = control;
  message.msg_controllen = sizeof(control);
  ssize_t got;
  do {
    got = recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
  } while (got < 0 && errno == EINTR);
  if (got < 0) return Errno("receiving on the region socket");
  bool extra = false;
  for (struct cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr;
       header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS)
      continue;
    const size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
      if (datagram.fd < 0) {
        datagram.fd = fd;
      } else {
        close(fd);
        extra = true;
      }
    }
  }
  auto drop = [&datagram](absl::Status status) -> absl::StatusOr<Datagram> {
    if (datagram.fd >= 0) close(datagram.fd);
    return status;
  };
  if (got == 0 && datagram.fd < 0)
    return absl::OutOfRangeError("the peer closed the region socket");
  if ((message.msg_flags & MSG_TRUNC) != 0)
    return drop(absl::InvalidArgumentError(absl::StrCat(
        "a region socket datagram is over ", kMaxDatagramBytes, " bytes")));
  if ((message.msg_flags & MSG_CTRUNC) != 0 || extra)
    return drop(absl::InvalidArgumentError(
        "a region socket datagram carries one descriptor at most"));
  datagram.bytes.resize(static_cast<size_t>(got));
  return datagram;
}

absl::StatusOr<PeerCredentials> PeerOf(int socket) {
  struct ucred credentials;
  socklen_t length = sizeof(credentials);
  if (getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0)
    return Errno("SO_PEERCRED");
  return PeerCredentials{credentials.pid, credentials.uid, credentials.gid};
}

absl::StatusOr<int> ConnectSeqpacket(const std::string& path) {
  struct sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path))
    return absl::InvalidArgumentError(
        absl::StrCat("region socket path '", path, "' is empty or too long"));
  std::memcpy(address.sun_path, path.data(), path.size());
  const int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  if (connect(fd, reinterpret_cast<const sockaddr*>(&address),
              sizeof(address)) != 0) {
    absl::Status status = Errno(absl::StrCat("connecting to ", path));
    close(fd);
    return status;
  }
  return fd;
}

}  // namespace seqkv::transport
