// Reading and writing the safetensors format: an 8-byte little-endian header
// length, a JSON header naming each tensor's dtype, shape and byte range, then
// the raw little-endian data.
#ifndef SEQKV_MODEL_SAFETENSORS_H_
#define SEQKV_MODEL_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace seqkv {

struct Tensor {
  std::string dtype;  // safetensors name: "BF16", "F16", "F32", "I32", "I64"
  std::vector<int64_t> shape;
  std::vector<std::byte> data;  // little-endian, row-major

  size_t num_elements() const;
  template <typename T>
  std::span<const T> as() const {
    return {reinterpret_cast<const T*>(data.data()), data.size() / sizeof(T)};
  }
};

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;  // the "__metadata__" strings

  // Returns the named tensor or NOT_FOUND.
  absl::StatusOr<const Tensor*> Find(std::string_view name) const;
};

// Size in bytes of one element of a safetensors dtype, 0 if unknown.
size_t SafetensorsDTypeSize(std::string_view dtype);

// Parses a whole file; every offset and size is checked against the file, so a
// truncated or corrupt file gives DATA_LOSS or INVALID_ARGUMENT, never a crash.
absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path);
absl::StatusOr<SafetensorsFile> ParseSafetensors(
    std::span<const std::byte> bytes);

// Reads only the named tensors of a file (skipping the others on disk).
absl::StatusOr<SafetensorsFile> ReadSafetensorsTensors(
    const std::string& path, std::span<const std::string> names);

absl::Status WriteSafetensors(const std::string& path,
                              const SafetensorsFile& file);

}  // namespace seqkv

#endif  // SEQKV_MODEL_SAFETENSORS_H_
