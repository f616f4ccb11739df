#include "codec/turbo/payload_header.h"

#include "absl/strings/str_cat.h"
#include "codec/turbo/element_io.h"

namespace seqkv {

void AppendPayloadHeader(uint8_t version, uint8_t bits_field,
                         std::string& out) {
  out.push_back(static_cast<char>(version));
  out.push_back(static_cast<char>(bits_field));
  out.append(4, '\0');  // the checksum, once the payload is complete
}

void SealPayload(size_t start, std::string& out) {
  PutLe32(
      &out[start + 2],
      ChunkChecksum(std::string_view(out).substr(start + kPayloadHeaderBytes)));
}

absl::Status CheckChunkBuffer(std::string_view codec, const ChunkInfo& chunk,
                              std::string_view buffer_name,
                              size_t buffer_bytes) {
  const std::string name(codec);
  if (chunk.layout == nullptr)
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": chunk has no layout"));
  if (absl::Status s = chunk.layout->Validate(); !s.ok()) return s;
  if (buffer_bytes != chunk.num_bytes())
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": ", std::string(buffer_name), " has ",
                     buffer_bytes, " bytes, expected ", chunk.num_bytes()));
  return absl::OkStatus();
}

absl::Status CheckPayload(std::string_view codec, std::string_view encoded,
                          uint8_t version, uint8_t bits_field,
                          size_t expected_size) {
  const std::string name(codec);
  if (encoded.size() < kPayloadHeaderBytes)
    return absl::DataLossError(
        absl::StrCat(name, ": payload of ", encoded.size(),
                     " bytes is shorter than the header"));
  const auto byte = [&](size_t i) {
    return static_cast<int>(static_cast<uint8_t>(encoded[i]));
  };
  if (byte(0) != version)
    return absl::DataLossError(
        absl::StrCat(name, ": unknown format version ", byte(0)));
  if (byte(1) != bits_field)
    return absl::DataLossError(absl::StrCat(name, ": payload has bits field ",
                                            byte(1), ", this codec has ",
                                            static_cast<int>(bits_field)));
  if (encoded.size() != expected_size)
    return absl::DataLossError(absl::StrCat(name, ": payload has ",
                                            encoded.size(), " bytes, expected ",
                                            expected_size));
  if (ReadLe32(&encoded[2]) !=
      ChunkChecksum(encoded.substr(kPayloadHeaderBytes)))
    return absl::DataLossError(absl::StrCat(name, ": checksum mismatch"));
  return absl::OkStatus();
}

}  // namespace seqkv
