// Listens on the region socket (a Unix SOCK_SEQPACKET path) and feeds each
// connection's datagrams to a RegionService, one thread for all of them.
// A connection's regions are unregistered when it closes, so a client that
// exits or crashes leaves nothing mapped.
#ifndef SEQKV_TRANSPORT_REGION_SOCKET_SERVER_H_
#define SEQKV_TRANSPORT_REGION_SOCKET_SERVER_H_

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "transport/region_service.h"

namespace seqkv::transport {

struct SocketServerOptions {
  // Connections held at once; more are closed as they come.
  uint32_t max_connections = 1024;
  // The socket file's permissions: who on the host may connect at all.
  mode_t mode = 0660;
};

// Start() once, then Stop() (or destroy) from another thread.
class RegionSocketServer {
 public:
  // `service` must outlive the server.
  RegionSocketServer(RegionService* service, SocketServerOptions options)
      : service_(service), options_(options) {}
  ~RegionSocketServer() { Stop(); }
  RegionSocketServer(const RegionSocketServer&) = delete;
  RegionSocketServer& operator=(const RegionSocketServer&) = delete;

  // Binds `path` (replacing a stale socket file there, never another kind
  // of file) and starts serving.
  absl::Status Start(const std::string& path);
  // Closes every connection (unregistering their regions) and the socket,
  // and removes the socket file.
  void Stop();

 private:
  void Serve();

  RegionService* const service_;
  const SocketServerOptions options_;
  std::string path_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // an eventfd that Stop() signals
  std::thread thread_;
};

}  // namespace seqkv::transport

#endif  // SEQKV_TRANSPORT_REGION_SOCKET_SERVER_H_
