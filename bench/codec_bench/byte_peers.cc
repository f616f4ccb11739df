// zstd, lz4, blosc and byte planes + zstd over the tensor's raw bytes.
#include <blosc.h>
#include <lz4.h>
#include <zstd.h>

#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "bench/codec_bench/peers_internal.h"

namespace seqkv::bench {
namespace {

class ZstdPeer final : public PeerCodec {
 public:
  explicit ZstdPeer(int level) : level_(level) {}
  std::string spec() const override { return absl::StrCat("zstd:", level_); }
  bool lossless() const override { return true; }

  absl::Status Encode(const TensorShape& shape, std::span<const std::byte> data,
                      std::string& out) const override {
    const size_t start = out.size();
    out.resize(start + ZSTD_compressBound(data.size()));
    const size_t n = ZSTD_compress(out.data() + start, out.size() - start,
                                   data.data(), data.size(), level_);
    if (ZSTD_isError(n))
      return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(n)));
    out.resize(start + n);
    return absl::OkStatus();
  }

  absl::Status Decode(const TensorShape& shape, std::string_view encoded,
                      std::span<std::byte> out) const override {
    const size_t n =
        ZSTD_decompress(out.data(), out.size(), encoded.data(), encoded.size());
    if (ZSTD_isError(n) || n != out.size())
      return absl::DataLossError("zstd: corrupt frame");
    return absl::OkStatus();
  }

 private:
  int level_;
};

class Lz4Peer final : public PeerCodec {
 public:
  std::string spec() const override { return "lz4"; }
  bool lossless() const override { return true; }

  absl::Status Encode(const TensorShape& shape, std::span<const std::byte> data,
                      std::string& out) const override {
    if (data.size() > LZ4_MAX_INPUT_SIZE)
      return absl::InvalidArgumentError("lz4: tensor too large");
    const int size = static_cast<int>(data.size());
    const size_t start = out.size();
    out.resize(start + LZ4_compressBound(size));
    const int n = LZ4_compress_default(
        reinterpret_cast<const char*>(data.data()), out.data() + start, size,
        static_cast<int>(out.size() - start));
    if (n <= 0) return absl::InternalError("lz4: compression failed");
    out.resize(start + n);
    return absl::OkStatus();
  }

  absl::Status Decode(const TensorShape& shape, std::string_view encoded,
                      std::span<std::byte> out) const override {
    if (encoded.size() > INT_MAX || out.size() > INT_MAX)
      return absl::DataLossError("lz4: block too large");
    const int n = LZ4_decompress_safe(
        encoded.data(), reinterpret_cast<char*>(out.data()),
        static_cast<int>(encoded.size()), static_cast<int>(out.size()));
    if (n != static_cast<int>(out.size()))
      return absl::DataLossError("lz4: corrupt block");
    return absl::OkStatus();
  }
};

// Byte shuffle (one plane per byte of the element) then zstd, in blosc's
// own blocks, single-threaded.
class BloscPeer final : public PeerCodec {
 public:
  explicit BloscPeer(int level) : level_(level) {}
  std::string spec() const override {
    return level_ == 9 ? "blosc" : absl::StrCat("blosc:", level_);
  }
  bool lossless() const override { return true; }

  absl::Status Encode(const TensorShape& shape, std::span<const std::byte> data,
                      std::string& out) const override {
    if (data.size() > BLOSC_MAX_BUFFERSIZE)
      return absl::InvalidArgumentError("blosc: tensor too large");
    const size_t start = out.size();
    out.resize(start + data.size() + BLOSC_MAX_OVERHEAD);
    const int n = blosc_compress_ctx(
        level_, BLOSC_SHUFFLE, DTypeSize(shape.dtype), data.size(), data.data(),
        out.data() + start, out.size() - start, "zstd",
        /*blocksize=*/0, /*numinternalthreads=*/1);
    if (n <= 0) return absl::InternalError("blosc: compression failed");
    out.resize(start + n);
    return absl::OkStatus();
  }

