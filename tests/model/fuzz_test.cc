// Fuzz-style robustness tests: garbage, bit flips and truncations fed to the
// safetensors reader and to ParseModelConfig must give an error (or, for a
// mutation that happens to stay valid, a self-consistent result), never a
// crash. Seeded, so failures reproduce.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/model/config.h"
#include "server/model/safetensors.h"
#include "tests/model/test_util.h"

namespace alibi::model {
namespace {

using ::alibi::model::testing::ReadFile;
using ::alibi::model::testing::SafetensorsBytes;
using ::alibi::model::testing::TinyBloomDir;
using ::alibi::model::testing::TinyMptDir;
using json = nlohmann::json;

// A small valid file: three tensors of different dtypes plus metadata.
std::string SmallValidFile() {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b.bias":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},)"
      R"("c":{"dtype":"I8","shape":[2],"data_offsets":[22,24]}})";
  std::string data;
  for (int i = 0; i < 24; ++i) data.push_back(static_cast<char>(i * 7));
  return SafetensorsBytes(header, data);
}

// What any successfully opened file must satisfy.
void ExpectConsistent(const SafetensorsFile& file, size_t file_size) {
  uint64_t covered = 0;
  for (const SafetensorsTensorInfo& t : file.tensors()) {
    EXPECT_LE(t.begin, t.end);
    EXPECT_EQ(t.begin, covered);
    covered = t.end;
    const uint64_t bits = static_cast<uint64_t>(t.numel()) *
                          static_cast<uint64_t>(SafetensorsDTypeBits(t.dtype));
    EXPECT_EQ(t.end - t.begin, bits / 8);
    // Touch the bytes: out-of-range views would fault under sanitizers.
    const uint8_t* p = file.Data(t);
    uint32_t sum = 0;
    for (uint64_t i = 0; i < t.end - t.begin; ++i) sum += p[i];
    (void)sum;
  }
  EXPECT_LE(covered, file_size);
}

TEST(SafetensorsFuzzTest, SmallValidFileIsValid) {
  auto file = SafetensorsFile::FromBytes("small", SmallValidFile());
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->tensors().size(), 3u);
}

TEST(SafetensorsFuzzTest, EveryTruncationFails) {
  const std::string full = SmallValidFile();
  for (size_t n = 0; n < full.size(); ++n) {
    auto file = SafetensorsFile::FromBytes("trunc", full.substr(0, n));
    EXPECT_FALSE(file.ok()) << "length " << n;
    EXPECT_THAT(file.status().message(), ::testing::HasSubstr("trunc: "));
  }
  // And so does every extension with trailing bytes.
  EXPECT_FALSE(SafetensorsFile::FromBytes("ext", full + "x").ok());
}

TEST(SafetensorsFuzzTest, BitFlipsOfTheHeader) {
  const std::string full = SmallValidFile();
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | static_cast<uint8_t>(full[i]);
  }
  int errors = 0, valid = 0;
  for (size_t byte = 0; byte < 8 + header_len; ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string mutated = full;
      mutated[byte] = static_cast<char>(mutated[byte] ^ (1 << bit));
      auto file = SafetensorsFile::FromBytes("flip", mutated);
      if (file.ok()) {
        ++valid;
        ExpectConsistent(**file, mutated.size());
      } else {
        ++errors;
        EXPECT_FALSE(file.status().message().empty());
      }
    }
  }
  // Most flips break something (a name's letter may flip harmlessly).
  EXPECT_GT(errors, 4 * valid);
  EXPECT_GT(valid, 0);
}

TEST(SafetensorsFuzzTest, RandomBytes) {
  std::mt19937_64 rng(1234);
  for (int iter = 0; iter < 3000; ++iter) {
    const size_t len = rng() % 300;
    std::string bytes(len, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    if (len >= 8 && iter % 2 == 0) {
      // A plausible header length so the JSON parser sees the garbage.
      const uint64_t n = rng() % (len - 7);
      for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(n >> (8 * i));
      if (len > 8 && iter % 4 == 0) bytes[8] = '{';
    }
    auto file = SafetensorsFile::FromBytes("random", bytes);
    EXPECT_FALSE(file.ok()) << "iteration " << iter;
  }
}

TEST(SafetensorsFuzzTest, MutatedHeaderValues) {
  // Every value in the header replaced by hostile values.
  const std::vector<json> hostile = {nullptr,
                                     true,
                                     -1,
                                     0,
                                     json(uint64_t{1} << 63),
                                     1e308,
                                     -0.0,
                                     "",
                                     "F32",
                                     json::array(),
                                     json::object(),
                                     json{1, 2},
                                     json{0, 1, 2},
                                     json{-1, 4},
                                     json{4, 0},
                                     json{0, uint64_t{1} << 62},
                                     json{uint64_t(-1), uint64_t(-1)}};
  const std::string full = SmallValidFile();
  const std::string data = full.substr(full.size() - 24);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | static_cast<uint8_t>(full[i]);
  }
  const json header = json::parse(full.substr(8, header_len));
  int errors = 0;
  int cases = 0;
  for (const auto& [name, entry] : header.items()) {
    for (const auto& [field, value] : entry.items()) {
      for (const json& h : hostile) {
        json mutated = header;
        mutated[name][field] = h;
        auto file = SafetensorsFile::FromBytes(
            "mut", SafetensorsBytes(mutated.dump(), data));
        ++cases;
        if (file.ok()) {
          ExpectConsistent(**file, 8 + mutated.dump().size() + data.size());
        } else {
          ++errors;
        }
      }
    }
  }
  EXPECT_GT(errors, cases * 3 / 4);
}

