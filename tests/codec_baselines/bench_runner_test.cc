// The codec-bench loop as a library, on dumps it writes itself: every dtype,
// a latent layout, and chunk sizes that do not divide the sequence.
#include "bench/codec_bench/bench_runner.h"

#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/codec_bench/peer_codec.h"
#include "codec/turbo/element_io.h"
#include "gtest/gtest.h"
#include "model/kv_cache.h"

namespace seqkv::bench {
namespace {

std::string WriteDump(const std::string& name, DType dtype, bool latent,
                      uint32_t tokens) {
  KvCache cache;
  cache.layout.num_layers = 2;
  cache.layout.num_kv_heads = latent ? 1 : 2;
  cache.layout.head_dim = latent ? 96 : 64;
  cache.layout.dtype = dtype;
  cache.layout.latent = latent;
  cache.tokens.resize(tokens);
  for (uint32_t t = 0; t < tokens; ++t)
    cache.tokens[t] = static_cast<int32_t>(t % 50);
  cache.AllocateTensors();
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::vector<std::byte>* tensor : {&cache.k, &cache.v}) {
    std::vector<float> values(tensor->size() / DTypeSize(dtype));
    for (float& v : values) v = normal(rng);
    StoreElements(dtype, values, 0, *tensor);
  }
  const std::string path =
      (std::filesystem::path(::testing::TempDir()) / name).string();
  absl::Status s = WriteKvCacheFile(path, cache);
  EXPECT_TRUE(s.ok()) << s;
  return path;
}

TEST(BenchRunner, EveryDtypeAndLatent) {
  struct Case {
    DType dtype;
    bool latent;
  };
  for (const Case& c : {Case{DType::kBF16, false}, Case{DType::kFP16, false},
                        Case{DType::kFP32, false}, Case{DType::kBF16, true}}) {
    const std::string path =
        WriteDump(absl::StrCat("dump_", static_cast<int>(c.dtype), c.latent,
                               ".safetensors"),
                  c.dtype, c.latent, 70);
    BenchOptions options;
    options.codecs = {"raw", "zstd:3", "fpzip", "zfp:4", "turbo:3", "kivi:4"};
    options.chunk_tokens = 32;  // 32 + 32 + 6
    options.threads = 2;
    std::vector<std::string> files = {path, path};
    auto reports = RunCodecBench(options, files);
    ASSERT_TRUE(reports.ok()) << reports.status();
    ASSERT_EQ(reports->size(), options.codecs.size());
    const std::string what = absl::StrCat(std::string(DTypeName(c.dtype)),
                                          c.latent ? " latent" : "");
    for (const CodecReport& r : *reports) {
      EXPECT_EQ(r.files, 2u) << r.codec;
      EXPECT_EQ(r.chunks, 6u) << r.codec;
      EXPECT_GT(r.encode_mbps, 0) << r.codec;
      EXPECT_EQ(std::isnan(r.rel_mse_v), c.latent) << r.codec << " " << what;
      EXPECT_DOUBLE_EQ(r.input_bits, DTypeSize(c.dtype) * 8.0);
    }
    const CodecReport& raw = (*reports)[0];
    EXPECT_TRUE(raw.bit_exact);
    EXPECT_DOUBLE_EQ(raw.bits_per_element, DTypeSize(c.dtype) * 8.0);
    EXPECT_FALSE(raw.peer);
    const CodecReport& zstd = (*reports)[1];
    EXPECT_TRUE(zstd.peer);
    EXPECT_TRUE(zstd.bit_exact) << what;
    EXPECT_EQ(std::isnan(zstd.bits_per_element_v), c.latent);
    EXPECT_TRUE((*reports)[2].bit_exact) << "fpzip " << what;
    EXPECT_NEAR((*reports)[3].bits_per_element, 4.0, 0.05) << "zfp " << what;
    const CodecReport& turbo = (*reports)[4];
    EXPECT_FALSE(turbo.bit_exact);
    EXPECT_NEAR(turbo.rel_mse_k, 0.0346, 0.006) << what;
    EXPECT_GT(turbo.cosine, 0.98);
  }
}

TEST(BenchRunner, BuildsModelStateOncePerLayout) {
  const std::string a =
      WriteDump("state_a.safetensors", DType::kBF16, false, 20);
  const std::string b =
      WriteDump("state_b.safetensors", DType::kFP16, false, 20);
  BenchOptions options;
  options.codecs = {"raw", "lz4"};
  int calls = 0;
  options.build_state = [&](const KvLayout& layout) {
    ++calls;
    return BenchOptions::CodecState{{"blob", std::string(100, 'x')}};
  };
  std::vector<std::string> files = {a, b, a};
  auto reports = RunCodecBench(options, files);
  ASSERT_TRUE(reports.ok()) << reports.status();
  EXPECT_EQ(calls, 2);
  EXPECT_EQ((*reports)[0].state_bytes, 200u);
  EXPECT_EQ((*reports)[1].state_bytes, 0u);  // peers take no model state

  options.build_state =
      [](const KvLayout&) -> absl::StatusOr<BenchOptions::CodecState> {
    return absl::FailedPreconditionError("no model files");
  };
  EXPECT_EQ(RunCodecBench(options, files).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(BenchRunner, ReportsBadInput) {
  BenchOptions options;
  options.codecs = {"nonsense:1"};
  const std::string path =
      WriteDump("bad_codec.safetensors", DType::kBF16, false, 4);
  std::vector<std::string> files = {path};
  EXPECT_EQ(RunCodecBench(options, files).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.codecs = {"raw"};
  files = {path + ".missing"};
  EXPECT_FALSE(RunCodecBench(options, files).ok());
  EXPECT_EQ(CreatePeerCodec("zstd:99").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreatePeerCodec("turbo:3").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace seqkv::bench
