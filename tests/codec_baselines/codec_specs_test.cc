// Lists of codec specs as the CLI flags take them.
#include <string>
#include <vector>

#include "codec/codec.h"
#include "gtest/gtest.h"

namespace seqkv {
namespace {

using Specs = std::vector<std::string>;

TEST(SplitCodecSpecs, KeyValuePartsStayWithTheirSpec) {
  EXPECT_EQ(SplitCodecSpecs("raw"), Specs({"raw"}));
  EXPECT_EQ(SplitCodecSpecs("turbo:3,kivi:2,,zstd:19"),
            Specs({"turbo:3", "kivi:2", "zstd:19"}));
  EXPECT_EQ(
      SplitCodecSpecs("turbo:3,predictive:rel_mse=0.01,prerope=0,layer0=1,raw"),
      Specs({"turbo:3", "predictive:rel_mse=0.01,prerope=0,layer0=1", "raw"}));
  // A leading key=value has no spec to join: it stays a (bad) spec of its
  // own, which CreateCodec then rejects by name.
  EXPECT_EQ(SplitCodecSpecs("prerope=0,raw"), Specs({"prerope=0", "raw"}));
  EXPECT_TRUE(SplitCodecSpecs("").empty());
}

}  // namespace
}  // namespace seqkv
