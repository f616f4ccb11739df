// A memory region a same-host client handed to the server: its memfd,
// mapped shared, and bounds-checked access to it.
//
// Safe by construction: Map() accepts only a memfd sealed with
// F_SEAL_SHRINK, so the client can never truncate it and a server access
// inside the mapped size can never raise SIGBUS; every access goes through
// Slice(), which checks the range against that size.
#ifndef SEQKV_TRANSPORT_MAPPED_REGION_H_
#define SEQKV_TRANSPORT_MAPPED_REGION_H_

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace seqkv::transport {

// Who registered a region: the tenant its credential named, and the peer
// process (SO_PEERCRED) of the socket connection that passed it.
struct RegionOwner {
  std::string tenant;
  uint64_t connection = 0;  // the registry's id of that connection
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Thread-safe: the mapping is fixed from Map() to destruction; Revoke()
// and revoked() may race with accesses. Unmapped and closed when the last
// reference goes (the registry's, or a call's that still uses it).
class MappedRegion {
 public:
  // Takes ownership of `fd` (closed on error too). FAILED_PRECONDITION for
  // a descriptor that is not a memfd sealed with F_SEAL_SHRINK, or sealed
  // against writes; INVALID_ARGUMENT for an empty one or one over
  // `max_bytes`; the mmap error otherwise. Maps without populating: the
  // server allocates none of the client's pages until a call touches them.
  static absl::StatusOr<std::shared_ptr<MappedRegion>> Map(int fd,
                                                           RegionOwner owner,
                                                           uint64_t max_bytes);
  ~MappedRegion();
  MappedRegion(const MappedRegion&) = delete;
  MappedRegion& operator=(const MappedRegion&) = delete;

  // Bytes [offset, offset + length) of the region. OUT_OF_RANGE (saying
  // where the region ends) unless they lie inside it; never overflows.
  absl::StatusOr<std::span<std::byte>> Slice(uint64_t offset,
                                             uint64_t length) const;

  uint64_t size() const { return size_; }
  const RegionOwner& owner() const { return owner_; }
  // The handle in hex, for messages and logs.
  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }

  // Marks the region unregistered: calls that still hold it finish their
  // access safely (the mapping lives until they let go), but report that
  // their bytes went to a region the client no longer has.
  void Revoke() { revoked_.store(true, std::memory_order_release); }
  bool revoked() const { return revoked_.load(std::memory_order_acquire); }

 private:
  MappedRegion(int fd, std::byte* base, uint64_t size, RegionOwner owner)
      : fd_(fd), base_(base), size_(size), owner_(std::move(owner)) {}

  const int fd_;
  std::byte* const base_;
  const uint64_t size_;
  const RegionOwner owner_;
  std::string name_;
  std::atomic<bool> revoked_{false};
};

}  // namespace seqkv::transport

#endif  // SEQKV_TRANSPORT_MAPPED_REGION_H_
