// model/safetensors and model/kv_cache: what is written reads back, and a
// damaged file is an error, not a crash.
#include "model/safetensors.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/kv_cache.h"
#include "tests/model/tiny_model.h"
#include "tests/scoped_temp_dir.h"

namespace seqkv {
namespace {

template <typename T>
Tensor MakeTensor(const char* dtype, std::vector<int64_t> shape,
                  const std::vector<T>& values) {
  Tensor tensor;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  tensor.data.resize(values.size() * sizeof(T));
  std::memcpy(tensor.data.data(), values.data(), tensor.data.size());
  return tensor;
}

SafetensorsFile Sample() {
  SafetensorsFile file;
  file.tensors["tokens"] = MakeTensor<int32_t>("I32", {5}, {1, -2, 3, 4, 5});
  file.tensors["big"] = MakeTensor<int64_t>("I64", {2}, {int64_t{1} << 40, 7});
  file.tensors["x"] =
      MakeTensor<float>("F32", {2, 3}, {0.5f, -1.0f, 2.0f, 3.5f, 0.0f, 1e9f});
  file.tensors["h"] =
      MakeTensor<uint16_t>("BF16", {1, 2, 2}, {0x3F80, 0xBF80, 0x4000, 0x0000});
  file.tensors["empty"] = MakeTensor<uint16_t>("F16", {0, 4}, {});
  file.metadata["format"] = "pt";
  file.metadata["note"] = "written by a test";
  return file;
}

TEST(SafetensorsTest, RoundTrip) {
  testing::ScopedTempDir dir("seqkv-safetensors");
  const std::string path = dir.string() + "/sample.safetensors";
  const SafetensorsFile written = Sample();
  ASSERT_TRUE(WriteSafetensors(path, written).ok());
  auto read = ReadSafetensors(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->metadata, written.metadata);
  ASSERT_EQ(read->tensors.size(), written.tensors.size());
  for (const auto& [name, tensor] : written.tensors) {
    auto found = read->Find(name);
    ASSERT_TRUE(found.ok()) << name;
    EXPECT_EQ((*found)->dtype, tensor.dtype) << name;
    EXPECT_EQ((*found)->shape, tensor.shape) << name;
    EXPECT_EQ((*found)->data, tensor.data) << name;
    EXPECT_EQ((*found)->num_elements(), tensor.num_elements()) << name;
  }
  EXPECT_EQ(read->Find("nothing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*read->Find("x"))->as<float>()[5], 1e9f);

  // Only the named tensors, the others skipped on disk.
  const std::string names[] = {"x", "tokens"};
  auto some = ReadSafetensorsTensors(path, names);
  ASSERT_TRUE(some.ok()) << some.status();
  EXPECT_EQ(some->tensors.size(), 2u);
  EXPECT_EQ(some->tensors.at("x").data, written.tensors.at("x").data);
  EXPECT_EQ(SafetensorsDTypeSize("BF16"), 2u);
  EXPECT_EQ(SafetensorsDTypeSize("I64"), 8u);
  EXPECT_EQ(SafetensorsDTypeSize("Q4"), 0u);
}

TEST(SafetensorsTest, DamagedFilesAreErrors) {
  testing::ScopedTempDir dir("seqkv-safetensors");
  const std::string path = dir.string() + "/sample.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, Sample()).ok());
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 16u);
  auto parse = [](std::string_view text) {
    return ParseSafetensors(
        {reinterpret_cast<const std::byte*>(text.data()), text.size()});
  };
  EXPECT_TRUE(parse(bytes).ok());
  for (size_t cut :
       {size_t{0}, size_t{7}, size_t{8}, size_t{20}, bytes.size() - 1})
    EXPECT_FALSE(parse(std::string_view(bytes).substr(0, cut)).ok()) << cut;
  std::string huge_header = bytes;
  huge_header[7] = '\x7f';  // a header length past the end
  EXPECT_FALSE(parse(huge_header).ok());
  EXPECT_EQ(ReadSafetensors(dir.string() + "/absent.safetensors").ok(), false);
}

TEST(KvCacheFileTest, RoundTripOfEachDType) {
  testing::ScopedTempDir dir("seqkv-kv-cache");
  for (DType dtype : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    KvCache cache;
    cache.layout.num_layers = 3;
    cache.layout.num_kv_heads = 2;
    cache.layout.head_dim = 8;
    cache.layout.dtype = dtype;
    cache.tokens = {5, 6, 7, 8, 9};
    cache.AllocateTensors();
    for (size_t i = 0; i < cache.k.size(); ++i) {
      cache.k[i] = std::byte(i * 7 + 1);
      cache.v[i] = std::byte(i * 13 + 2);
    }
    ASSERT_TRUE(cache.Validate().ok());
    const std::string path =
        dir.string() + "/" + DTypeName(dtype) + ".safetensors";
    ASSERT_TRUE(WriteKvCacheFile(path, cache).ok());
    auto read = ReadKvCacheFile(path);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->layout, cache.layout);
    EXPECT_EQ(read->tokens, cache.tokens);
    EXPECT_EQ(read->k, cache.k);
    EXPECT_EQ(read->v, cache.v);
  }
}

TEST(KvCacheFileTest, TinyDumpReads) {
  testing::ScopedTempDir dir("seqkv-kv-cache");
  testing::TinyModel model;
  const std::string path = dir.string() + "/dump.safetensors";
  ASSERT_TRUE(testing::WriteTinyDump(path, model, 40).ok());
  auto read = ReadKvCacheFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->num_tokens(), 40u);
  EXPECT_EQ(read->layout.num_kv_heads, model.num_kv_heads);
  EXPECT_EQ(read->layout.head_dim, model.head_dim);
  EXPECT_TRUE(read->Validate().ok());
}

}  // namespace
}  // namespace seqkv
