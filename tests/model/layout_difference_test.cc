#include <string>

#include "codec/kv_layout.h"
#include "gtest/gtest.h"

namespace seqkv {
namespace {

KvLayout Llama(double theta) {
  KvLayout layout;
  layout.num_layers = 8;
  layout.num_kv_heads = 4;
  layout.head_dim = 64;
  layout.dtype = DType::kBF16;
  layout.rope.style = RopeStyle::kRotateHalf;
  layout.rope.theta = theta;
  return layout;
}

TEST(DescribeLayoutDifferenceTest, EqualLayoutsHaveNone) {
  EXPECT_EQ(DescribeLayoutDifference(Llama(500000), Llama(500000)), "");
}

TEST(DescribeLayoutDifferenceTest, NamesTheRopeThetaThatDebugStringHides) {
  const KvLayout registered = Llama(500000), sent = Llama(10000);
  ASSERT_EQ(registered.DebugString(), sent.DebugString());
  EXPECT_EQ(DescribeLayoutDifference(registered, sent),
            "rope theta 10000 (expected 500000)");
}

TEST(DescribeLayoutDifferenceTest, NamesEveryDifferingField) {
  KvLayout got = Llama(10000);
  got.num_layers = 16;
  got.num_kv_heads = 8;
  got.head_dim = 128;
  got.dtype = DType::kFP16;
  got.rope.style = RopeStyle::kInterleaved;
  got.rope.rotary_dim = 64;
  EXPECT_EQ(DescribeLayoutDifference(Llama(500000), got),
            "layers 16 (expected 8), kv heads 8 (expected 4), head_dim 128 "
            "(expected 64), dtype fp16 (expected bf16), rope style "
            "interleaved (expected rotate_half), rope theta 10000 (expected "
            "500000), rope rotary_dim 64 (expected 0)");
}

TEST(DescribeLayoutDifferenceTest, LatentAndRopeStyle) {
  KvLayout expected = Llama(10000);
  expected.rope.style = RopeStyle::kNone;
  KvLayout got = expected;
  got.latent = true;
  got.rope.style = RopeStyle::kRotateHalf;
  got.rope.theta = 1e6;
  // The theta of a layout without RoPE means nothing, so only the style
  // is named.
  EXPECT_EQ(DescribeLayoutDifference(expected, got),
            "latent true (expected false), rope style rotate_half (expected "
            "none)");
}

TEST(DescribeLayoutDifferenceTest, UnstatedRopeIsNotADifference) {
  KvLayout got = Llama(10000);
  got.rope.style = RopeStyle::kNone;
  EXPECT_EQ(DescribeLayoutDifference(Llama(500000), got), "");
  got.head_dim = 32;
  EXPECT_EQ(DescribeLayoutDifference(Llama(500000), got),
            "head_dim 32 (expected 64)");
}

}  // namespace
}  // namespace seqkv
