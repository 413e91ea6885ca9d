// Public API behaviour of alibi::tokenizer: pipeline options on small
// hand-written tokenizer.json files, errors, decoding and streaming
// invariants, thread safety and speed.
#include "server/tokenizer/tokenizer.h"

#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/tokenizer/test_tokenizers.h"

namespace alibi::tokenizer {
namespace {

using ::alibi::tokenizer::testing::BloomTokenizer;
using ::alibi::tokenizer::testing::DataPath;
using ::alibi::tokenizer::testing::NeoxTokenizer;
using ::alibi::tokenizer::testing::ReadFileOrDie;
using ::alibi::tokenizer::testing::ReplitTokenizer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;

// Every test string of the three vector files.
const std::vector<std::string>& VectorTexts() {
  static const std::vector<std::string>* texts = [] {
    auto* out = new std::vector<std::string>;
    for (const char* file :
         {"bloom-style", "gpt-neox-20b", "replit-code-v1_5"}) {
      const Json json = Json::parse(ReadFileOrDie(
          DataPath(absl::StrCat("tokenizers/", file, ".vectors.json"))));
      for (const Json& c : json.at("cases")) {
        out->push_back(c.at("text").get<std::string>());
      }
    }
    return out;
  }();
  return *texts;
}

std::vector<const Tokenizer*> AllTokenizers() {
  return {&BloomTokenizer(), &NeoxTokenizer(), &ReplitTokenizer()};
}

// Independent strict UTF-8 check (shortest form, no surrogates, at most
// U+10FFFF), written without the library's helpers.
bool IsUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    int n;
    uint32_t cp;
    if (b < 0x80) {
      n = 0;
      cp = b;
    } else if ((b & 0xE0) == 0xC0) {
      n = 1;
      cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      n = 2;
      cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      n = 3;
      cp = b & 0x07;
    } else {
      return false;
    }
    for (int k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

// ------------------------------------------------- small tokenizer.json

// A tokenizer.json with the given model and pre-tokenizer (ByteLevel without
// regex by default), no normalizer and a ByteLevel decoder.
Json Config(Json model, Json pre_tokenizer = Json{{"type", "ByteLevel"},
                                                  {"add_prefix_space", false},
                                                  {"use_regex", false}}) {
  model["type"] = "BPE";
  return Json{{"version", "1.0"},
              {"added_tokens", Json::array()},
              {"normalizer", nullptr},
              {"pre_tokenizer", pre_tokenizer},
              {"post_processor", nullptr},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model", model}};
}

std::unique_ptr<Tokenizer> Load(const Json& config) {
  auto tokenizer = Tokenizer::FromJson(config.dump());
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

std::vector<int32_t> EncodeOrDie(const Tokenizer& t, const std::string& s) {
  auto ids = t.Encode(s);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

const Json kAbcVocab = {{"a", 0},  {"b", 1},  {"c", 2},
                        {"ab", 3}, {"bc", 4}, {"abc", 5}};

TEST(TokenizerTest, MergesAsStringsOrPairsInRankOrder) {
  auto strings =
      Load(Config({{"vocab", kAbcVocab}, {"merges", {"a b", "ab c"}}}));
  auto pairs =
      Load(Config({{"vocab", kAbcVocab},
                   {"merges", Json::array({Json::array({"a", "b"}),
                                           Json::array({"ab", "c"})})}}));
  ASSERT_TRUE(strings && pairs);
  EXPECT_THAT(EncodeOrDie(*strings, "abcab"), ElementsAre(5, 3));
  EXPECT_THAT(EncodeOrDie(*pairs, "abcab"), ElementsAre(5, 3));
  // "b c" ranks first: a|bc, and no merge joins a+bc.
  auto bc_first =
      Load(Config({{"vocab", kAbcVocab}, {"merges", {"b c", "a b", "ab c"}}}));
  ASSERT_TRUE(bc_first);
  EXPECT_THAT(EncodeOrDie(*bc_first, "abc"), ElementsAre(0, 4));
  // A repeated pair takes its later rank (the library collects a HashMap).
  auto repeated =
      Load(Config({{"vocab", kAbcVocab}, {"merges", {"b c", "a b", "b c"}}}));
  ASSERT_TRUE(repeated);
  EXPECT_THAT(EncodeOrDie(*repeated, "abc"), ElementsAre(3, 2));
  // "#version" lines of the legacy format are skipped.
  auto versioned = Load(
      Config({{"vocab", kAbcVocab}, {"merges", {"#version: 0.2", "a b"}}}));
  ASSERT_TRUE(versioned);
  EXPECT_THAT(EncodeOrDie(*versioned, "abc"), ElementsAre(3, 2));
}

TEST(TokenizerTest, IgnoreMerges) {
  Json model = {{"vocab", kAbcVocab}, {"merges", {"a b"}}};
  auto merging = Load(Config(model));
  model["ignore_merges"] = true;
  auto ignoring = Load(Config(model));
  ASSERT_TRUE(merging && ignoring);
  EXPECT_THAT(EncodeOrDie(*merging, "abc"), ElementsAre(3, 2));
  EXPECT_THAT(EncodeOrDie(*ignoring, "abc"), ElementsAre(5));
  EXPECT_THAT(EncodeOrDie(*ignoring, "abca"), ElementsAre(3, 2, 0));
}

TEST(TokenizerTest, UnknownCharacters) {
  const Json vocab = {{"<unk>", 0}, {"a", 1}, {"b", 2}};
  // No pre-tokenizer: the model sees raw characters ('é' is not in vocab).
  auto dropping =
      Load(Config({{"vocab", vocab}, {"merges", Json::array()}}, nullptr));
  auto unk = Load(Config(
      {{"vocab", vocab}, {"merges", Json::array()}, {"unk_token", "<unk>"}},
      nullptr));
  auto fused = Load(Config({{"vocab", vocab},
                            {"merges", Json::array()},
                            {"unk_token", "<unk>"},
                            {"fuse_unk", true}},
                           nullptr));
  auto missing = Load(Config(
      {{"vocab", vocab}, {"merges", Json::array()}, {"unk_token", "<oov>"}},
      nullptr));
  ASSERT_TRUE(dropping && unk && fused && missing);
  EXPECT_THAT(EncodeOrDie(*dropping, "a\u00e9\u00e9b"), ElementsAre(1, 2));
  EXPECT_THAT(EncodeOrDie(*unk, "a\u00e9\u00e9b"), ElementsAre(1, 0, 0, 2));
  EXPECT_THAT(EncodeOrDie(*fused, "a\u00e9\u00e9b\u00e9"),
              ElementsAre(1, 0, 2, 0));
  EXPECT_THAT(EncodeOrDie(*missing, "ab"), ElementsAre(1, 2));
  EXPECT_EQ(missing->Encode("a\u00e9").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TokenizerTest, AddedTokensThroughThePipeline) {
  Json config = Config({{"vocab", kAbcVocab}, {"merges", {"a b", "ab c"}}});
  config["added_tokens"] = {
      {{"id", 6},
       {"content", "<s>"},
       {"special", true},
       {"normalized", false},
       {"lstrip", false},
       {"rstrip", false},
       {"single_word", false}},
      {{"id", 7},
       {"content", "[X]"},
       {"special", false},
       {"normalized", true},
       {"lstrip", true},
       {"rstrip", true},
       {"single_word", false}},
      // Already in the vocabulary: keeps the vocabulary's id.
      {{"id", 99},
       {"content", "abc"},
       {"special", true},
       {"normalized", false}}};
  auto t = Load(config);
  ASSERT_TRUE(t);
  EXPECT_THAT(EncodeOrDie(*t, "ab<s>c"), ElementsAre(3, 6, 2));
  // lstrip/rstrip swallow the spaces: no byte-level 'Ġ' left to encode
  // (which this vocabulary lacks and would silently drop anyway).
  EXPECT_THAT(EncodeOrDie(*t, "a  [X]  b"), ElementsAre(0, 7, 1));
  EXPECT_THAT(EncodeOrDie(*t, "ababc"), ElementsAre(3, 5));
  EXPECT_EQ(t->vocab_size(), 8);
  EXPECT_EQ(t->TokenToId("<s>"), 6);
  EXPECT_EQ(t->TokenToId("abc"), 5);
  EXPECT_EQ(t->IdToToken(7), "[X]");
  EXPECT_FALSE(t->IdToToken(99).has_value());
  EXPECT_TRUE(t->IsSpecial(6));
  EXPECT_TRUE(t->IsSpecial(5));  // "abc" is special by content
  EXPECT_FALSE(t->IsSpecial(7));
  EXPECT_EQ(t->Decode({3, 6, 5, 7}, /*skip_special_tokens=*/true), "ab[X]");
  EXPECT_EQ(t->Decode({3, 6, 5, 7}, /*skip_special_tokens=*/false),
            "ab<s>abc[X]");
}

TEST(TokenizerTest, SplitStringPatternAndNfc) {
  Json config = Config({{"vocab", kAbcVocab}, {"merges", {"a b", "ab c"}}},
                       {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"},
                           {"pattern", {{"String", "c"}}},
                           {"behavior", "Removed"},
                           {"invert", false}},
                          {{"type", "ByteLevel"},
                           {"add_prefix_space", false},
                           {"use_regex", false}}}}});
  config["normalizer"] = {{"type", "Sequence"},
                          {"normalizers", {{{"type", "NFC"}}}}};
  auto t = Load(config);
  ASSERT_TRUE(t);
  EXPECT_THAT(EncodeOrDie(*t, "abcabc"), ElementsAre(3, 3));
}

// --------------------------------------------------------------- errors

void ExpectRejected(const Json& config, const std::string& message) {
  auto t = Tokenizer::FromJson(config.dump());
  ASSERT_FALSE(t.ok()) << message;
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr(message));
}

TEST(TokenizerTest, RejectsUnsupportedComponents) {
  const Json model = {{"vocab", kAbcVocab}, {"merges", {"a b"}}};
  ExpectRejected(Config(model, {{"type", "Metaspace"}}),
                 "pre_tokenizer.type \"Metaspace\" is not supported");
  ExpectRejected(
      Config(model, {{"type", "Sequence"},
                     {"pretokenizers",
                      {{{"type", "ByteLevel"}}, {{"type", "Digits"}}}}}),
      "pre_tokenizer.pretokenizers[1].type \"Digits\" is not supported");
  Json lowercase = Config(model);
  lowercase["normalizer"] = {{"type", "Lowercase"}};
  ExpectRejected(lowercase, "normalizer.type \"Lowercase\" is not supported");
  Json wordpiece = Config(model);
  wordpiece["model"]["type"] = "WordPiece";
  ExpectRejected(wordpiece, "model.type \"WordPiece\" is not supported");
  Json fallback = Config(model);
  fallback["model"]["byte_fallback"] = true;
  ExpectRejected(fallback, "byte_fallback");
  Json prefix = Config(model);
  prefix["model"]["continuing_subword_prefix"] = "##";
  ExpectRejected(prefix, "continuing_subword_prefix");
  Json suffix = Config(model);
  suffix["model"]["end_of_word_suffix"] = "</w>";
  ExpectRejected(suffix, "end_of_word_suffix");
  Json dropout = Config(model);
  dropout["model"]["dropout"] = 0.1;
  ExpectRejected(dropout, "dropout");
  Json decoder = Config(model);
  decoder["decoder"] = {{"type", "Metaspace"}};
  ExpectRejected(decoder, "decoder.type \"Metaspace\" is not supported");
  decoder["decoder"] = nullptr;
  ExpectRejected(decoder, "decoder");
  ExpectRejected(Config(model, {{"type", "Split"},
                                {"pattern", {{"Regex", "[a[^b]]"}}},
                                {"behavior", "Isolated"},
                                {"invert", false}}),
                 "negated nested character class");
  ExpectRejected(Config(model, {{"type", "Split"},
                                {"pattern", {{"Regex", "a"}}},
                                {"behavior", "Sideways"},
                                {"invert", false}}),
                 "behavior");
  ExpectRejected(Config({{"vocab", kAbcVocab}, {"merges", {"a x"}}}),
                 "model.merges[0]: token \"x\" is not in the vocabulary");
  ExpectRejected(Config({{"vocab", kAbcVocab}, {"merges", {"a b c"}}}),
                 "model.merges[0]");
  ExpectRejected(Config({{"vocab", {{"a", -1}}}, {"merges", Json::array()}}),
                 "outside");
  Json bad_added = Config(model);
  bad_added["added_tokens"] = {{{"id", "seven"}, {"content", "x"}}};
  ExpectRejected(bad_added, "added_tokens[0].id");
}

TEST(TokenizerTest, RejectsMalformedInput) {
  for (const char* text : {"", "{", "[1, 2]", "{\"model\": 3}", "null"}) {
    auto t = Tokenizer::FromJson(text);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
  const auto missing = Tokenizer::FromFile("/nonexistent/tokenizer.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(TokenizerTest, InvalidUtf8IsInvalidArgument) {
  for (const Tokenizer* t : AllTokenizers()) {
    for (const std::string& text :
         {std::string("abc\x80"), std::string("\xC0\x80"),
          std::string("ok \xED\xA0\x80 surrogate"), std::string("\xF5"),
          std::string("truncated \xE2\x82"), std::string("\xFF\xFE")}) {
      const auto ids = t->Encode(text);
      EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    }
    EXPECT_TRUE(t->Encode(std::string("nul\0inside", 10)).ok());
  }
}

// ------------------------------------------------------------- decoding

TEST(TokenizerTest, AccessorsOnFixtures) {
  const Tokenizer& neox = NeoxTokenizer();
  EXPECT_EQ(neox.vocab_size(), 50277);
  EXPECT_EQ(neox.IdToToken(0), "<|endoftext|>");
  EXPECT_TRUE(neox.IsSpecial(0));
  EXPECT_FALSE(neox.IsSpecial(50276));  // "  ", added but not special
  EXPECT_EQ(neox.TokenBytes(50276), "  ");
  const std::optional<int32_t> world = neox.TokenToId("\u0120world");
  ASSERT_TRUE(world.has_value());
  EXPECT_EQ(*world, 1533);
  EXPECT_EQ(neox.TokenBytes(*world), " world");
  EXPECT_EQ(neox.TokenBytes(-1), "");
  EXPECT_EQ(neox.TokenBytes(50277), "");
  EXPECT_FALSE(neox.IdToToken(123456).has_value());
  EXPECT_FALSE(neox.TokenToId("no such token").has_value());

  const Tokenizer& bloom = BloomTokenizer();
  EXPECT_EQ(bloom.IdToToken(2), "</s>");
  EXPECT_TRUE(bloom.IsSpecial(2));
  EXPECT_EQ(bloom.Decode({39, 9439, 2, 76, 600}, true), "Hello world");
  EXPECT_EQ(bloom.Decode({39, 9439, 2, 76, 600}, false), "Hell</s>o world");
  // Unknown ids contribute nothing.
  EXPECT_EQ(bloom.Decode({-7, 39, 9439, 1 << 30, 76, 600}, false),
            "Hello world");
}

TEST(TokenizerTest, DecodeIsLossyOnSplitCharacters) {
  const Tokenizer& neox = NeoxTokenizer();
  const std::vector<int32_t> ids = EncodeOrDie(neox, "\U0001F999");  // 🦙
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(neox.Decode(ids, false), "\U0001F999");
  EXPECT_EQ(neox.Decode({ids[0]}, false), "\uFFFD");
  std::vector<int32_t> swapped = ids;
  std::swap(swapped.front(), swapped.back());
  EXPECT_TRUE(IsUtf8(neox.Decode(swapped, false)));
}

// Streams `ids` through an IncrementalDecoder and checks the contract
// against Decode of every prefix.
void CheckIncremental(const Tokenizer& t, const std::vector<int32_t>& ids,
                      bool skip_special) {
  IncrementalDecoder decoder(t, skip_special);
  std::string streamed;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string delta = decoder.Add(ids[i]);
    ASSERT_TRUE(IsUtf8(delta)) << "token " << i;
    streamed += delta;
    // Only an incomplete trailing character (one U+FFFD in Decode) may be
    // held back.
    const std::string prefix =
        t.Decode(absl::MakeConstSpan(ids).subspan(0, i + 1), skip_special);
    ASSERT_TRUE(absl::StartsWith(prefix, streamed)) << "token " << i;
    const std::string held = prefix.substr(streamed.size());
    ASSERT_TRUE(held.empty() || held == "\uFFFD") << "token " << i;
  }
  const std::string tail = decoder.Finish();
  ASSERT_TRUE(IsUtf8(tail));
  streamed += tail;
  EXPECT_EQ(streamed, t.Decode(ids, skip_special));
  EXPECT_EQ(decoder.Finish(), "");
}

TEST(IncrementalDecoderTest, MatchesDecodeOnAllVectorStrings) {
  int checked = 0;
  for (const Tokenizer* t : AllTokenizers()) {
    for (const std::string& text : VectorTexts()) {
      SCOPED_TRACE(text);
      const std::vector<int32_t> ids = EncodeOrDie(*t, text);
      CheckIncremental(*t, ids, /*skip_special=*/false);
      CheckIncremental(*t, ids, /*skip_special=*/true);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 3 * 105);
}

TEST(IncrementalDecoderTest, HoldsBackSplitCharacter) {
  const Tokenizer& neox = NeoxTokenizer();
  const std::vector<int32_t> ids = EncodeOrDie(neox, "\U0001F999!");
  ASSERT_GE(ids.size(), 3u);
  IncrementalDecoder decoder(neox, false);
  std::vector<std::string> deltas;
  for (const int32_t id : ids) deltas.push_back(decoder.Add(id));
  EXPECT_EQ(deltas.front(), "");
  std::string all;
  for (const std::string& d : deltas) all += d;
  EXPECT_EQ(all, "\U0001F999!");
  EXPECT_EQ(decoder.Finish(), "");
}

TEST(IncrementalDecoderTest, RandomIdSequences) {
  std::mt19937 rng(1234);
  for (const Tokenizer* t : AllTokenizers()) {
    std::uniform_int_distribution<int32_t> id(-3, t->vocab_size() + 3);
    for (int round = 0; round < 20; ++round) {
      std::vector<int32_t> ids(60);
      for (int32_t& x : ids) x = id(rng);
      CheckIncremental(*t, ids, round % 2 == 0);
    }
  }
}

// ------------------------------------------------ threads and throughput

TEST(TokenizerTest, ConcurrentEncodeMatchesSerial) {
  // Fresh instances, so that the threads fill their (cold) word caches
  // concurrently; the expected ids come from the shared fixtures.
  std::vector<std::unique_ptr<Tokenizer>> fresh;
  std::vector<const Tokenizer*> reference;
  for (const auto& [path, shared] :
       {std::pair{"models/tiny-bloom/tokenizer.json", &BloomTokenizer()},
        std::pair{"models/tiny-mpt/tokenizer.json", &NeoxTokenizer()}}) {
    auto loaded = Tokenizer::FromFile(DataPath(path));
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    fresh.push_back(*std::move(loaded));
    reference.push_back(shared);
  }
  std::vector<std::vector<std::vector<int32_t>>> expected;
  for (const Tokenizer* t : reference) {
    expected.emplace_back();
    for (const std::string& text : VectorTexts()) {
      expected.back().push_back(EncodeOrDie(*t, text));
    }
  }
  constexpr int kThreads = 8;
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int w = 0; w < kThreads; ++w) {
    threads.emplace_back([&, w] {
      for (int round = 0; round < 3; ++round) {
        for (size_t k = 0; k < fresh.size(); ++k) {
          const size_t ti = (k + w) % fresh.size();
          for (size_t n = 0; n < VectorTexts().size(); ++n) {
            // Threads walk the texts from different starting points.
            const size_t i = (n + 13 * w) % VectorTexts().size();
            const auto ids = fresh[ti]->Encode(VectorTexts()[i]);
            if (!ids.ok() || *ids != expected[ti][i]) {
              ++mismatches[w];
              continue;
            }
            if (!IsUtf8(fresh[ti]->Decode(*ids, w % 2))) ++mismatches[w];
          }
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int w = 0; w < kThreads; ++w) {
    EXPECT_EQ(mismatches[w], 0) << "thread " << w;
  }
}

TEST(TokenizerTest, EncodesHundredKilobytesQuickly) {
  // Varied text: every vector string and reference paragraph, repeated.
  std::string unit;
  for (const std::string& text : VectorTexts())
    absl::StrAppend(&unit, text, "\n");
  for (const char* model : {"tiny-bloom", "tiny-mpt"}) {
    const Json json = Json::parse(
        ReadFileOrDie(DataPath(absl::StrCat("reference/", model, ".json"))));
    for (const Json& seq : json.at("sequences")) {
      if (!seq.at("text").is_null()) {
        absl::StrAppend(&unit, seq.at("text").get<std::string>(), "\n");
      }
    }
  }
  std::string text;
  while (text.size() < 100 * 1024) text += unit;
  for (const Tokenizer* t : AllTokenizers()) {
    const auto start = std::chrono::steady_clock::now();
    const auto ids = t->Encode(text);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_LT(seconds, 1.0);
    EXPECT_EQ(t->Decode(*ids, false).size() > 0, true);
    std::cout << "encoded " << text.size() << " bytes into " << ids->size()
              << " tokens in " << seconds * 1e3 << " ms ("
              << text.size() / seconds / 1e6 << " MB/s)\n";
  }
}

}  // namespace
}  // namespace alibi::tokenizer
