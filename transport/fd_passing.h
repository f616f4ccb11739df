// Datagrams with a file descriptor attached, over a Unix SOCK_SEQPACKET
// socket (SCM_RIGHTS), and the peer's identity (SO_PEERCRED).
#ifndef SEQKV_TRANSPORT_FD_PASSING_H_
#define SEQKV_TRANSPORT_FD_PASSING_H_

#include <sys/types.h>

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace seqkv::transport {

// The most bytes one datagram of the region socket carries.
inline constexpr size_t kMaxDatagramBytes = 64 << 10;

// One datagram received: its bytes, and the descriptor it carried (-1 if
// none; the receiver owns it). Extra descriptors are closed.
struct Datagram {
  std::string bytes;
  int fd = -1;
};

// Sends `bytes` as one datagram, with `fd` attached unless it is -1.
absl::Status SendDatagram(int socket, std::string_view bytes, int fd = -1);
// Receives one datagram. OUT_OF_RANGE when the peer closed the connection;
// INVALID_ARGUMENT for one that was cut short (over kMaxDatagramBytes, or
// its descriptors did not fit); the system error otherwise.
absl::StatusOr<Datagram> ReceiveDatagram(int socket);

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};
// The process on the other end of a connected Unix socket, as the kernel
// recorded it when it connected.
absl::StatusOr<PeerCredentials> PeerOf(int socket);

// Creates a Unix SOCK_SEQPACKET socket connected to `path`.
absl::StatusOr<int> ConnectSeqpacket(const std::string& path);

}  // namespace seqkv::transport

#endif  // SEQKV_TRANSPORT_FD_PASSING_H_
