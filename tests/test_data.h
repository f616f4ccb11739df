// The shared data directory (real KV caches in kv/, the kvlm-23m model in
// lm/, request traces in traces/) that some tests read. A clone of the
// repository alone has none of it: those tests skip, naming what they need.
// Where the build requires the data (SEQKV_REQUIRE_DATA, on by default when
// SEQKV_DATA_DIR existed at configure time), a missing file fails the test
// instead, so a run that has the data cannot skip silently.
#ifndef SEQKV_TESTS_TEST_DATA_H_
#define SEQKV_TESTS_TEST_DATA_H_

#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>

#include "gtest/gtest.h"

#ifndef SEQKV_DATA_REQUIRED
#define SEQKV_DATA_REQUIRED 0
#endif

namespace seqkv::testing {

inline constexpr bool kTestDataRequired = SEQKV_DATA_REQUIRED != 0;

// SEQKV_DATA_DIR/relative.
inline std::string TestDataPath(std::string_view relative) {
  return std::string(SEQKV_DATA_DIR) + "/" + std::string(relative);
}

// Empty when every file or directory named (relative to SEQKV_DATA_DIR)
// exists; otherwise why the test cannot run, naming the first missing one.
inline std::string MissingTestData(
    std::initializer_list<std::string_view> relative_paths) {
  for (std::string_view relative : relative_paths) {
    const std::string path = TestDataPath(relative);
    std::error_code error;
    if (!std::filesystem::exists(path, error))
      return "needs " + path +
             ": the shared data directory (real KV caches, model, traces) is "
             "missing; configure with -DSEQKV_DATA_DIR=<dir> to run this test";
  }
  return "";
}

}  // namespace seqkv::testing

// At the start of a test body or a fixture's SetUp(): skips the test (fails
// it where the data is required) unless every named file of the shared data
// directory exists, e.g. SEQKV_NEEDS_TEST_DATA("lm/tokenizer.json").
#define SEQKV_NEEDS_TEST_DATA(...)                                           \
  do {                                                                       \
    const std::string seqkv_missing_data =                                   \
        ::seqkv::testing::MissingTestData({__VA_ARGS__});                    \
    if (!seqkv_missing_data.empty()) {                                       \
      if (::seqkv::testing::kTestDataRequired) FAIL() << seqkv_missing_data; \
      GTEST_SKIP() << seqkv_missing_data;                                    \
    }                                                                        \
  } while (0)

#endif  // SEQKV_TESTS_TEST_DATA_H_
