// The region registry and its checks, without a server: what a memfd must
// be to be mapped, bounds, owners and the lifetime of a mapping.
#include "transport/region_registry.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>

#include "gtest/gtest.h"
#include "transport/region_slice.h"

namespace seqkv::transport {
namespace {

int Memfd(size_t bytes, int seals) {
  const int fd = memfd_create("test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(ftruncate(fd, static_cast<off_t>(bytes)), 0);
  if (seals != 0) EXPECT_EQ(fcntl(fd, F_ADD_SEALS, seals), 0);
  return fd;
}

RegionOwner Owner(std::string tenant, uint64_t connection) {
  return {.tenant = std::move(tenant), .connection = connection};
}

TEST(MappedRegionTest, RequiresAMemfdSealedAgainstShrinking) {
  auto unsealed = MappedRegion::Map(Memfd(4096, 0), Owner("a", 1), 1 << 20);
  EXPECT_EQ(unsealed.status().code(), absl::StatusCode::kFailedPrecondition)
      << unsealed.status();
  auto write_sealed = MappedRegion::Map(
      Memfd(4096, F_SEAL_SHRINK | F_SEAL_WRITE), Owner("a", 1), 1 << 20);
  EXPECT_EQ(write_sealed.status().code(),
            absl::StatusCode::kFailedPrecondition);
  // A regular file takes no seals.
  FILE* file = tmpfile();
  ASSERT_NE(file, nullptr);
  ASSERT_EQ(ftruncate(fileno(file), 4096), 0);
  auto regular = MappedRegion::Map(dup(fileno(file)), Owner("a", 1), 1 << 20);
  fclose(file);
  EXPECT_EQ(regular.status().code(), absl::StatusCode::kFailedPrecondition);
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  close(pipe_fds[1]);
  EXPECT_EQ(
      MappedRegion::Map(pipe_fds[0], Owner("a", 1), 1 << 20).status().code(),
      absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(MappedRegion::Map(Memfd(0, F_SEAL_SHRINK), Owner("a", 1), 1 << 20)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MappedRegion::Map(Memfd(8192, F_SEAL_SHRINK), Owner("a", 1), 4096)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MappedRegionTest, MappingAllocatesNothingTheClientDidNot) {
  // A client may register a region it never touched, up to the largest a
  // region may be; the server must not allocate it (the pages would be
  // charged to the server): only the pages a call writes come to exist.
  constexpr size_t kBytes = size_t{1} << 30;
  const int fd = Memfd(kBytes, F_SEAL_SHRINK);
  const int client_fd = dup(fd);
  auto region = MappedRegion::Map(fd, Owner("a", 1), kBytes);
  ASSERT_TRUE(region.ok()) << region.status();
  struct stat info;
  ASSERT_EQ(fstat(client_fd, &info), 0);
  EXPECT_EQ(info.st_blocks, 0);
  auto slice = (*region)->Slice(kBytes / 2, 4096);
  ASSERT_TRUE(slice.ok());
  std::memset(slice->data(), 7, slice->size());
  // One page; one huge page where shmem uses them.
  ASSERT_EQ(fstat(client_fd, &info), 0);
  EXPECT_GE(static_cast<uint64_t>(info.st_blocks) * 512, 4096u);
  EXPECT_LE(static_cast<uint64_t>(info.st_blocks) * 512, uint64_t{2} << 20);
  close(client_fd);
}

TEST(MappedRegionTest, SealedRegionCannotShrinkAndSlicesStayInside) {
  const int fd = Memfd(8192, F_SEAL_SHRINK);
  const int client_fd = dup(fd);
  auto region = MappedRegion::Map(fd, Owner("a", 1), 1 << 20);
  ASSERT_TRUE(region.ok()) << region.status();
  // The client's truncation is refused by the kernel: the server's mapping
  // can never lose its pages.
  EXPECT_NE(ftruncate(client_fd, 0), 0);
  EXPECT_EQ(errno, EPERM);
  close(client_fd);
  EXPECT_TRUE((*region)->Slice(0, 8192).ok());
  EXPECT_TRUE((*region)->Slice(8192, 0).ok());
  EXPECT_EQ((*region)->Slice(1, 8192).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*region)->Slice(8193, 0).status().code(),
            absl::StatusCode::kOutOfRange);
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ((*region)->Slice(max, 2).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*region)->Slice(2, max).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST(RegionRegistryTest, ResolvesOnlyForItsTenantAndUntilItsConnectionGoes) {
  RegionRegistry registry({.max_regions_per_tenant = 2});
  std::string a1, a2, b1;
  ASSERT_TRUE(
      registry.Register(Memfd(4096, F_SEAL_SHRINK), Owner("a", 1), a1).ok());
  ASSERT_TRUE(
      registry.Register(Memfd(4096, F_SEAL_SHRINK), Owner("a", 2), a2).ok());
  EXPECT_EQ(a1.size(), kRegionHandleBytes);
  EXPECT_NE(a1, a2);
  // The tenant's limit counts every connection of it.
  std::string a3;
  EXPECT_EQ(registry.Register(Memfd(4096, F_SEAL_SHRINK), Owner("a", 3), a3)
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(
      registry.Register(Memfd(4096, F_SEAL_SHRINK), Owner("b", 3), b1).ok());

  EXPECT_TRUE(registry.Resolve("a", a1, 0, 4096).ok());
  EXPECT_EQ(registry.Resolve("b", a1, 0, 16).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(registry.Resolve("a", a1, 4000, 100).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(registry.Resolve("a", std::string(16, 'x'), 0, 1).status().code(),
            absl::StatusCode::kNotFound);
  // Only the registering connection unregisters a region.
  EXPECT_EQ(registry.Unregister(2, a1).code(), absl::StatusCode::kNotFound);

  // A call that holds a region keeps its mapping when the connection goes,
  // and sees it revoked.
  auto held = registry.Resolve("a", a1, 0, 4096);
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(registry.DropConnection(1), 1u);
  EXPECT_TRUE(held->region->revoked());
  held->bytes[4095] = std::byte{7};  // still mapped
  EXPECT_EQ(registry.Resolve("a", a1, 0, 1).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.regions(), 2u);
  EXPECT_TRUE(registry.Unregister(2, a2).ok());
  EXPECT_EQ(registry.regions(), 1u);
}

TEST(RegionSliceTest, ChecksTheHandleAndTheServer) {
  RegionRegistry registry({});
  v1::RegionSlice slice;
  slice.set_region("short");
  EXPECT_EQ(ResolveSlice(&registry, "a", slice, "region_data").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ResolveSlice(nullptr, "a", slice, "region_data").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace seqkv::transport
