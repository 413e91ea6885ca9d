// Helpers shared by the model tests: temporary directories, file I/O and
// hand-built safetensors bytes (so malformed files can be made on purpose).
#ifndef ALIBI_TESTS_MODEL_TEST_UTIL_H_
#define ALIBI_TESTS_MODEL_TEST_UTIL_H_

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace alibi::model::testing {

inline std::string DataDir() { return ALIBI_TEST_DATA_DIR; }
inline std::string TinyBloomDir() { return DataDir() + "/models/tiny-bloom"; }
inline std::string TinyMptDir() { return DataDir() + "/models/tiny-mpt"; }

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// A fresh directory under the test temp dir, removed on destruction.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info != nullptr ? std::string(info->name()) : "x";
    for (char& c : name) {
      if (c == '/') c = '_';  // parameterised tests: "Name/0"
    }
    path_ = ::testing::TempDir() + "alibi_model_" + std::to_string(getpid()) +
            "_" + name + "_" + std::to_string(counter++);
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A safetensors file from a header text (taken verbatim) and data bytes.
inline std::string SafetensorsBytes(const std::string& header,
                                    const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + header + data;
}

}  // namespace alibi::model::testing

#endif  // ALIBI_TESTS_MODEL_TEST_UTIL_H_
