// Unit tests of the tokenizer's building blocks, with expectations taken
// from the specifications they follow (Unicode's U+FFFD substitution
// example, the `onig` crate's and the `tokenizers` library's own tests).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/utf8.h"
#include "server/tokenizer/added_vocabulary.h"
#include "server/tokenizer/byte_level.h"
#include "server/tokenizer/pre_tokenizer.h"
#include "server/tokenizer/regex.h"
#include "server/tokenizer/unicode.h"

namespace alibi::tokenizer::internal {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using Ranges = std::vector<std::pair<size_t, size_t>>;

// ---------------------------------------------------------------- UTF-8

TEST(Utf8Test, ValidatesStrictly) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ASCII text, long enough for the fast path"));
  EXPECT_TRUE(
      IsValidUtf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\xA6\x99"));  // é € 🦙
  EXPECT_TRUE(IsValidUtf8(std::string("a\0b", 3)));
  EXPECT_EQ(FirstInvalidUtf8("ab\x80"), 2u);               // lone continuation
  EXPECT_EQ(FirstInvalidUtf8("\xC0\x80"), 0u);             // overlong NUL
  EXPECT_EQ(FirstInvalidUtf8("\xE0\x80\xAF"), 0u);         // overlong '/'
  EXPECT_EQ(FirstInvalidUtf8("x\xED\xA0\x80"), 1u);        // surrogate D800
  EXPECT_EQ(FirstInvalidUtf8("\xF4\x90\x80\x80"), 0u);     // above U+10FFFF
  EXPECT_EQ(FirstInvalidUtf8("\xF5\x80\x80\x80"), 0u);     // invalid lead
  EXPECT_EQ(FirstInvalidUtf8("0123456789\xE2\x82"), 10u);  // truncated
}

TEST(Utf8Test, LossyFollowsMaximalSubpartRule) {
  // Unicode 15, section 3.9, table 3-8: U+FFFD for maximal subparts.
  EXPECT_EQ(LossyUtf8("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
            "a\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd");
  EXPECT_EQ(LossyUtf8("\xC0\xAF"), "\uFFFD\uFFFD");
  EXPECT_EQ(LossyUtf8("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(LossyUtf8("\xF0\x9F\xA6"), "\uFFFD");  // truncated at the end
  EXPECT_EQ(LossyUtf8("ok \xE2\x82\xAC"), "ok \u20AC");
}

TEST(Utf8Test, IncompleteTail) {
  EXPECT_EQ(IncompleteUtf8TailStart(""), 0u);
  EXPECT_EQ(IncompleteUtf8TailStart("abc"), 3u);
  EXPECT_EQ(IncompleteUtf8TailStart("ab\xF0\x9F"), 2u);
  EXPECT_EQ(IncompleteUtf8TailStart("ab\xF0\x9F\xA6\x99"), 6u);
  EXPECT_EQ(IncompleteUtf8TailStart("\xE2"), 0u);
  // Could never complete: emitted (as U+FFFD) rather than held back.
  EXPECT_EQ(IncompleteUtf8TailStart("a\xE0\x80"), 3u);
  EXPECT_EQ(IncompleteUtf8TailStart("a\x80"), 2u);
  EXPECT_EQ(IncompleteUtf8TailStart("a\xFF"), 2u);
}

TEST(Utf8Test, EncodeDecodeRoundTrip) {
  for (const char32_t cp :
       {0x0u, 0x7Fu, 0x80u, 0x7FFu, 0x800u, 0xFFFDu, 0x10000u, 0x10FFFFu}) {
    std::string s;
    AppendUtf8(cp, &s);
    EXPECT_TRUE(IsValidUtf8(s));
    size_t pos = 0;
    EXPECT_EQ(DecodeUtf8(s, &pos), cp);
    EXPECT_EQ(pos, s.size());
  }
}

// ------------------------------------------------------------ byte level

TEST(ByteLevelTest, Gpt2Alphabet) {
  EXPECT_EQ(ByteToCodepoint(' '), 0x120u);   // 'Ġ'
  EXPECT_EQ(ByteToCodepoint('\n'), 0x10Au);  // 'Ċ'
  EXPECT_EQ(ByteToCodepoint('A'), static_cast<char32_t>('A'));
  EXPECT_EQ(ByteToCodepoint(0xAD), 0x143u);  // soft hyphen: the last one
  EXPECT_EQ(ByteToCodepoint(0xFF), 0xFFu);
  std::vector<bool> seen(0x144, false);
  for (int b = 0; b < 256; ++b) {
    const char32_t cp = ByteToCodepoint(static_cast<unsigned char>(b));
    ASSERT_LT(cp, 0x144u);
    EXPECT_FALSE(seen[cp]) << b;
    seen[cp] = true;
    EXPECT_EQ(CodepointToByte(cp), b);
  }
  EXPECT_EQ(CodepointToByte(' '), -1);
  EXPECT_EQ(CodepointToByte(0x4E16), -1);
}

TEST(ByteLevelTest, DecodeTokenLikeTheLibrary) {
  std::string mapped;
  AppendByteLevel("h\xC3\xA9 \n", &mapped);
  EXPECT_EQ(mapped, "h\xC3\x83\xC2\xA9\xC4\xA0\xC4\x8A");  // hÃ©ĠĊ
  EXPECT_EQ(ByteLevelDecodeToken(mapped), "h\xC3\xA9 \n");
  // A character outside the alphabet: the token's own UTF-8 is used.
  EXPECT_EQ(ByteLevelDecodeToken("  "), "  ");
  EXPECT_EQ(ByteLevelDecodeToken("\xC4\xA0\xE4\xB8\x96"),
            "\xC4\xA0\xE4\xB8\x96");
  EXPECT_EQ(ByteLevelDecodeToken("<|endoftext|>"), "<|endoftext|>");
}

// ------------------------------------------------------------------ regex

Ranges FindAll(const std::string& onig, const std::string& text) {
  auto regex = Regex::CompileOniguruma(onig);
  EXPECT_TRUE(regex.ok()) << regex.status();
  Ranges out;
  if (regex.ok()) {
    EXPECT_TRUE((*regex)->FindAll(text, &out).ok());
  }
  return out;
}

std::vector<std::string> Pieces(const std::string& text, const Ranges& r) {
  std::vector<std::string> out;
  for (const auto& [s, e] : r) out.push_back(text.substr(s, e - s));
  return out;
}

TEST(RegexTest, FlattensBloomNestedClass) {
  const std::string bloom =
      " ?[^(\\s|[.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c])]+";
  const auto translated = TranslateOnigurumaPattern(bloom);
  ASSERT_TRUE(translated.ok()) << translated.status();
  EXPECT_EQ(*translated,
            " ?[^(\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-"
            "\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}|.,!?"
            "\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+");
  // The class excludes '(', whitespace, '|', the punctuation and ')'.
  const std::string text = "Hello (world)|x, y\u3002z\u00A0w";
  EXPECT_THAT(Pieces(text, FindAll(bloom, text)),
              ElementsAre("Hello", "world", "x", " y", "z", "w"));
}

TEST(RegexTest, TranslatesOnigurumaEscapes) {
  EXPECT_EQ(*TranslateOnigurumaPattern("\\h+\\u00e9"), "[0-9a-fA-F]+\\x{00e9}");
  EXPECT_EQ(*TranslateOnigurumaPattern("(?m:.)"), "(?s:.)");
  EXPECT_EQ(*TranslateOnigurumaPattern("[]a]"), "[\\]a]");
  EXPECT_EQ(*TranslateOnigurumaPattern("[a-[bc]]"), "[a\\-bc]");
  EXPECT_EQ(*TranslateOnigurumaPattern("[[:alpha:]x]"), "[[:alpha:]x]");
  EXPECT_EQ(*TranslateOnigurumaPattern("\\w"), "[\\p{L}\\p{M}\\p{N}\\p{Pc}]");
  EXPECT_THAT(TranslateOnigurumaPattern("[a[^b]]").status().message(),
              HasSubstr("negated nested character class"));
  EXPECT_THAT(TranslateOnigurumaPattern("[a-z&&[^aeiou]]").status().message(),
              HasSubstr("&&"));
  EXPECT_FALSE(TranslateOnigurumaPattern("[abc").ok());
  EXPECT_FALSE(Regex::CompileOniguruma("(unclosed").ok());
}

TEST(RegexTest, WhitespaceIsOnigurumasSet) {
  // U+0085 (NEL) and U+3000 are \s in Oniguruma; U+180E and U+200B are not.
  EXPECT_THAT(FindAll("\\s", "a\u0085b\u3000c\u180Ed\u200Be"),
              ElementsAre(Pair(1, 3), Pair(4, 7)));
}

TEST(RegexTest, IteratesLikeOnigCrate) {
  // From the `onig` crate's find.rs tests.
  EXPECT_THAT(FindAll("\\d+", "a12b2"), ElementsAre(Pair(1, 3), Pair(4, 5)));
  EXPECT_THAT(FindAll("\\d*", "a1b2"),
              ElementsAre(Pair(0, 0), Pair(1, 2), Pair(3, 4)));
  EXPECT_THAT(
      FindAll("\\d*", "a1bbb2"),
      ElementsAre(Pair(0, 0), Pair(1, 2), Pair(3, 3), Pair(4, 4), Pair(5, 6)));
  EXPECT_THAT(FindAll("\\b", "test string"),
              ElementsAre(Pair(0, 0), Pair(4, 4), Pair(5, 5), Pair(11, 11)));
  // Empty matches advance by a whole character.
  EXPECT_THAT(FindAll("x*", "\u00e9"), ElementsAre(Pair(0, 0), Pair(2, 2)));
}

TEST(RegexTest, Gpt2Pattern) {
  const std::string text = "Hello world's  \n\n x1.5!! \u00e9t\u00e9  ";
  EXPECT_THAT(Pieces(text, FindAll(std::string(kGpt2Pattern), text)),
              ElementsAre("Hello", " world", "'s", "  \n\n", " x", "1", ".",
                          "5", "!!", " \u00e9t\u00e9", "  "));
}

TEST(RegexTest, EscapeLiteral) {
  const std::string literal = "a.b*(c)[d]|\\e\n";
  auto regex = Regex::Compile(EscapeLiteral(literal));
  ASSERT_TRUE(regex.ok()) << regex.status();
  Ranges out;
  ASSERT_TRUE((*regex)->FindAll("xx" + literal + "a.b", &out).ok());
  EXPECT_THAT(out, ElementsAre(Pair(2, 2 + literal.size())));
}

// ---------------------------------------------------------------- Split

// The `tokenizers` library's split.rs `basic` test: pattern \w+|[^\w\s]+,
// inverted, on "How are you doing?".
TEST(SplitTest, BehavioursMatchTheLibrary) {
  auto regex = Regex::CompileOniguruma("\\w+|[^\\w\\s]+");
  ASSERT_TRUE(regex.ok());
  const std::string text = "How are you doing?";
  auto split = [&](SplitBehavior behavior) {
    auto ranges = SplitRanges(text, **regex, behavior, /*invert=*/true);
    EXPECT_TRUE(ranges.ok());
    return Pieces(text, *ranges);
  };
  EXPECT_THAT(split(SplitBehavior::kRemoved),
              ElementsAre("How", "are", "you", "doing", "?"));
  EXPECT_THAT(split(SplitBehavior::kIsolated),
              ElementsAre("How", " ", "are", " ", "you", " ", "doing", "?"));
  EXPECT_THAT(split(SplitBehavior::kMergedWithPrevious),
              ElementsAre("How ", "are ", "you ", "doing", "?"));
  EXPECT_THAT(split(SplitBehavior::kMergedWithNext),
              ElementsAre("How", " are", " you", " doing", "?"));
  EXPECT_THAT(split(SplitBehavior::kContiguous),
              ElementsAre("How", " ", "are", " ", "you", " ", "doing?"));
}

TEST(SplitTest, StringPatternAndInvert) {
  // split.rs `invert`: Removed on " " == Removed+invert on "Hello".
  auto space = Regex::Compile(EscapeLiteral(" "));
  auto hello = Regex::Compile(EscapeLiteral("Hello"));
  ASSERT_TRUE(space.ok() && hello.ok());
  const std::string text = "Hello Hello Hello";
  SplitStep by_space(*std::move(space), SplitBehavior::kRemoved, false);
  SplitStep by_hello(*std::move(hello), SplitBehavior::kRemoved, true);
  std::vector<std::string> a, b;
  ASSERT_TRUE(by_space.Apply(text, &a).ok());
  ASSERT_TRUE(by_hello.Apply(text, &b).ok());
  EXPECT_THAT(a, ElementsAre("Hello", "Hello", "Hello"));
  EXPECT_EQ(a, b);
}

TEST(ByteLevelStepTest, PrefixSpaceAndRegex) {
  auto regex = Regex::CompileOniguruma(kGpt2Pattern);
  ASSERT_TRUE(regex.ok());
  ByteLevelStep step(/*add_prefix_space=*/true, *std::move(regex));
  std::vector<std::string> out;
  ASSERT_TRUE(step.Apply("hi there", &out).ok());
  EXPECT_THAT(out, ElementsAre("\u0120hi", "\u0120there"));
  out.clear();
  ASSERT_TRUE(step.Apply(" x", &out).ok());  // already starts with ' '
  EXPECT_THAT(out, ElementsAre("\u0120x"));
  out.clear();
  ByteLevelStep plain(/*add_prefix_space=*/false, nullptr);
  ASSERT_TRUE(plain.Apply("a b\n", &out).ok());
  EXPECT_THAT(out, ElementsAre("a\u0120b\u010A"));
}

TEST(NormalizerTest, Nfc) {
  Normalizer nfc({Normalizer::Kind::kNfc});
  std::string s = "e\u0301 \u212B \uAC00 plain";  // é, Angstrom sign, 가
  ASSERT_TRUE(nfc.Apply(&s).ok());
  EXPECT_EQ(s, "\u00e9 \u00c5 \uAC00 plain");
  std::string hangul = "\u1100\u1161";  // conjoining jamo -> 가
  ASSERT_TRUE(nfc.Apply(&hangul).ok());
  EXPECT_EQ(hangul, "\uAC00");
}

// The `tokenizers` library's NFC uses Unicode 9.0 tables: later characters
// are starters that neither move, decompose nor compose.
TEST(NormalizerTest, NfcWithUnicode9Repertoire) {
  EXPECT_TRUE(AssignedAfterUnicode9(0x1DF9));   // Unicode 10
  EXPECT_TRUE(AssignedAfterUnicode9(0x11935));  // Unicode 13
  EXPECT_FALSE(AssignedAfterUnicode9(0x08D4));  // Unicode 9
  EXPECT_FALSE(AssignedAfterUnicode9(0x0301));
  EXPECT_FALSE(AssignedAfterUnicode9(0x10FFFD));  // private use: old
  Normalizer nfc({Normalizer::Kind::kNfc});
  auto normalized = [&](std::string s) {
    EXPECT_TRUE(nfc.Apply(&s).ok());
    return s;
  };
  EXPECT_EQ(normalized("x\u0301\u0316"), "x\u0316\u0301");  // reordered
  EXPECT_EQ(normalized("x\u08d4\u0316"), "x\u0316\u08d4");  // 9.0: known
  EXPECT_EQ(normalized("x\u0301\u1df9"), "x\u0301\u1df9");  // 10.0: kept
  EXPECT_EQ(normalized("a\u1df8\u0301"), "a\u1df8\u0301");  // blocks
  EXPECT_EQ(normalized("a\u0301\u1df8e\u0301"), "\u00e1\u1df8\u00e9");
  EXPECT_EQ(normalized("\U00011935\U00011930"), "\U00011935\U00011930");
}

TEST(UnicodeTest, Properties) {
  for (const char32_t cp : {0x09u, 0x20u, 0x85u, 0xA0u, 0x2000u, 0x3000u}) {
    EXPECT_TRUE(IsWhiteSpace(cp)) << static_cast<uint32_t>(cp);
  }
  for (const char32_t cp : {0x1Cu, 0x180Eu, 0x200Bu, 0x41u}) {
    EXPECT_FALSE(IsWhiteSpace(cp)) << static_cast<uint32_t>(cp);
  }
  for (const char32_t cp : {0x41u, 0x5Fu, 0x39u, 0x0330u, 0x4E16u, 0x24B6u}) {
    EXPECT_TRUE(IsWordChar(cp)) << static_cast<uint32_t>(cp);
  }
  for (const char32_t cp : {0x2Du, 0x20u, 0x25CCu, 0x3002u}) {
    EXPECT_FALSE(IsWordChar(cp)) << static_cast<uint32_t>(cp);
  }
}

// ------------------------------------------------------- added vocabulary

std::vector<std::pair<std::string, int>> Split(const AddedVocabulary& vocab,
                                               const std::string& text) {
  // The two stages, with an identity normalizer.
  std::vector<Piece> raw, all;
  vocab.SplitRaw(text, &raw);
  for (Piece& p : raw) {
    if (p.id >= 0) {
      all.push_back(p);
    } else {
      vocab.SplitNormalized(p.text, &all);
    }
  }
  std::vector<std::pair<std::string, int>> out;
  for (const Piece& p : all) out.emplace_back(p.text, p.id);
  return out;
}

AddedVocabulary MakeVocab(std::vector<AddedToken> tokens) {
  auto vocab = AddedVocabulary::Create(
      std::move(tokens),
      [](absl::string_view s) -> absl::StatusOr<std::string> {
        return std::string(s);
      });
  EXPECT_TRUE(vocab.ok());
  return *std::move(vocab);
}

AddedToken Token(std::string content, int id, bool normalized,
                 bool special = false) {
  AddedToken t;
  t.content = std::move(content);
  t.id = id;
  t.normalized = normalized;
  t.special = special;
  return t;
}

// added_vocabulary.rs `options_use_cases` (input already lowercase, since
// the library's test uses a Lowercase normalizer).
TEST(AddedVocabularyTest, OptionsUseCases) {
  AddedToken my = Token("my", 0, true);
  my.lstrip = my.rstrip = true;
  AddedToken ony = Token("ony", 2, true);
  ony.single_word = true;
  const AddedVocabulary vocab = MakeVocab({my, Token("name", 1, true), ony,
                                           Token("[CLS]", 3, false, true),
                                           Token("[SEP]", 4, false, true)});
  EXPECT_THAT(Split(vocab, "[CLS] my name is anthony [SEP]"),
              ElementsAre(Pair("[CLS]", 3), Pair(" my ", 0), Pair("name", 1),
                          Pair(" is anthony ", -1), Pair("[SEP]", 4)));
}

// `test_single_word_is_correct` and `test_single_word_is_unicode_correct`.
TEST(AddedVocabularyTest, SingleWord) {
  AddedToken mask = Token("<mask>", 0, true);
  mask.single_word = true;
  const AddedVocabulary vocab = MakeVocab({mask});
  EXPECT_THAT(
      Split(vocab, "<mask> my name <mask> a<mask> <mask>ony <mask>"),
      ElementsAre(Pair("<mask>", 0), Pair(" my name ", -1), Pair("<mask>", 0),
                  Pair(" a<mask> <mask>ony ", -1), Pair("<mask>", 0)));
  EXPECT_THAT(Split(vocab, "<mask>, <mask>- \u25CC\u0330<mask>"),
              ElementsAre(Pair("<mask>", 0), Pair(", ", -1), Pair("<mask>", 0),
                          Pair("- \u25CC\u0330<mask>", -1)));
}

// `test_lstrip_unicode_space`.
TEST(AddedVocabularyTest, StripUnicodeSpace) {
  AddedToken mask = Token("<mask>", 0, true);
  mask.single_word = mask.lstrip = mask.rstrip = true;
  const AddedVocabulary vocab = MakeVocab({mask});
  EXPECT_THAT(
      Split(vocab, "hi <mask> there\t<mask>\t<mask>\u2000"),
      ElementsAre(Pair("hi", -1), Pair(" <mask> ", 0), Pair("there", -1),
                  Pair("\t<mask>\t", 0), Pair("<mask>\u2000", 0)));
}

TEST(AddedVocabularyTest, LeftmostLongestAndStages) {
  // Raw tokens are found first; normalized ones only in the rest.
  const AddedVocabulary vocab = MakeVocab(
      {Token("ab", 0, false), Token("abc", 1, false), Token("bcd", 2, false),
       Token("cd", 3, true), Token("  ", 4, true), Token("   ", 5, true)});
  EXPECT_THAT(Split(vocab, "xabcd"),
              ElementsAre(Pair("x", -1), Pair("abc", 1), Pair("d", -1)));
  EXPECT_THAT(Split(vocab, "abcd cd     e"),
              ElementsAre(Pair("abc", 1), Pair("d ", -1), Pair("cd", 3),
                          Pair("   ", 5), Pair("  ", 4), Pair("e", -1)));
}

TEST(AddedVocabularyTest, MatcherIgnoresEmptyPatterns) {
  LeftmostLongestMatcher matcher({"", "b", "bb"});
  LeftmostLongestMatcher::Match m;
  ASSERT_TRUE(matcher.Next("abbb", 0, &m));
  EXPECT_EQ(m.start, 1u);
  EXPECT_EQ(m.end, 3u);
  EXPECT_EQ(m.pattern, 2);
  ASSERT_TRUE(matcher.Next("abbb", 3, &m));
  EXPECT_EQ(m.pattern, 1);
  EXPECT_FALSE(matcher.Next("abbb", 4, &m));
  EXPECT_FALSE(LeftmostLongestMatcher({""}).Next("abc", 0, &m));
}

}  // namespace
}  // namespace alibi::tokenizer::internal
