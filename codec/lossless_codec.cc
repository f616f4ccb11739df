// Byte planes + zstd: the most significant bytes of floats (sign, exponent)
// are highly repetitive while the low mantissa bytes are near random, so
// splitting them into separate planes lets zstd model each well.
#include "codec/lossless_codec.h"

#include <zstd.h>

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace seqkv {
namespace {

constexpr uint8_t kFormatVersion = 1;
constexpr int kZstdLevel = 3;

class LosslessCodec final : public Codec {
 public:
  std::string spec() const override { return "lossless"; }
  bool lossless() const override { return true; }

  absl::Status Encode(const ChunkInfo& chunk, std::span<const std::byte> data,
                      std::string& out) const override {
    if (data.size() != chunk.num_bytes())
      return absl::InvalidArgumentError(
          absl::StrCat("lossless: chunk has ", data.size(),
                       " bytes, expected ", chunk.num_bytes()));
    const size_t width = DTypeSize(chunk.layout->dtype);
    const size_t count = data.size() / width;
    std::vector<std::byte> planes(data.size());
    for (size_t i = 0; i < count; ++i)
      for (size_t b = 0; b < width; ++b)
        planes[b * count + i] = data[i * width + b];
    const size_t start = out.size();
    out.resize(start + 1 + ZSTD_compressBound(planes.size()));
    out[start] = static_cast<char>(kFormatVersion);
    size_t written = ZSTD_compress(out.data() + start + 1,
                                   out.size() - start - 1, planes.data(),
                                   planes.size(), kZstdLevel);
    if (ZSTD_isError(written))
      return absl::InternalError(
          absl::StrCat("zstd: ", ZSTD_getErrorName(written)));
    out.resize(start + 1 + written);
    return absl::OkStatus();
  }

  absl::Status Decode(const ChunkInfo& chunk, std::string_view encoded,
                      std::span<std::byte> out) const override {
    if (out.size() != chunk.num_bytes())
      return absl::InternalError("lossless: output buffer has the wrong size");
    if (encoded.empty() || static_cast<uint8_t>(encoded[0]) != kFormatVersion)
      return absl::DataLossError("lossless: bad format version");
    encoded.remove_prefix(1);
    unsigned long long content =
        ZSTD_getFrameContentSize(encoded.data(), encoded.size());
    if (content != out.size())
      return absl::DataLossError(
          "lossless: payload does not decode to the chunk's size");
    std::vector<std::byte> planes(out.size());
    size_t got = ZSTD_decompress(planes.data(), planes.size(), encoded.data(),
                                 encoded.size());
    if (ZSTD_isError(got) || got != planes.size())
      return absl::DataLossError("lossless: corrupt zstd frame");
    const size_t width = DTypeSize(chunk.layout->dtype);
    const size_t count = out.size() / width;
    for (size_t i = 0; i < count; ++i)
      for (size_t b = 0; b < width; ++b)
        out[i * width + b] = planes[b * count + i];
    return absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Codec>> CreateLosslessCodec(
    std::string_view params, const ModelContext& model) {
  if (!params.empty())
    return absl::InvalidArgumentError(absl::StrCat(
        "codec 'lossless' takes no parameters, got '", std::string(params), "'"));
  return std::make_unique<LosslessCodec>();
}

}  // namespace seqkv
