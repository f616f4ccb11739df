// fpzip and zfp: compressors for arrays of floats. Both take fp32 here (bf16
// and fp16 widen to it exactly), and the output is rounded back to the dtype.
// Neither library's decoder takes the compressed size, so these peers decode
// only what they encoded themselves; they are benchmark baselines, not store
// codecs.
#include <fpzip.h>
#include <zfp.h>

#include <climits>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/codec_bench/peers_internal.h"
#include "codec/turbo/element_io.h"

namespace seqkv::bench {
namespace {

std::vector<float> Widen(const TensorShape& shape,
                         std::span<const std::byte> data) {
  std::vector<float> values(shape.num_elements());
  LoadElements(shape.dtype, data, 0, values);
  return values;
}

absl::Status CheckDims(const TensorShape& shape) {
  if (shape.head_dim > INT_MAX || shape.tokens > INT_MAX ||
      shape.slots > INT_MAX || shape.tokens * shape.slots > INT_MAX)
    return absl::InvalidArgumentError("tensor too large for fpzip / zfp");
  return absl::OkStatus();
}

// Bits of an fp32 word that carry information for data widened from the
// dtype: fpzip keeps the top `prec` bits, so this many make it lossless.
int LosslessPrecision(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return 16;  // sign, 8 exponent and 7 mantissa bits
    case DType::kFP16:
      return 19;  // fp16's 10 mantissa bits under fp32's sign and exponent
    case DType::kFP32:
      return 32;
  }
  return 32;
}

class FpzipPeer final : public PeerCodec {
 public:
  std::string spec() const override { return "fpzip"; }
  bool lossless() const override { return true; }

  absl::Status Encode(const TensorShape& shape, std::span<const std::byte> data,
                      std::string& out) const override {
    if (absl::Status s = CheckDims(shape); !s.ok()) return s;
    std::vector<float> values = Widen(shape, data);
    std::string buffer(values.size() * sizeof(float) * 2 + 1024, '\0');
    FPZ* fpz = fpzip_write_to_buffer(buffer.data(), buffer.size());
    fpz->type = FPZIP_TYPE_FLOAT;
    fpz->prec = LosslessPrecision(shape.dtype);
    fpz->nx = static_cast<int>(shape.head_dim);
    fpz->ny = static_cast<int>(shape.tokens);
    fpz->nz = static_cast<int>(shape.slots);
    fpz->nf = 1;
    const bool ok = fpzip_write_header(fpz);
    const size_t n = ok ? fpzip_write(fpz, values.data()) : 0;
    fpzip_write_close(fpz);
    if (n == 0)
      return absl::InternalError(
          absl::StrCat("fpzip: ", fpzip_errstr[fpzip_errno]));
    out.append(buffer.data(), n);
    return absl::OkStatus();
  }

  absl::Status Decode(const TensorShape& shape, std::string_view encoded,
                      std::span<std::byte> out) const override {
    if (absl::Status s = CheckDims(shape); !s.ok()) return s;
    std::vector<float> values(shape.num_elements());
    FPZ* fpz = fpzip_read_from_buffer(encoded.data());
    bool ok = fpzip_read_header(fpz) && fpz->type == FPZIP_TYPE_FLOAT &&
              fpz->nx == static_cast<int>(shape.head_dim) &&
              fpz->ny == static_cast<int>(shape.tokens) &&
              fpz->nz == static_cast<int>(shape.slots) && fpz->nf == 1;
    ok = ok && fpzip_read(fpz, values.data()) != 0;
    fpzip_read_close(fpz);
    if (!ok) return absl::DataLossError("fpzip: corrupt stream");
    StoreElements(shape.dtype, values, 0, out);
    return absl::OkStatus();
  }
};

// Fixed-rate zfp: every 4x4 block of (channels x tokens) gets exactly
// 16 * rate bits, so the rate is the bits per element.
class ZfpPeer final : public PeerCodec {
 public:
  explicit ZfpPeer(double rate) : rate_(rate) {}
  std::string spec() const override { return absl::StrCat("zfp:", rate_); }
  bool lossless() const override { return false; }

  absl::Status Encode(const TensorShape& shape, std::span<const std::byte> data,
                      std::string& out) const override {
    if (absl::Status s = CheckDims(shape); !s.ok()) return s;
    std::vector<float> values = Widen(shape, data);
    Stream z(rate_, values.data(), shape);
    std::string buffer(zfp_stream_maximum_size(z.zfp, z.field), '\0');
    z.Attach(buffer.data(), buffer.size());
    const size_t n = zfp_compress(z.zfp, z.field);
    if (n == 0) return absl::InternalError("zfp: compression failed");
    out.append(buffer.data(), n);
    return absl::OkStatus();
  }

  absl::Status Decode(const TensorShape& shape, std::string_view encoded,
                      std::span<std::byte> out) const override {
    if (absl::Status s = CheckDims(shape); !s.ok()) return s;
    std::vector<float> values(shape.num_elements());
    Stream z(rate_, values.data(), shape);
    // zfp reads whole 64-bit words; give it a padded copy.
    std::string padded(encoded);
    padded.resize(
        std::max(padded.size() + 8, zfp_stream_maximum_size(z.zfp, z.field)),
        '\0');
    z.Attach(padded.data(), padded.size());
    if (zfp_decompress(z.zfp, z.field) == 0)
      return absl::DataLossError("zfp: corrupt stream");
    StoreElements(shape.dtype, values, 0, out);
    return absl::OkStatus();
  }

 private:
  // RAII for zfp's C handles. The field is 2-D: x = channel, y = token
  // (consecutive heads and layers follow each other along y).
  struct Stream {
    Stream(double rate, float* values, const TensorShape& shape) {
      field = zfp_field_2d(values, zfp_type_float, shape.head_dim,
                           shape.tokens * shape.slots);
      zfp = zfp_stream_open(nullptr);
      zfp_stream_set_rate(zfp, rate, zfp_type_float, 2, zfp_false);
    }
    void Attach(void* buffer, size_t size) {
      bits = stream_open(buffer, size);
      zfp_stream_set_bit_stream(zfp, bits);
      zfp_stream_rewind(zfp);
    }
    ~Stream() {
      zfp_field_free(field);
      zfp_stream_close(zfp);
      if (bits) stream_close(bits);
    }
    zfp_field* field = nullptr;
    zfp_stream* zfp = nullptr;
    bitstream* bits = nullptr;
  };

  double rate_;
};

}  // namespace

std::unique_ptr<PeerCodec> MakeFpzipPeer() {
  return std::make_unique<FpzipPeer>();
}
std::unique_ptr<PeerCodec> MakeZfpPeer(double rate) {
  return std::make_unique<ZfpPeer>(rate);
}

}  // namespace seqkv::bench
