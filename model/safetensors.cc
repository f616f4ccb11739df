#include "model/safetensors.h"

#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace seqkv {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100 << 20;

struct TensorEntry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

struct Header {
  std::vector<TensorEntry> entries;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;
};

absl::StatusOr<Header> ParseHeader(std::string_view json_text,
                                   uint64_t data_bytes) {
  nlohmann::json json = nlohmann::json::parse(json_text, nullptr,
                                              /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object())
    return absl::DataLossError("safetensors header is not a JSON object");
  Header header;
  for (const auto& [name, value] : json.items()) {
    if (name == "__metadata__") {
      if (!value.is_object())
        return absl::DataLossError("safetensors __metadata__ is not an object");
      for (const auto& [key, item] : value.items())
        header.metadata[key] =
            item.is_string() ? item.get<std::string>() : item.dump();
      continue;
    }
    if (!value.is_object() || !value.contains("dtype") ||
        !value.contains("shape") || !value.contains("data_offsets") ||
        !value["dtype"].is_string() || !value["shape"].is_array() ||
        !value["data_offsets"].is_array() || value["data_offsets"].size() != 2)
      return absl::DataLossError(
          absl::StrCat("safetensors tensor '", name, "' has a bad entry"));
    TensorEntry entry;
    entry.name = name;
    entry.dtype = value["dtype"].get<std::string>();
    size_t element_size = SafetensorsDTypeSize(entry.dtype);
    if (element_size == 0)
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors tensor '", name, "' has unsupported dtype ",
                       entry.dtype));
    uint64_t count = 1;
    for (const auto& dim : value["shape"]) {
      if (!dim.is_number_unsigned())
        return absl::DataLossError(
            absl::StrCat("safetensors tensor '", name, "' has a bad shape"));
      entry.shape.push_back(dim.get<int64_t>());
      count *= dim.get<uint64_t>();
      if (count > (uint64_t{1} << 40))
        return absl::DataLossError(
            absl::StrCat("safetensors tensor '", name, "' is too large"));
    }
    const auto& offsets = value["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
      return absl::DataLossError(
          absl::StrCat("safetensors tensor '", name, "' has bad offsets"));
    entry.begin = offsets[0].get<uint64_t>();
    entry.end = offsets[1].get<uint64_t>();
    if (entry.begin > entry.end || entry.end > data_bytes ||
        entry.end - entry.begin != count * element_size)
      return absl::DataLossError(absl::StrCat(
          "safetensors tensor '", name,
          "' has offsets that do not match its shape or the file size"));
    header.entries.push_back(std::move(entry));
  }
  return header;
}

absl::StatusOr<std::string> ReadExactly(std::ifstream& in, uint64_t offset,
                                        uint64_t size,
                                        const std::string& path) {
  std::string bytes(size, '\0');
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  if (!in) return absl::DataLossError(absl::StrCat(path, ": truncated file"));
  return bytes;
}

absl::StatusOr<SafetensorsFile> ReadFile(
    const std::string& path, const std::vector<std::string>* names) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  in.seekg(0, std::ios::end);
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  if (file_size < 8)
    return absl::DataLossError(absl::StrCat(path, ": not a safetensors file"));
  auto length_bytes = ReadExactly(in, 0, 8, path);
  if (!length_bytes.ok()) return length_bytes.status();
  uint64_t header_size = 0;
  std::memcpy(&header_size, length_bytes->data(), 8);
  if (header_size > kMaxHeaderBytes || 8 + header_size > file_size)
    return absl::DataLossError(absl::StrCat(path, ": bad header length"));
  auto json_text = ReadExactly(in, 8, header_size, path);
  if (!json_text.ok()) return json_text.status();
  auto header = ParseHeader(*json_text, file_size - 8 - header_size);
  if (!header.ok())
    return absl::Status(header.status().code(),
                        absl::StrCat(path, ": ", header.status().message()));
  SafetensorsFile file;
  file.metadata = std::move(header->metadata);
  for (TensorEntry& entry : header->entries) {
    if (names != nullptr &&
        std::find(names->begin(), names->end(), entry.name) == names->end())
      continue;
    Tensor tensor;
    tensor.dtype = entry.dtype;
    tensor.shape = entry.shape;
    tensor.data.resize(entry.end - entry.begin);
    in.seekg(static_cast<std::streamoff>(8 + header_size + entry.begin));
    in.read(reinterpret_cast<char*>(tensor.data.data()),
            static_cast<std::streamsize>(tensor.data.size()));
    if (!in) return absl::DataLossError(absl::StrCat(path, ": truncated data"));
    file.tensors[entry.name] = std::move(tensor);
  }
  return file;
}

}  // namespace

