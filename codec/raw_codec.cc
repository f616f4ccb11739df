#include "codec/raw_codec.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace seqkv {
namespace {

class RawCodec final : public Codec {
 public:
  std::string spec() const override { return "raw"; }
  bool lossless() const override { return true; }
  bool stores_chunk_verbatim() const override { return true; }

  absl::Status Encode(const ChunkInfo& chunk, std::span<const std::byte> data,
                      std::string& out) const override {
    if (data.size() != chunk.num_bytes())
      return absl::InvalidArgumentError(
          absl::StrCat("raw: chunk has ", data.size(), " bytes, expected ",
                       chunk.num_bytes()));
    out.append(reinterpret_cast<const char*>(data.data()), data.size());
    return absl::OkStatus();
  }

  absl::Status Decode(const ChunkInfo& chunk, std::string_view encoded,
                      std::span<std::byte> out) const override {
    if (encoded.size() != out.size() || out.size() != chunk.num_bytes())
      return absl::DataLossError(
          absl::StrCat("raw: payload has ", encoded.size(), " bytes, expected ",
                       chunk.num_bytes()));
    std::memcpy(out.data(), encoded.data(), encoded.size());
    return absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Codec>> CreateRawCodec(
    std::string_view params, const ModelContext& model) {
  if (!params.empty())
    return absl::InvalidArgumentError(absl::StrCat(
        "codec 'raw' takes no parameters, got '", std::string(params), "'"));
  return std::make_unique<RawCodec>();
}

}  // namespace seqkv
