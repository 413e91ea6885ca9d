// Where tests and benchmarks find the source tree's data and the build
// tree's programs: the paths of the build, unless the environment names
// others, so a test binary copied to another machine (scripts/gpu-check.sh
// ships them to a GPU machine) runs against the tree unpacked there:
//   ALIBI_TEST_DATA_DIR  tests/data
//   ALIBI_SOURCE_DIR     the source tree
//   ALIBI_BINARY_DIR     the build tree (server/alibi-server, client/...)
// Force-included into every test and benchmark target (alibi_test_paths in
// tests/CMakeLists.txt), where the build-time paths arrive as
// ALIBI_*_BUILD_PATH definitions; the macros above then read like the string
// constants they replace (`std::string(ALIBI_TEST_DATA_DIR) + "/models"`).
//
// Thread-safety: reads the environment; do not call setenv concurrently.
#ifndef ALIBI_TESTS_TESTING_TEST_PATHS_H_
#define ALIBI_TESTS_TESTING_TEST_PATHS_H_

#include <cstdlib>

namespace alibi::test_paths {

// $name if set and not empty, else `build_time`.
inline const char* PathFromEnv(const char* name, const char* build_time) {
  const char* value = std::getenv(name);
  return value != nullptr && value[0] != '\0' ? value : build_time;
}

}  // namespace alibi::test_paths

#ifdef ALIBI_TEST_DATA_DIR_BUILD_PATH
#define ALIBI_TEST_DATA_DIR                               \
  ::alibi::test_paths::PathFromEnv("ALIBI_TEST_DATA_DIR", \
                                   ALIBI_TEST_DATA_DIR_BUILD_PATH)
#endif
#ifdef ALIBI_SOURCE_DIR_BUILD_PATH
#define ALIBI_SOURCE_DIR                               \
  ::alibi::test_paths::PathFromEnv("ALIBI_SOURCE_DIR", \
                                   ALIBI_SOURCE_DIR_BUILD_PATH)
#endif
#ifdef ALIBI_BINARY_DIR_BUILD_PATH
#define ALIBI_BINARY_DIR                               \
  ::alibi::test_paths::PathFromEnv("ALIBI_BINARY_DIR", \
                                   ALIBI_BINARY_DIR_BUILD_PATH)
#endif

#endif  // ALIBI_TESTS_TESTING_TEST_PATHS_H_