size_t Tensor::num_elements() const {
  size_t count = 1;
  for (int64_t dim : shape) count *= static_cast<size_t>(dim);
  return count;
}

absl::StatusOr<const Tensor*> SafetensorsFile::Find(
    std::string_view name) const {
  auto it = tensors.find(std::string(name));
  if (it == tensors.end())
    return absl::NotFoundError(
        absl::StrCat("no tensor named '", std::string(name), "'"));
  return &it->second;
}

size_t SafetensorsDTypeSize(std::string_view dtype) {
  if (dtype == "BF16" || dtype == "F16" || dtype == "I16" || dtype == "U16")
    return 2;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL") return 1;
  return 0;
}

absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path) {
  return ReadFile(path, nullptr);
}

absl::StatusOr<SafetensorsFile> ReadSafetensorsTensors(
    const std::string& path, std::span<const std::string> names) {
  std::vector<std::string> wanted(names.begin(), names.end());
  auto file = ReadFile(path, &wanted);
  if (!file.ok()) return file;
  for (const std::string& name : wanted)
    if (!file->tensors.contains(name))
      return absl::NotFoundError(
          absl::StrCat(path, ": no tensor named '", name, "'"));
  return file;
}

absl::StatusOr<SafetensorsFile> ParseSafetensors(
    std::span<const std::byte> bytes) {
  if (bytes.size() < 8) return absl::DataLossError("not a safetensors buffer");
  uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);
  if (header_size > kMaxHeaderBytes || header_size > bytes.size() - 8)
    return absl::DataLossError("bad safetensors header length");
  std::string_view json_text(reinterpret_cast<const char*>(bytes.data()) + 8,
                             header_size);
  auto header = ParseHeader(json_text, bytes.size() - 8 - header_size);
  if (!header.ok()) return header.status();
  SafetensorsFile file;
  file.metadata = std::move(header->metadata);
  const std::byte* data = bytes.data() + 8 + header_size;
  for (TensorEntry& entry : header->entries) {
    Tensor tensor;
    tensor.dtype = entry.dtype;
    tensor.shape = entry.shape;
    tensor.data.assign(data + entry.begin, data + entry.end);
    file.tensors[entry.name] = std::move(tensor);
  }
  return file;
}

absl::Status WriteSafetensors(const std::string& path,
                              const SafetensorsFile& file) {
  nlohmann::json header = nlohmann::json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : file.tensors) {
    if (tensor.data.size() !=
        tensor.num_elements() * SafetensorsDTypeSize(tensor.dtype))
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name,
                       "' has a byte count that does not match its shape"));
    header[name] = {{"dtype", tensor.dtype},
                    {"shape", tensor.shape},
                    {"data_offsets", {offset, offset + tensor.data.size()}}};
    offset += tensor.data.size();
  }
  std::string text = header.dump();
  // The format asks for the data to start 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::string tmp_path = path + ".tmp";
  {
    std::ofstream out(tmp_path, std::ios::binary | std::ios::trunc);
    if (!out)
      return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
    uint64_t header_size = text.size();
    out.write(reinterpret_cast<const char*>(&header_size), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& [name, tensor] : file.tensors)
      out.write(reinterpret_cast<const char*>(tensor.data.data()),
                static_cast<std::streamsize>(tensor.data.size()));
    if (!out.flush())
      return absl::DataLossError(absl::StrCat("write failed: ", path));
  }
  if (std::rename(tmp_path.c_str(), path.c_str()) != 0)
    return absl::InternalError(absl::StrCat("cannot rename to ", path));
  return absl::OkStatus();
}

}  // namespace seqkv
