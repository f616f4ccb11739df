// A new, empty directory under the system's temporary directory, removed
// with everything in it when the object goes out of scope. Declare it
// before whatever keeps files open in it, so that it is destroyed after.
#ifndef SEQKV_TESTS_SCOPED_TEMP_DIR_H_
#define SEQKV_TESTS_SCOPED_TEMP_DIR_H_

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>

namespace seqkv::testing {

class ScopedTempDir {
 public:
  explicit ScopedTempDir(const std::string& prefix = "seqkv") {
    std::string pattern =
        (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX"))
            .string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error("mkdtemp " + pattern + " failed");
    path_ = pattern;
  }
  ~ScopedTempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string string() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace seqkv::testing

#endif  // SEQKV_TESTS_SCOPED_TEMP_DIR_H_
