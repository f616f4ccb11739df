// Large chunk payloads, each in a file of its own beside the RocksDB
// database. RocksDB would write every payload byte twice (WAL, then blob
// file), each time with a CRC32C that Debian's portable build computes in
// software; a file is written once, checked by the XXH3 its node record
// carries, and its space comes back with one unlink when it is removed.
//
// The files are invisible until a node record names them: a crash between
// writing a file and committing its node, or between removing a node and
// unlinking its file, leaves an orphan that Trie::SweepOrphanPayloadFiles
// deletes at the next start.
#ifndef SEQKV_STORAGE_PAYLOAD_FILES_H_
#define SEQKV_STORAGE_PAYLOAD_FILES_H_

#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace seqkv {

// The bytes of one payload as read: a RocksDB value, or a file's contents
// read into memory that was not zero-filled first (that fill was 7% of the
// server's time in 1 MiB Gets).
class PayloadBytes {
 public:
  PayloadBytes() = default;
  explicit PayloadBytes(std::string value) : value_(std::move(value)) {}
  PayloadBytes(std::unique_ptr<char[]> data, size_t size)
      : data_(std::move(data)), size_(size) {}
  std::string_view view() const {
    return data_ ? std::string_view(data_.get(), size_) : value_;
  }

 private:
  std::string value_;
  std::unique_ptr<char[]> data_;
  size_t size_ = 0;
};

class PayloadFiles {
 public:
  // Creates `dir` and its shard directories when missing. With `sync`,
  // Write returns only once the data and the file's name are durable.
  static absl::StatusOr<std::unique_ptr<PayloadFiles>> Open(
      std::filesystem::path dir, bool sync);

  // Writes `bytes` as the payload named `key` (any non-empty bytes), replacing
  // a file of that name. On error no file of that name is left behind.
  absl::Status Write(std::string_view key, std::string_view bytes) const;
  // NOT_FOUND when there is no such payload.
  absl::StatusOr<PayloadBytes> Read(std::string_view key) const;
  // Reads the payload named `key` into `pieces`, one after another, and
  // calls `on_read` with each piece once it is filled, so that a caller can
  // check each while it is still in cache. The pieces' sizes must add up to
  // the file's size: DATA_LOSS otherwise, NOT_FOUND when there is no such
  // payload.
  absl::Status ReadInto(
      std::string_view key, std::span<const std::span<char>> pieces,
      const std::function<void(std::span<const char>)>& on_read) const;
  // Missing files are not an error.
  absl::Status Remove(std::string_view key) const;
  // Calls `visit` with the key of every payload file; files whose names are
  // not payload names are skipped.
  absl::Status ForEach(
      const std::function<void(std::string_view key)>& visit) const;

  const std::filesystem::path& dir() const { return dir_; }

 private:
  PayloadFiles(std::filesystem::path dir, bool sync)
      : dir_(std::move(dir)), sync_(sync) {}
  std::filesystem::path PathOf(std::string_view key) const;

  std::filesystem::path dir_;
  bool sync_;
};

}  // namespace seqkv

#endif  // SEQKV_STORAGE_PAYLOAD_FILES_H_
