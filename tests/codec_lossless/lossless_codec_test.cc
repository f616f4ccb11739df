#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "codec/float_bits.h"
#include "codec/lossless_codec_stream.h"
#include "codec/predictive/rans_vector.h"
#include "model/safetensors.h"
#include "tests/codec_lossless/format2_payloads.h"
#include "tests/codec_lossless/lossless_test_util.h"
#include "tests/test_data.h"

namespace seqkv {
namespace {

using ::seqkv::testing::MakeChunk;
using ::seqkv::testing::SpecialBits;
using ::seqkv::testing::StoreBits;

std::unique_ptr<Codec> MakeLossless(const KvLayout& layout) {
  ModelContext model;
  model.layout = layout;
  auto codec = CreateCodec("lossless", model);
  EXPECT_TRUE(codec.ok()) << codec.status();
  return std::move(codec).value();
}

KvLayout Layout(DType dtype, uint32_t layers, uint32_t heads, uint32_t head_dim,
                RopeStyle rope = RopeStyle::kRotateHalf, bool latent = false) {
  KvLayout layout;
  layout.num_layers = layers;
  layout.num_kv_heads = heads;
  layout.head_dim = head_dim;
  layout.dtype = dtype;
  layout.latent = latent;
  layout.rope.style = rope;
  return layout;
}

std::vector<int32_t> Tokens(uint32_t n, uint64_t seed, int32_t vocab = 50) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> tokens(n);
  for (int32_t& token : tokens) token = static_cast<int32_t>(rng() % vocab);
  return tokens;
}

// Encodes, checks the payload decodes bit for bit, returns it.
std::string RoundTrip(const Codec& codec, const ChunkInfo& chunk,
                      const std::vector<std::byte>& data) {
  std::string encoded;
  EXPECT_TRUE(codec.Encode(chunk, data, encoded).ok());
  std::vector<std::byte> decoded(data.size(), std::byte{0x5A});
  const absl::Status status = codec.Decode(chunk, encoded, decoded);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_TRUE(decoded == data) << "decoded chunk differs";
  return encoded;
}

TEST(LosslessCodecTest, SpecAndParams) {
  ModelContext model;
  model.layout = Layout(DType::kBF16, 1, 1, 64);
  auto codec = CreateCodec("lossless", model);
  ASSERT_TRUE(codec.ok());
  EXPECT_EQ((*codec)->spec(), "lossless");
  EXPECT_TRUE((*codec)->lossless());
  EXPECT_EQ(CreateCodec("lossless:fast", model).status().code(),
            absl::StatusCode::kInvalidArgument);
}

struct ShapeCase {
  DType dtype;
  uint32_t layers, heads, head_dim, tokens;
  RopeStyle rope;
  bool latent;
  bool with_tokens;
};

class LosslessShapeTest : public ::testing::TestWithParam<ShapeCase> {};

TEST_P(LosslessShapeTest, RoundTripsBitExact) {
  const ShapeCase& c = GetParam();
  const KvLayout layout =
      Layout(c.dtype, c.layers, c.heads, c.head_dim, c.rope, c.latent);
  ASSERT_TRUE(layout.Validate().ok());
  auto codec = MakeLossless(layout);
  const std::vector<int32_t> tokens = Tokens(c.tokens, 3);
  std::span<const int32_t> token_span;
  if (c.with_tokens) token_span = tokens;
  ChunkInfo chunk{&layout, c.tokens, 1000, token_span};
  for (uint64_t seed : {1, 2}) {
    const std::vector<std::byte> data =
        MakeChunk(layout, c.tokens, token_span, seed);
    const std::string encoded = RoundTrip(*codec, chunk, data);
    // Smooth, repetitive synthetic data must compress.
    if (c.tokens >= 64) {
      EXPECT_LT(encoded.size(), data.size());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, LosslessShapeTest,
    ::testing::Values(
        ShapeCase{DType::kBF16, 2, 2, 128, 96, RopeStyle::kRotateHalf, false,
                  true},
        ShapeCase{DType::kFP16, 2, 2, 128, 96, RopeStyle::kRotateHalf, false,
                  true},
        ShapeCase{DType::kFP32, 2, 2, 128, 96, RopeStyle::kRotateHalf, false,
                  true},
        ShapeCase{DType::kBF16, 3, 1, 64, 80, RopeStyle::kInterleaved, false,
                  true},
        ShapeCase{DType::kFP16, 2, 4, 256, 70, RopeStyle::kNone, false, false},
        ShapeCase{DType::kFP32, 1, 2, 256, 64, RopeStyle::kRotateHalf, false,
                  false},
        ShapeCase{DType::kBF16, 2, 1, 576, 66, RopeStyle::kNone, true, true},
        ShapeCase{DType::kFP32, 2, 1, 96, 65, RopeStyle::kNone, true, false},
        ShapeCase{DType::kBF16, 2, 2, 128, 1, RopeStyle::kRotateHalf, false,
                  true},
        ShapeCase{DType::kFP16, 1, 1, 2, 1, RopeStyle::kRotateHalf, false,
                  false},
        ShapeCase{DType::kFP32, 1, 3, 6, 2, RopeStyle::kInterleaved, false,
                  true}));

TEST(LosslessCodecTest, PartialRotaryDim) {
  KvLayout layout = Layout(DType::kBF16, 2, 2, 128);
  layout.rope.rotary_dim = 32;
  auto codec = MakeLossless(layout);
  const std::vector<int32_t> tokens = Tokens(64, 5);
  ChunkInfo chunk{&layout, 64, 0, tokens};
  RoundTrip(*codec, chunk, MakeChunk(layout, 64, tokens, 9));
}

// Every bit pattern of a 16-bit format, and special and random 32-bit ones,
// in every position of a chunk: no value is out of the codec's reach.
TEST(LosslessCodecTest, EverySixteenBitPatternRoundTrips) {
  for (DType dtype : {DType::kBF16, DType::kFP16}) {
    const KvLayout layout = Layout(dtype, 1, 2, 128);
    auto codec = MakeLossless(layout);
    constexpr uint32_t kTokens = 128;  // 1 layer x 2 x 2 x 128 x 128 = 2^16
    const std::vector<int32_t> tokens = Tokens(kTokens, 1);
    ChunkInfo chunk{&layout, kTokens, 0, tokens};
    std::vector<uint32_t> patterns(1 << 16);
    for (uint32_t i = 0; i < patterns.size(); ++i) patterns[i] = i;
    std::shuffle(patterns.begin(), patterns.end(), std::mt19937_64(4));
    std::vector<std::byte> data(chunk.num_bytes());
    for (size_t i = 0; i < patterns.size(); ++i)
      StoreBits(dtype, patterns[i], data.data() + 2 * i);
    RoundTrip(*codec, chunk, data);
    // Sorted patterns walk through every binade in order.
    std::sort(patterns.begin(), patterns.end());
    for (size_t i = 0; i < patterns.size(); ++i)
      StoreBits(dtype, patterns[i], data.data() + 2 * i);
    RoundTrip(*codec, chunk, data);
  }
}

TEST(LosslessCodecTest, SpecialValuesAmongSmoothData) {
  for (DType dtype : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    const KvLayout layout = Layout(dtype, 2, 2, 64);
    auto codec = MakeLossless(layout);
    const std::vector<int32_t> tokens = Tokens(100, 8, 10);
    ChunkInfo chunk{&layout, 100, 5, tokens};
    // A fifth of the values special or random.
    RoundTrip(*codec, chunk, MakeChunk(layout, 100, tokens, 11, 0.1));
    // All-special rows, all zeros, all negative zeros.
    std::vector<std::byte> data(chunk.num_bytes());
    const std::vector<uint32_t> specials = SpecialBits(dtype);
    const size_t width = DTypeSize(dtype);
    for (size_t i = 0; i < data.size() / width; ++i)
      StoreBits(dtype, specials[i % specials.size()], data.data() + i * width);
    RoundTrip(*codec, chunk, data);
    std::fill(data.begin(), data.end(), std::byte{0});
    RoundTrip(*codec, chunk, data);
    for (size_t i = 0; i < data.size() / width; ++i)
      StoreBits(dtype, specials[1], data.data() + i * width);
    RoundTrip(*codec, chunk, data);
  }
}

TEST(LosslessCodecTest, TinyAndHugeScalesRoundTrip) {
  for (DType dtype : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    const KvLayout layout = Layout(dtype, 1, 1, 64);
    auto codec = MakeLossless(layout);
    ChunkInfo chunk{&layout, 40, 0, {}};
    std::mt19937_64 rng(12);
    std::normal_distribution<float> normal;
    for (float scale : {1e-30f, 1e-6f, 1.0f, 3e4f, 1e30f}) {
      std::vector<std::byte> data(chunk.num_bytes());
      const size_t width = DTypeSize(dtype);
      for (size_t i = 0; i < data.size() / width; ++i)
        StoreBits(dtype, testing::ToBits(dtype, normal(rng) * scale),
                  data.data() + i * width);
      RoundTrip(*codec, chunk, data);
    }
  }
}

TEST(LosslessCodecTest, FloatFormatOrdCeilIsTheNextValueUp) {
  for (DType dtype : {DType::kBF16, DType::kFP16}) {
    const lossless::FloatFormat format = lossless::FloatFormat::For(dtype);
    // Walk every finite value in order; midpoints round up to the next one.
    std::vector<uint32_t> finite;
    for (uint32_t bits = 0; bits < (1u << 16); ++bits)
      if (format.IsFinite(bits)) finite.push_back(bits);
    std::sort(finite.begin(), finite.end(), [&](uint32_t a, uint32_t b) {
      return format.ToOrd(a) < format.ToOrd(b);
    });
    for (size_t i = 0; i + 1 < finite.size(); ++i) {
      const double a = format.ToDouble(finite[i]);
      const double b = format.ToDouble(finite[i + 1]);
      ASSERT_LE(a, b);
      if (a == b) continue;  // -0 and +0
      ASSERT_EQ(format.OrdCeil(b), format.ToOrd(finite[i + 1]));
      ASSERT_EQ(format.OrdCeil((a + b) / 2), format.ToOrd(finite[i + 1]))
          << std::hex << finite[i];
      ASSERT_EQ(format.FromOrd(format.ToOrd(finite[i])), finite[i]);
    }
    // Beyond the largest finite value: +Inf.
    EXPECT_EQ(format.OrdCeil(1e300),
              format.ToOrd(format.exp_all_ones() << format.mant_bits));
  }
}

// A model-state layer-0 table ("layer0" blob): every token's K before RoPE
// and V, bf16.
std::string Layer0Blob(uint32_t vocab, const KvLayout& layout,
                       std::vector<uint16_t>& k, std::vector<uint16_t>& v,
                       uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  const size_t n = size_t{vocab} * layout.num_kv_heads * layout.head_dim;
  k.resize(n);
  v.resize(n);
  for (size_t i = 0; i < n; ++i) {
    k[i] = FloatToBf16(normal(rng) + (i % 5 == 0 ? 3.0f : 0.0f));
    v[i] = FloatToBf16(normal(rng) * 0.3f);
  }
  std::string blob = "SKVL0TB1";
  const uint32_t header[4] = {vocab, layout.num_kv_heads, layout.head_dim, 0};
  blob.append(reinterpret_cast<const char*>(header), sizeof(header));
  blob.append(reinterpret_cast<const char*>(k.data()), 2 * n);
  blob.append(reinterpret_cast<const char*>(v.data()), 2 * n);
  return blob;
}

TEST(LosslessCodecTest, LayerZeroTableFromModelState) {
  const KvLayout layout = Layout(DType::kBF16, 2, 2, 64);
  constexpr uint32_t kVocab = 300;
  constexpr uint32_t kTokens = 64;
  constexpr uint64_t kFirst = 777;
  std::vector<uint16_t> table_k, table_v;
  ModelContext model;
  model.layout = layout;
  model.codec_state["layer0"] = Layer0Blob(kVocab, layout, table_k, table_v, 1);
  auto with_table = CreateCodec("lossless", model);
  ASSERT_TRUE(with_table.ok());
  auto without_table = MakeLossless(layout);

  const std::vector<int32_t> tokens = Tokens(kTokens, 4, kVocab);
  ChunkInfo chunk{&layout, kTokens, kFirst, tokens};
  std::vector<std::byte> data = MakeChunk(layout, kTokens, tokens, 5);
  // Layer 0 as a model makes it: V from the table, K from the table turned
  // by RoPE (rotate-half, theta 10000) in bf16 arithmetic.
  for (uint32_t head = 0; head < 2; ++head) {
    for (uint32_t t = 0; t < kTokens; ++t) {
      const size_t row = (size_t(tokens[t]) * 2 + head) * 64;
      std::byte* v_out = data.data() + chunk.RowOffset(0, 1, head, t) * 2;
      std::memcpy(v_out, &table_v[row], 128);
      std::byte* k_out = data.data() + chunk.RowOffset(0, 0, head, t) * 2;
      for (uint32_t i = 0; i < 32; ++i) {
        const double angle = (kFirst + t) * std::pow(10000.0, -2.0 * i / 64);
        const float c = Bf16ToFloat(FloatToBf16(std::cos(angle)));
        const float s = Bf16ToFloat(FloatToBf16(std::sin(angle)));
        const float x = Bf16ToFloat(table_k[row + i]);
        const float y = Bf16ToFloat(table_k[row + i + 32]);
        auto r = [](float f) { return Bf16ToFloat(FloatToBf16(f)); };
        StoreBits(DType::kBF16, FloatToBf16(r(x * c) - r(y * s)),
                  k_out + 2 * i);
        StoreBits(DType::kBF16, FloatToBf16(r(y * c) + r(x * s)),
                  k_out + 2 * (i + 32));
      }
    }
  }
  const std::string small = RoundTrip(**with_table, chunk, data);
  const std::string large = RoundTrip(*without_table, chunk, data);
  // Layer 0 is a quarter of the chunk and nearly free with the table.
  EXPECT_LT(small.size() * 5, large.size() * 4);

  std::vector<std::byte> out(data.size());
  EXPECT_EQ(without_table->Decode(chunk, small, out).code(),
            absl::StatusCode::kFailedPrecondition);
  ModelContext other = model;
  other.codec_state["layer0"] = Layer0Blob(kVocab, layout, table_k, table_v, 2);
  EXPECT_EQ((*CreateCodec("lossless", other))->Decode(chunk, small, out).code(),
            absl::StatusCode::kFailedPrecondition);
  // A blob that is not a table for this layout is ignored.
  ModelContext bad = model;
  bad.codec_state["layer0"] = "SKVL0TB1 not a table";
  auto ignoring = CreateCodec("lossless", bad);
  ASSERT_TRUE(ignoring.ok());
  EXPECT_EQ(RoundTrip(**ignoring, chunk, data).size(), large.size());
}

// A fixed sample chunk for the corruption tests.
struct Sample {
  KvLayout layout = Layout(DType::kBF16, 2, 2, 64);
  std::vector<int32_t> tokens = Tokens(48, 6, 12);
  ChunkInfo chunk{&layout, 48, 0, tokens};
  std::vector<std::byte> data = MakeChunk(layout, 48, tokens, 21);
};

TEST(LosslessCodecTest, EveryTruncationIsDataLoss) {
  Sample sample;
  auto codec = MakeLossless(sample.layout);
  const std::string encoded = RoundTrip(*codec, sample.chunk, sample.data);
  std::vector<std::byte> out(sample.data.size());
  for (size_t length = 0; length < encoded.size(); ++length) {
    const absl::Status status = codec->Decode(
        sample.chunk, std::string_view(encoded).substr(0, length), out);
    ASSERT_EQ(status.code(), absl::StatusCode::kDataLoss) << length;
  }
  // And an extra byte.
  EXPECT_EQ(codec->Decode(sample.chunk, encoded + "x", out).code(),
            absl::StatusCode::kDataLoss);
}

TEST(LosslessCodecTest, ByteFlipsAreDataLoss) {
  Sample sample;
  auto codec = MakeLossless(sample.layout);
  const std::string encoded = RoundTrip(*codec, sample.chunk, sample.data);
  std::vector<std::byte> out(sample.data.size());
  // Every header byte, the ends of the streams, and a random sample.
  std::vector<size_t> positions;
  for (size_t i = 0; i < 600 && i < encoded.size(); ++i) positions.push_back(i);
  for (size_t i = 0; i < 64 && i < encoded.size(); ++i)
    positions.push_back(encoded.size() - 1 - i);
  std::mt19937_64 rng(2);
  for (int i = 0; i < 200; ++i) positions.push_back(rng() % encoded.size());
  for (size_t position : positions) {
    std::string corrupt = encoded;
    corrupt[position] ^= static_cast<char>(1 + rng() % 255);
    const absl::Status status = codec->Decode(sample.chunk, corrupt, out);
    // A flags byte that now claims a layer-0 table this model lacks is
    // reported as such.
    if (position == 1 && status.code() == absl::StatusCode::kFailedPrecondition)
      continue;
    ASSERT_EQ(status.code(), absl::StatusCode::kDataLoss)
        << "byte " << position;
  }
}

TEST(LosslessCodecTest, WrongTokensOrLayoutAreDataLoss) {
  Sample sample;
  auto codec = MakeLossless(sample.layout);
  const std::string encoded = RoundTrip(*codec, sample.chunk, sample.data);
  std::vector<std::byte> out(sample.data.size());
  ChunkInfo no_tokens = sample.chunk;
  no_tokens.tokens = {};
  EXPECT_EQ(codec->Decode(no_tokens, encoded, out).code(),
            absl::StatusCode::kDataLoss);
  std::vector<int32_t> other = sample.tokens;
  std::reverse(other.begin(), other.end());
  ChunkInfo other_tokens = sample.chunk;
  other_tokens.tokens = other;
  EXPECT_EQ(codec->Decode(other_tokens, encoded, out).code(),
            absl::StatusCode::kDataLoss);
  KvLayout no_rope = sample.layout;
  no_rope.rope.style = RopeStyle::kNone;
  ChunkInfo other_layout = sample.chunk;
  other_layout.layout = &no_rope;
  EXPECT_EQ(codec->Decode(other_layout, encoded, out).code(),
            absl::StatusCode::kDataLoss);
}

TEST(LosslessCodecTest, WrongInputSizeIsInvalidArgument) {
  Sample sample;
  auto codec = MakeLossless(sample.layout);
  std::string encoded;
  sample.data.pop_back();
  EXPECT_EQ(codec->Encode(sample.chunk, sample.data, encoded).code(),
            absl::StatusCode::kInvalidArgument);
}

// Every real cache of ../shared/data/kv, in chunks of 256 tokens (and a
// ragged last chunk), decodes bit for bit.
class LosslessRealDataTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LosslessRealDataTest, RoundTripsBitExact) {
  SEQKV_NEEDS_TEST_DATA("kv", "kv/" + GetParam() + ".safetensors");
  const std::string path =
      std::string(SEQKV_DATA_DIR) + "/kv/" + GetParam() + ".safetensors";
  auto file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const Tensor* k = *file->Find("k");
  const Tensor* v = *file->Find("v");
  const Tensor* tokens_tensor = *file->Find("tokens");
  ASSERT_EQ(k->dtype, "BF16");
  KvLayout layout = Layout(DType::kBF16, k->shape[0], k->shape[1], k->shape[3]);
  const uint32_t total = static_cast<uint32_t>(k->shape[2]);
  auto codec = MakeLossless(layout);
  auto tokens = tokens_tensor->as<int32_t>();
  auto k_bits = k->as<uint16_t>();
  auto v_bits = v->as<uint16_t>();
  size_t raw_bytes = 0, encoded_bytes = 0;
  for (uint32_t start = 0; start < total; start += 256) {
    const uint32_t n = std::min(256u, total - start);
    ChunkInfo chunk{&layout, n, start, tokens.subspan(start, n)};
    std::vector<uint16_t> data(chunk.num_elements());
    for (uint32_t layer = 0; layer < layout.num_layers; ++layer)
      for (uint32_t tensor = 0; tensor < 2; ++tensor)
        for (uint32_t head = 0; head < layout.num_kv_heads; ++head) {
          const uint16_t* src =
              (tensor == 0 ? k_bits : v_bits).data() +
              ((size_t{layer} * layout.num_kv_heads + head) * total + start) *
                  layout.head_dim;
          std::copy(src, src + size_t{n} * layout.head_dim,
                    data.begin() + chunk.RowOffset(layer, tensor, head, 0));
        }
    std::vector<std::byte> bytes(chunk.num_bytes());
    std::memcpy(bytes.data(), data.data(), bytes.size());
    const std::string encoded = RoundTrip(*codec, chunk, bytes);
    encoded_bytes += encoded.size();
    raw_bytes += bytes.size();
    // The portable loop decodes real payloads to the same bits.
    predictive::LimitVectorKernel(predictive::VectorKernel::kPortable);
    std::vector<std::byte> portable(bytes.size());
    EXPECT_TRUE(codec->Decode(chunk, encoded, portable).ok());
    predictive::LimitVectorKernel(predictive::VectorKernel::kAvx512);
    EXPECT_TRUE(portable == bytes);
  }
  // Real caches compress; the figures are for benchmarks, not for tests.
  EXPECT_LT(encoded_bytes, raw_bytes);
}

// Chunks stored by the codec's previous format (2) must stay readable.
TEST(LosslessCodecTest, Format2PayloadsStillDecode) {
  struct Case {
    DType dtype;
    bool latent;
    RopeStyle rope;
    uint32_t layers, heads, dim, tokens;
    bool ids;
    uint64_t first, seed;
  };
  const Case cases[] = {
      {DType::kBF16, false, RopeStyle::kRotateHalf, 2, 2, 16, 12, true, 40, 11},
      {DType::kFP16, false, RopeStyle::kInterleaved, 2, 1, 8, 9, false, 0, 12},
      {DType::kFP32, true, RopeStyle::kNone, 1, 1, 24, 7, false, 3, 13}};
  ASSERT_EQ(std::size(cases), std::size(testing::kFormat2Payloads));
  for (size_t i = 0; i < std::size(cases); ++i) {
    const Case& c = cases[i];
    const KvLayout layout =
        Layout(c.dtype, c.layers, c.heads, c.dim, c.rope, c.latent);
    std::vector<int32_t> ids;
    if (c.ids)
      for (uint32_t t = 0; t < c.tokens; ++t)
        ids.push_back(static_cast<int32_t>((t * 5) % 4));
    const std::vector<std::byte> data =
        MakeChunk(layout, c.tokens, ids, c.seed, 0.02);
    std::string payload;
    const std::string_view hex = testing::kFormat2Payloads[i];
    for (size_t j = 0; j + 1 < hex.size(); j += 2)
      payload.push_back(static_cast<char>(
          std::stoi(std::string(hex.substr(j, 2)), nullptr, 16)));
    ASSERT_EQ(payload[0], 2) << "case " << i;
    auto codec = MakeLossless(layout);
    ChunkInfo chunk{&layout, c.tokens, c.first, ids};
    std::vector<std::byte> decoded(data.size());
    ASSERT_TRUE(codec->Decode(chunk, payload, decoded).ok()) << "case " << i;
    EXPECT_TRUE(decoded == data) << "case " << i;
    // New encodings are format 3 and decode too.
    const std::string encoded = RoundTrip(*codec, chunk, data);
    EXPECT_EQ(encoded[0], 3);
  }
}

// The vector kernels and the portable loop decode a payload to the same
// bits (the encoder has one path).
TEST(LosslessCodecTest, EveryKernelDecodesTheSameBits) {
  for (DType dtype : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    for (uint32_t head_dim : {64u, 80u, 256u}) {
      const KvLayout layout = Layout(dtype, 3, 2, head_dim);
      auto codec = MakeLossless(layout);
      const std::vector<int32_t> tokens = Tokens(77, 5);
      ChunkInfo chunk{&layout, 77, 123, tokens};
      const std::vector<std::byte> data = MakeChunk(layout, 77, tokens, 9);
      std::string encoded;
      ASSERT_TRUE(codec->Encode(chunk, data, encoded).ok());
      for (auto kernel : {predictive::VectorKernel::kPortable,
                          predictive::VectorKernel::kAvx2,
                          predictive::VectorKernel::kAvx512}) {
        predictive::LimitVectorKernel(kernel);
        std::vector<std::byte> decoded(data.size());
        ASSERT_TRUE(codec->Decode(chunk, encoded, decoded).ok());
        EXPECT_TRUE(decoded == data) << "kernel " << static_cast<int>(kernel)
                                     << " head_dim " << head_dim;
      }
      predictive::LimitVectorKernel(predictive::VectorKernel::kAvx512);
    }
  }
}

std::vector<std::string> RealFiles() {
  std::vector<std::string> names;
  const std::filesystem::path dir = std::string(SEQKV_DATA_DIR) + "/kv";
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    const std::string name = entry.path().stem().string();
    if (entry.path().extension() == ".safetensors" && name != "dev_eval_tokens")
      names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  // Without the data, one case that skips (or fails where it is required).
  if (names.empty()) names.push_back("no_kv_files");
  return names;
}

INSTANTIATE_TEST_SUITE_P(SharedData, LosslessRealDataTest,
                         ::testing::ValuesIn(RealFiles()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace seqkv