TEST(SafetensorsFuzzTest, FixtureHeaderBitFlips) {
  // Flip bits across the real tiny-mpt header (sampled) and check nothing
  // escapes; the data is kept as is.
  const std::string full = ReadFile(TinyMptDir() + "/model.safetensors");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | static_cast<uint8_t>(full[i]);
  }
  std::mt19937_64 rng(99);
  int errors = 0;
  for (int iter = 0; iter < 150; ++iter) {
    std::string mutated = full;
    const size_t byte = rng() % (8 + header_len);
    mutated[byte] = static_cast<char>(mutated[byte] ^ (1 << (rng() % 8)));
    auto file = SafetensorsFile::FromBytes("fixture", std::move(mutated));
    if (!file.ok()) ++errors;
  }
  EXPECT_GT(errors, 0);
}

void ExpectSaneConfig(const ModelConfig& c) {
  EXPECT_GT(c.vocab_size, 0);
  EXPECT_GT(c.hidden_size, 0);
  EXPECT_GT(c.num_layers, 0);
  EXPECT_GT(c.num_heads, 0);
  EXPECT_GT(c.num_kv_heads, 0);
  EXPECT_EQ(c.num_heads % c.num_kv_heads, 0);
  EXPECT_EQ(c.head_dim * c.num_heads, c.hidden_size);
  EXPECT_GT(c.ffn_hidden_size, 0);
  EXPECT_GT(c.softmax_scale, 0.0f);
  EXPECT_GT(c.alibi_bias_max, 0.0f);
}

TEST(ConfigFuzzTest, EveryTruncationOfAFixtureFails) {
  for (const std::string& dir : {TinyBloomDir(), TinyMptDir()}) {
    const std::string text = ReadFile(dir + "/config.json");
    const size_t last_brace = text.rfind('}');
    for (size_t n = 0; n < last_brace; ++n) {
      absl::StatusOr<ModelConfig> c = ParseModelConfig(text.substr(0, n));
      EXPECT_FALSE(c.ok()) << dir << " length " << n;
    }
    EXPECT_TRUE(ParseModelConfig(text.substr(0, last_brace + 1)).ok());
  }
}

TEST(ConfigFuzzTest, BitFlipsAndRandomBytes) {
  std::mt19937_64 rng(42);
  for (const std::string& dir : {TinyBloomDir(), TinyMptDir()}) {
    const std::string text = ReadFile(dir + "/config.json");
    int errors = 0;
    for (size_t byte = 0; byte < text.size(); ++byte) {
      std::string mutated = text;
      mutated[byte] = static_cast<char>(mutated[byte] ^ (1 << (rng() % 8)));
      absl::StatusOr<ModelConfig> c = ParseModelConfig(mutated);
      if (c.ok()) {
        ExpectSaneConfig(*c);
      } else {
        ++errors;
      }
    }
    EXPECT_GT(errors, static_cast<int>(text.size()) / 2) << dir;
  }
  for (int iter = 0; iter < 2000; ++iter) {
    std::string bytes(rng() % 200, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    if (iter % 3 == 0 && !bytes.empty()) bytes[0] = '{';
    EXPECT_FALSE(ParseModelConfig(bytes).ok());
  }
}

// Replaces every value (nested too) of a fixture config by hostile values.
void MutateAll(const json& root, const json& node, const json::json_pointer& at,
               int& cases) {
  static const std::vector<json> hostile = {nullptr,
                                            true,
                                            false,
                                            -1,
                                            0,
                                            1,
                                            json(uint64_t{1} << 63),
                                            1e308,
                                            -1e308,
                                            0.5,
                                            "",
                                            "x",
                                            json::array(),
                                            json::object(),
                                            json{1, 2},
                                            json{{"a", 1}}};
  for (const json& h : hostile) {
    json mutated = root;
    mutated[at] = h;
    absl::StatusOr<ModelConfig> c = ParseModelConfig(mutated.dump());
    ++cases;
    if (c.ok()) {
      ExpectSaneConfig(*c);
    } else {
      EXPECT_THAT(c.status().message(), ::testing::HasSubstr("config.json: "));
    }
  }
  if (node.is_object()) {
    for (const auto& [key, value] : node.items()) {
      MutateAll(root, value, at / key, cases);
    }
  } else if (node.is_array()) {
    for (size_t i = 0; i < node.size(); ++i) {
      MutateAll(root, node[i], at / i, cases);
    }
  }
}

TEST(ConfigFuzzTest, HostileValuesEverywhere) {
  for (const std::string& path :
       {TinyBloomDir() + "/config.json", TinyMptDir() + "/config.json",
        std::string(ALIBI_TEST_DATA_DIR) +
            "/tokenizers/replit-code-v1_5-3b/config.json"}) {
    const json root = json::parse(ReadFile(path));
    int cases = 0;
    for (const auto& [key, value] : root.items()) {
      MutateAll(root, value, json::json_pointer("/" + key), cases);
    }
    EXPECT_GT(cases, 100) << path;
  }
}

}  // namespace
}  // namespace alibi::model
