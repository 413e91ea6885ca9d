// Ground-truth vectors: ids produced by the Hugging Face `tokenizers`
// library (directly, through llama.cpp's MPT test set, and through the model
// reference files) must be reproduced exactly.
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer/tokenizer.h"
#include "tests/tokenizer/test_tokenizers.h"

namespace alibi::tokenizer {
namespace {

using ::alibi::tokenizer::testing::BloomTokenizer;
using ::alibi::tokenizer::testing::DataPath;
using ::alibi::tokenizer::testing::NeoxTokenizer;
using ::alibi::tokenizer::testing::ReadFileOrDie;
using ::alibi::tokenizer::testing::ReplitTokenizer;
using ::testing::ElementsAreArray;

// A printable rendering of a test string for failure messages.
std::string Escaped(const std::string& s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) {
      absl::StrAppend(&out, "\\x", absl::Hex(u, absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

struct VectorCase {
  std::string text;
  std::vector<int32_t> ids;
  std::string decoded;
};

std::vector<VectorCase> LoadVectors(const std::string& relative) {
  const auto json = nlohmann::json::parse(ReadFileOrDie(DataPath(relative)));
  std::vector<VectorCase> cases;
  for (const auto& c : json.at("cases")) {
    cases.push_back({c.at("text").get<std::string>(),
                     c.at("ids").get<std::vector<int32_t>>(),
                     c.at("decoded").get<std::string>()});
  }
  return cases;
}

void CheckVectors(const Tokenizer& tokenizer, const std::string& relative) {
  const std::vector<VectorCase> cases = LoadVectors(relative);
  ASSERT_EQ(cases.size(), 35u) << relative;
  for (const VectorCase& c : cases) {
    SCOPED_TRACE(absl::StrCat(relative, ": \"", Escaped(c.text), "\""));
    const auto ids = tokenizer.Encode(c.text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_THAT(*ids, ElementsAreArray(c.ids));
    EXPECT_EQ(tokenizer.Decode(c.ids, /*skip_special_tokens=*/false),
              c.decoded);
  }
}

TEST(TokenizerVectorsTest, BloomStyle) {
  CheckVectors(BloomTokenizer(), "tokenizers/bloom-style.vectors.json");
}

TEST(TokenizerVectorsTest, GptNeox20b) {
  CheckVectors(NeoxTokenizer(), "tokenizers/gpt-neox-20b.vectors.json");
}

TEST(TokenizerVectorsTest, ReplitCodeV15) {
  CheckVectors(ReplitTokenizer(), "tokenizers/replit-code-v1_5.vectors.json");
}

// llama.cpp's test-tokenizer-0 format: every input is followed by the line
// "__ggml_vocab_test__", i.e. inputs are separated by (and the file ends
// with) "\n__ggml_vocab_test__\n"; the .out file has one line of
// space-separated ids per input (empty for an empty encoding).
TEST(TokenizerVectorsTest, LlamaCppMptVectors) {
  const std::string inp =
      ReadFileOrDie(DataPath("tokenizers/mpt-llamacpp-vectors.inp"));
  const std::string out =
      ReadFileOrDie(DataPath("tokenizers/mpt-llamacpp-vectors.out"));
  const std::string delimiter = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  size_t pos = 0;
  while (true) {
    const size_t next = inp.find(delimiter, pos);
    if (next == std::string::npos) break;
    inputs.push_back(inp.substr(pos, next - pos));
    pos = next + delimiter.size();
  }
  EXPECT_EQ(pos, inp.size()) << "trailing data after the last delimiter";
  std::vector<std::string> lines = absl::StrSplit(out, '\n');
  ASSERT_FALSE(lines.empty());
  ASSERT_EQ(lines.back(), "");  // the file ends with a newline
  lines.pop_back();
  ASSERT_EQ(inputs.size(), 46u);
  ASSERT_EQ(lines.size(), inputs.size());

  const Tokenizer& tokenizer = NeoxTokenizer();
  for (size_t i = 0; i < inputs.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("case ", i, ": \"", Escaped(inputs[i]), "\""));
    std::vector<int32_t> expected;
    std::istringstream in(lines[i]);
    for (int32_t id; in >> id;) expected.push_back(id);
    const auto ids = tokenizer.Encode(inputs[i]);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_THAT(*ids, ElementsAreArray(expected));
  }
}

// The token_ids of the model reference files were produced by the same
// library from `text`; long_3x has no text, so it is checked by a
// decode/encode round trip (exact for these inputs, which are already NFC).
void CheckReference(const Tokenizer& tokenizer, const std::string& relative) {
  const auto json = nlohmann::json::parse(ReadFileOrDie(DataPath(relative)));
  int with_text = 0;
  int total = 0;
  for (const auto& seq : json.at("sequences")) {
    const std::string name = seq.at("name").get<std::string>();
    SCOPED_TRACE(absl::StrCat(relative, " ", name));
    const auto expected = seq.at("token_ids").get<std::vector<int32_t>>();
    ++total;
    if (!seq.at("text").is_null()) {
      ++with_text;
      const std::string text = seq.at("text").get<std::string>();
      const auto ids = tokenizer.Encode(text);
      ASSERT_TRUE(ids.ok()) << ids.status();
      EXPECT_THAT(*ids, ElementsAreArray(expected));
      EXPECT_EQ(tokenizer.Decode(expected, false), text);
    }
    const auto round_trip = tokenizer.Encode(tokenizer.Decode(expected, false));
    ASSERT_TRUE(round_trip.ok()) << round_trip.status();
    EXPECT_THAT(*round_trip, ElementsAreArray(expected));
  }
  EXPECT_EQ(with_text, 3);
  EXPECT_EQ(total, 4);
}

TEST(TokenizerVectorsTest, TinyBloomReferenceTokenIds) {
  CheckReference(BloomTokenizer(), "reference/tiny-bloom.json");
}

TEST(TokenizerVectorsTest, TinyMptReferenceTokenIds) {
  CheckReference(NeoxTokenizer(), "reference/tiny-mpt.json");
}

// tests/tokenizer/data/hf_differential.json: ids and decodes recorded from
// the Hugging Face library itself (its npm binding) for a few hundred
// adversarial texts: random mixes of whitespace kinds, punctuation, combining
// marks of every Unicode age (the library normalizes with Unicode 9.0
// tables), scripts, emoji, added-token look-alikes, random code points and
// corpus lines.
TEST(TokenizerVectorsTest, HuggingFaceDifferential) {
  const auto json = nlohmann::json::parse(
      ReadFileOrDie(std::string(ALIBI_SOURCE_DIR) + "/tests/tokenizer/data/"
                                                    "hf_differential.json"));
  const std::pair<const char*, const Tokenizer*> tokenizers[] = {
      {"bloom", &BloomTokenizer()},
      {"neox", &NeoxTokenizer()},
      {"replit", &ReplitTokenizer()}};
  int checked = 0;
  for (const auto& c : json.at("cases")) {
    const std::string text = c.at("text").get<std::string>();
    for (const auto& [name, tokenizer] : tokenizers) {
      SCOPED_TRACE(absl::StrCat(name, ": \"", Escaped(text), "\""));
      const auto expected = c.at("ids").at(name).get<std::vector<int32_t>>();
      const auto ids = tokenizer->Encode(text);
      ASSERT_TRUE(ids.ok()) << ids.status();
      EXPECT_THAT(*ids, ElementsAreArray(expected));
      EXPECT_EQ(tokenizer->Decode(expected, false),
                c.at("decoded").at(name).get<std::string>());
      ++checked;
    }
  }
  EXPECT_EQ(checked, 3 * 268);
}

}  // namespace
}  // namespace alibi::tokenizer
