#include "transport/region_socket_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace seqkv::transport {
namespace {

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

absl::Status RegionSocketServer::Start(const std::string& path) {
  struct sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path))
    return absl::InvalidArgumentError(
        absl::StrCat("--shm_listen path '", path, "' is empty or longer than ",
                     sizeof(address.sun_path) - 1, " bytes"));
  std::memcpy(address.sun_path, path.data(), path.size());
  struct stat existing;
  if (lstat(path.c_str(), &existing) == 0) {
    if (!S_ISSOCK(existing.st_mode))
      return absl::FailedPreconditionError(absl::StrCat(
          "--shm_listen path ", path, " exists and is not a socket"));
    unlink(path.c_str());  // stale, from a server that did not stop
  }
  listen_fd_ = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return Errno("socket");
  if (bind(listen_fd_, reinterpret_cast<const sockaddr*>(&address),
           sizeof(address)) != 0)
    return Errno(absl::StrCat("binding the region socket ", path));
  path_ = path;
  if (chmod(path.c_str(), options_.mode) != 0)
    return Errno(absl::StrCat("chmod ", path));
  if (listen(listen_fd_, 64) != 0) return Errno("listen");
  wake_fd_ = eventfd(0, EFD_CLOEXEC);
  if (wake_fd_ < 0) return Errno("eventfd");
  thread_ = std::thread([this] { Serve(); });
  return absl::OkStatus();
}

void RegionSocketServer::Stop() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    if (write(wake_fd_, &one, sizeof(one)) < 0)
      spdlog::warn("waking the region socket: {}", std::strerror(errno));
    thread_.join();
  }
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    listen_fd_ = -1;
    unlink(path_.c_str());
  }
  if (wake_fd_ >= 0) {
    close(wake_fd_);
    wake_fd_ = -1;
  }
}

void RegionSocketServer::Serve() {
  struct Connection {
    int fd;
    PeerCredentials peer;
  };
  std::map<uint64_t, Connection> connections;
  uint64_t next_id = 1;
  auto drop = [&](uint64_t id) {
    Connection& connection = connections.at(id);
    service_->Closed(id);
    close(connection.fd);
    spdlog::debug("region socket: pid {} disconnected", connection.peer.pid);
    connections.erase(id);
  };
  std::vector<struct pollfd> polled;
  std::vector<uint64_t> ids;
  for (;;) {
    polled.clear();
    ids.clear();
    polled.push_back({wake_fd_, POLLIN, 0});
    polled.push_back({listen_fd_, POLLIN, 0});
    for (const auto& [id, connection] : connections) {
      polled.push_back({connection.fd, POLLIN, 0});
      ids.push_back(id);
    }
    if (poll(polled.data(), polled.size(), -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("region socket: poll: {}", std::strerror(errno));
      break;
    }
    if (polled[0].revents != 0) break;  // Stop()
    if (polled[1].revents & POLLIN) {
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) {
        auto peer = PeerOf(fd);
        if (!peer.ok() || connections.size() >= options_.max_connections) {
          spdlog::warn(
              "region socket: refused a connection: {}",
              peer.ok() ? "too many connections" : peer.status().ToString());
          close(fd);
        } else {
          connections.emplace(next_id++, Connection{fd, *peer});
        }
      }
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      const short events = polled[i + 2].revents;
      if (events == 0) continue;
      Connection& connection = connections.at(ids[i]);
      if ((events & POLLIN) == 0) {  // hung up or failed, nothing to read
        drop(ids[i]);
        continue;
      }
      auto datagram = ReceiveDatagram(connection.fd);
      if (!datagram.ok() && absl::IsOutOfRange(datagram.status())) {
        drop(ids[i]);
        continue;
      }
      v1::RegionResponse response;
      if (datagram.ok()) {
        response =
            service_->Handle(ids[i], connection.peer, *std::move(datagram));
      } else {
        response.set_code(static_cast<int>(datagram.status().code()));
        response.set_message(std::string(datagram.status().message()));
      }
      if (response.code() == 0 && response.size() > 0)
        spdlog::info(
            "region socket: pid {} (uid {}) of tenant '{}' registered a "
            "region of {} bytes",
            connection.peer.pid, connection.peer.uid, response.tenant(),
            response.size());
      if (!SendDatagram(connection.fd, response.SerializeAsString()).ok())
        drop(ids[i]);
    }
  }
  while (!connections.empty()) drop(connections.begin()->first);
}

}  // namespace seqkv::transport