  absl::Status Decode(const TensorShape& shape, std::string_view encoded,
                      std::span<std::byte> out) const override {
    size_t nbytes = 0, cbytes = 0, blocksize = 0;
    if (encoded.size() < BLOSC_MIN_HEADER_LENGTH)
      return absl::DataLossError("blosc: short header");
    blosc_cbuffer_sizes(encoded.data(), &nbytes, &cbytes, &blocksize);
    if (nbytes != out.size() || cbytes != encoded.size())
      return absl::DataLossError("blosc: header does not match the tensor");
    const int n = blosc_decompress_ctx(encoded.data(), out.data(), out.size(),
                                       /*numinternalthreads=*/1);
    if (n != static_cast<int>(out.size()))
      return absl::DataLossError("blosc: corrupt buffer");
    return absl::OkStatus();
  }

 private:
  int level_;
};

// Byte planes over the whole tensor (byte i of every element, for each i),
// each plane zstd-compressed on its own: "u32 size" then the frame, per
// plane.
class PlanesPeer final : public PeerCodec {
 public:
  explicit PlanesPeer(int level) : level_(level) {}
  std::string spec() const override { return absl::StrCat("planes:", level_); }
  bool lossless() const override { return true; }

  absl::Status Encode(const TensorShape& shape, std::span<const std::byte> data,
                      std::string& out) const override {
    const size_t width = DTypeSize(shape.dtype);
    const size_t count = data.size() / width;
    std::string plane(count, '\0');
    for (size_t b = 0; b < width; ++b) {
      for (size_t i = 0; i < count; ++i)
        plane[i] = static_cast<char>(data[i * width + b]);
      const size_t start = out.size();
      out.resize(start + 4 + ZSTD_compressBound(count));
      const size_t n =
          ZSTD_compress(out.data() + start + 4, out.size() - start - 4,
                        plane.data(), count, level_);
      if (ZSTD_isError(n))
        return absl::InternalError(
            absl::StrCat("planes: ", ZSTD_getErrorName(n)));
      const uint32_t size = static_cast<uint32_t>(n);
      std::memcpy(out.data() + start, &size, 4);
      out.resize(start + 4 + n);
    }
    return absl::OkStatus();
  }

  absl::Status Decode(const TensorShape& shape, std::string_view encoded,
                      std::span<std::byte> out) const override {
    const size_t width = DTypeSize(shape.dtype);
    const size_t count = out.size() / width;
    std::string plane(count, '\0');
    for (size_t b = 0; b < width; ++b) {
      uint32_t size;
      if (encoded.size() < 4) return absl::DataLossError("planes: truncated");
      std::memcpy(&size, encoded.data(), 4);
      encoded.remove_prefix(4);
      if (size > encoded.size())
        return absl::DataLossError("planes: truncated");
      const size_t n =
          ZSTD_decompress(plane.data(), count, encoded.data(), size);
      if (ZSTD_isError(n) || n != count)
        return absl::DataLossError("planes: corrupt frame");
      encoded.remove_prefix(size);
      for (size_t i = 0; i < count; ++i)
        out[i * width + b] = static_cast<std::byte>(plane[i]);
    }
    if (!encoded.empty()) return absl::DataLossError("planes: trailing bytes");
    return absl::OkStatus();
  }

 private:
  int level_;
};

}  // namespace

std::unique_ptr<PeerCodec> MakePlanesPeer(int level) {
  return std::make_unique<PlanesPeer>(level);
}

std::unique_ptr<PeerCodec> MakeZstdPeer(int level) {
  return std::make_unique<ZstdPeer>(level);
}
std::unique_ptr<PeerCodec> MakeLz4Peer() { return std::make_unique<Lz4Peer>(); }
std::unique_ptr<PeerCodec> MakeBloscPeer(int level) {
  return std::make_unique<BloscPeer>(level);
}

}  // namespace seqkv::bench
