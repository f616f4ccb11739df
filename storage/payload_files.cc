#include "storage/payload_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace seqkv {
namespace {

// Files are spread over 256 directories by the first byte of their key
// (a hash), so no directory grows past a few thousand entries.
constexpr int kShards = 256;

std::string ShardName(unsigned shard) {
  constexpr char kHex[] = "0123456789abcdef";
  return {kHex[shard >> 4], kHex[shard & 15]};
}

absl::Status ErrnoError(int error, std::string_view what,
                        const std::filesystem::path& path) {
  return absl::ErrnoToStatus(
      error, absl::StrCat(std::string(what), " ", path.string()));
}

// Closes a file descriptor when it goes out of scope.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }
  // Closes now, reporting the error close() may carry for buffered writes.
  int Close() {
    const int result = ::close(fd_);
    fd_ = -1;
    return result;
  }

 private:
  int fd_;
};

absl::Status SyncDirectory(const std::filesystem::path& dir) {
  ScopedFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError(errno, "open directory", dir);
  if (::fsync(fd.get()) != 0) return ErrnoError(errno, "sync directory", dir);
  return absl::OkStatus();
}

// The size of the file `fd` was opened on, or why it could not be opened.
absl::StatusOr<size_t> SizeOfOpened(const ScopedFd& fd,
                                    const std::filesystem::path& path) {
  if (fd.get() < 0) return ErrnoError(errno, "open payload file", path);
  struct stat info;
  if (::fstat(fd.get(), &info) != 0)
    return ErrnoError(errno, "stat payload file", path);
  return static_cast<size_t>(info.st_size);
}

// Fills `out` from `offset` on; fewer bytes only at the end of the file.
absl::StatusOr<size_t> ReadAt(const ScopedFd& fd,
                              const std::filesystem::path& path,
                              std::span<char> out, off_t offset) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t got = ::pread(fd.get(), out.data() + done, out.size() - done,
                                offset + static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return ErrnoError(errno, "read payload file", path);
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return done;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PayloadFiles>> PayloadFiles::Open(
    std::filesystem::path dir, bool sync) {
  for (int shard = 0; shard < kShards; ++shard) {
    std::error_code error;
    std::filesystem::create_directories(dir / ShardName(shard), error);
    if (error)
      return absl::ErrnoToStatus(
          error.value(),
          absl::StrCat("create payload directory ", dir.string()));
  }
  return std::unique_ptr<PayloadFiles>(new PayloadFiles(std::move(dir), sync));
}

std::filesystem::path PayloadFiles::PathOf(std::string_view key) const {
  const std::string name =
      absl::BytesToHexString(absl::string_view(key.data(), key.size()));
  return dir_ / name.substr(0, 2) / name;
}

absl::Status PayloadFiles::Write(std::string_view key,
                                 std::string_view bytes) const {
  if (key.empty())
    return absl::InvalidArgumentError("a payload file needs a name");
  const std::filesystem::path path = PathOf(key);
  ScopedFd fd(
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) return ErrnoError(errno, "create payload file", path);
  absl::Status status;
  while (!bytes.empty() && status.ok()) {
    const ssize_t written = ::write(fd.get(), bytes.data(), bytes.size());
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0)
      status =
          ErrnoError(written < 0 ? errno : EIO, "write payload file", path);
    else
      bytes.remove_prefix(static_cast<size_t>(written));
  }
  if (status.ok() && sync_ && ::fdatasync(fd.get()) != 0)
    status = ErrnoError(errno, "sync payload file", path);
  if (fd.Close() != 0 && status.ok())
    status = ErrnoError(errno, "close payload file", path);
  if (status.ok() && sync_) status = SyncDirectory(path.parent_path());
  if (!status.ok()) ::unlink(path.c_str());
  return status;
}

absl::StatusOr<PayloadBytes> PayloadFiles::Read(std::string_view key) const {
  const std::filesystem::path path = PathOf(key);
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  auto size = SizeOfOpened(fd, path);
  if (!size.ok()) return size.status();
  auto bytes = std::make_unique_for_overwrite<char[]>(*size);
  // A file that shrank meanwhile reads short: the checksum will tell.
  auto got = ReadAt(fd, path, {bytes.get(), *size}, 0);
  if (!got.ok()) return got.status();
  return PayloadBytes(std::move(bytes), *got);
}

absl::Status PayloadFiles::ReadInto(
    std::string_view key, std::span<const std::span<char>> pieces,
    const std::function<void(std::span<const char>)>& on_read) const {
  const std::filesystem::path path = PathOf(key);
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  auto size = SizeOfOpened(fd, path);
  if (!size.ok()) return size.status();
  size_t expected = 0;
  for (std::span<char> piece : pieces) expected += piece.size();
  if (*size != expected)
    return absl::DataLossError(absl::StrCat("payload file ", path.string(),
                                            " has ", *size, " bytes, expected ",
                                            expected));
  off_t offset = 0;
  for (std::span<char> piece : pieces) {
    auto got = ReadAt(fd, path, piece, offset);
    if (!got.ok()) return got.status();
    if (*got < piece.size())
      return absl::DataLossError(absl::StrCat("payload file ", path.string(),
                                              " ended at ", offset + *got,
                                              " bytes, expected ", expected));
    on_read(piece);
    offset += static_cast<off_t>(piece.size());
  }
  return absl::OkStatus();
}

absl::Status PayloadFiles::Remove(std::string_view key) const {
  const std::filesystem::path path = PathOf(key);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return ErrnoError(errno, "remove payload file", path);
  return absl::OkStatus();
}

absl::Status PayloadFiles::ForEach(
    const std::function<void(std::string_view key)>& visit) const {
  for (int shard = 0; shard < kShards; ++shard) {
    std::error_code error;
    const std::filesystem::path shard_dir = dir_ / ShardName(shard);
    for (auto it = std::filesystem::directory_iterator(shard_dir, error);
         !error && it != std::filesystem::directory_iterator();
         it.increment(error)) {
      const std::string name = it->path().filename().string();
      if (name.size() % 2 != 0 || name.compare(0, 2, ShardName(shard)) != 0 ||
          name.find_first_not_of("0123456789abcdef") != std::string::npos)
        continue;
      visit(absl::HexStringToBytes(name));
    }
    if (error)
      return absl::ErrnoToStatus(
          error.value(),
          absl::StrCat("list payload files in ", shard_dir.string()));
  }
  return absl::OkStatus();
}

}  // namespace seqkv
