#include "server/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"

namespace alibi::tokenizer::internal {
namespace {

// Oniguruma's Unicode \s: 0009-000D, 0085 and General_Category Zs/Zl/Zp,
// written as the body of a character class.
constexpr absl::string_view kSpaceSet =
    "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}"
    "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";
// Oniguruma's Unicode \w: Letter|Mark|Number|Connector_Punctuation.
constexpr absl::string_view kWordSet = "\\p{L}\\p{M}\\p{N}\\p{Pc}";
constexpr absl::string_view kHexSet = "0-9a-fA-F";

absl::Status Unsupported(absl::string_view what, size_t pos,
                         absl::string_view pattern) {
  return absl::InvalidArgumentError(absl::StrCat("regex \"", pattern,
                                                 "\": ", what, " (at byte ",
                                                 pos, ") is not supported"));
}

// Translator state machine over the pattern bytes. Only ASCII bytes are
// syntax; multi-byte UTF-8 sequences are copied through untouched.
class Translator {
 public:
  explicit Translator(absl::string_view in) : in_(in) {}

  absl::StatusOr<std::string> Run() {
    if (!IsValidUtf8(in_)) {
      return absl::InvalidArgumentError("regex pattern is not valid UTF-8");
    }
    while (pos_ < in_.size()) {
      if (depth_ == 0) {
        RETURN_IF_ERROR(Outside());
      } else {
        RETURN_IF_ERROR(Inside());
      }
    }
    if (depth_ != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("regex \"", in_, "\": unterminated character class"));
    }
    return out_;
  }

 private:
  char Peek(size_t ahead = 0) const {
    return pos_ + ahead < in_.size() ? in_[pos_ + ahead] : '\0';
  }
  bool HasAhead(size_t ahead) const { return pos_ + ahead < in_.size(); }

  // A class shorthand (\\s, \\w, \\h: `set`; negated, \\S, \\W, \\H, which
  // only stand outside a class).
  absl::StatusOr<bool> ClassEscape(absl::string_view set, bool negated,
                                   bool in_class) {
    if (negated && in_class) {
      return Unsupported(
          absl::StrCat("\\", std::string(1, Peek(1)), " inside a class"), pos_,
          in_);
    }
    out_ += in_class ? std::string(set)
                     : absl::StrCat(negated ? "[^" : "[", set, "]");
    pos_ += 2;
    return true;
  }

  // Handles `\x` escapes common to both contexts; returns true if it wrote
  // something, false if the escape should be copied verbatim.
  absl::StatusOr<bool> Escape(bool in_class) {
    const char c = Peek(1);
    switch (c) {
      case 's':
      case 'S':
        return ClassEscape(kSpaceSet, c == 'S', in_class);
      case 'w':
      case 'W':
        return ClassEscape(kWordSet, c == 'W', in_class);
      case 'h':
      case 'H':
        return ClassEscape(kHexSet, c == 'H', in_class);
      case 'v':
        out_ += "\\x{B}";
        pos_ += 2;
        return true;
      case 'Q':
      case 'E':
        // Not quoting operators in Oniguruma's syntax: plain letters.
        out_.push_back(c);
        pos_ += 2;
        return true;
      case 'u': {
        for (size_t k = 2; k < 6; ++k) {
          if (!absl::ascii_isxdigit(static_cast<unsigned char>(Peek(k)))) {
            return Unsupported("malformed \\u escape", pos_, in_);
          }
        }
        out_ += absl::StrCat("\\x{", in_.substr(pos_ + 2, 4), "}");
        pos_ += 6;
        return true;
      }
      default:
        return false;
    }
  }

  // Copies one whole character (1-4 bytes) from the input.
  void CopyChar() {
    const size_t len = Utf8CharLength(static_cast<unsigned char>(in_[pos_]));
    out_.append(in_.data() + pos_, len);
    pos_ += len;
  }

  // An escape at pos_: translated by Escape, or copied as it stands.
  absl::Status Backslash(bool in_class) {
    if (!HasAhead(1)) return Unsupported("trailing backslash", pos_, in_);
    absl::StatusOr<bool> handled = Escape(in_class);
    if (!handled.ok()) return handled.status();
    if (!*handled) {
      out_.push_back('\\');
      ++pos_;
      CopyChar();
    }
    return absl::OkStatus();
  }

  absl::Status Outside() {
    const char c = Peek();
    if (c == '\\') return Backslash(/*in_class=*/false);
    if (c == '[') {
      out_.push_back('[');
      ++pos_;
      if (Peek() == '^') {
        out_.push_back('^');
        ++pos_;
      }
      depth_ = 1;
      class_start_ = true;
      return absl::OkStatus();
    }
    if (c == '(' && Peek(1) == '?') {
      // Ruby option groups: (?imx-imx) or (?imx-imx:...). 'm' is dotall.
      size_t k = 2;
      bool options = false;
      while (HasAhead(k) && (Peek(k) == 'i' || Peek(k) == 'm' ||
                             Peek(k) == 'x' || Peek(k) == '-')) {
        ++k;
        options = true;
      }
      if (options && (Peek(k) == ')' || Peek(k) == ':')) {
        out_ += "(?";
        for (size_t j = 2; j < k; ++j) {
          out_.push_back(Peek(j) == 'm' ? 's' : Peek(j));
        }
        pos_ += k;
        return absl::OkStatus();
      }
    }
    CopyChar();
    return absl::OkStatus();
  }

  absl::Status Inside() {
    const char c = Peek();
    const bool at_start = class_start_;
    class_start_ = false;
    if (at_start && c == ']') {
      // A ']' first in a class is a literal (both engines agree).
      out_ += "\\]";
      ++pos_;
      return absl::OkStatus();
    }
    if (c == '\\') return Backslash(/*in_class=*/true);
    if (c == '&' && Peek(1) == '&') {
      return Unsupported("character class intersection &&", pos_, in_);
    }
    if (c == '[') {
      if (Peek(1) == ':') {
        // POSIX bracket [:name:] / [:^name:]: copy through ":]".
        const size_t close = in_.find(":]", pos_ + 2);
        if (close != absl::string_view::npos) {
          out_.append(in_.data() + pos_, close + 2 - pos_);
          pos_ = close + 2;
          return absl::OkStatus();
        }
      }
      if (Peek(1) == '^') {
        return Unsupported("negated nested character class", pos_, in_);
      }
      // Nested class: a union, so its members join the enclosing class.
      // A '-' just before it would turn into a range operator: escape it.
      if (!out_.empty() && out_.back() == '-' &&
          !(out_.size() >= 2 && out_[out_.size() - 2] == '\\')) {
        out_.back() = '\\';
        out_.push_back('-');
      }
      ++pos_;
      ++depth_;
      class_start_ = true;
      return absl::OkStatus();
    }
    if (c == ']') {
      ++pos_;
      --depth_;
      if (depth_ == 0) {
        out_.push_back(']');
      } else if (Peek() == '-') {
        // "[[ab]-c]": the '-' after a nested class is a literal.
        out_ += "\\-";
        ++pos_;
      }
      return absl::OkStatus();
    }
    CopyChar();
    return absl::OkStatus();
  }

  absl::string_view in_;
  size_t pos_ = 0;
  int depth_ = 0;
  bool class_start_ = false;
  std::string out_;
};

}  // namespace

absl::StatusOr<std::string> TranslateOnigurumaPattern(absl::string_view onig) {
  return Translator(onig).Run();
}

std::string EscapeLiteral(absl::string_view literal) {
  std::string out;
  out.reserve(literal.size() * 2);
  for (const char c : literal) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !absl::ascii_isalnum(u)) {
      if (u < 0x20 || u == 0x7F) {
        out += absl::StrCat("\\x{", absl::Hex(u), "}");
        continue;
      }
      out.push_back('\\');
    }
    out.push_back(c);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(
    absl::string_view pcre2_pattern) {
  pcre2_compile_context* ctx = pcre2_compile_context_create(nullptr);
  if (ctx == nullptr) return absl::ResourceExhaustedError("pcre2 context");
  pcre2_set_newline(ctx, PCRE2_NEWLINE_LF);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(
      reinterpret_cast<PCRE2_SPTR>(pcre2_pattern.data()), pcre2_pattern.size(),
      PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_NEVER_BACKSLASH_C,
      &error_code, &error_offset, ctx);
  pcre2_compile_context_free(ctx);
  if (code == nullptr) {
    PCRE2_UCHAR buffer[256];
    pcre2_get_error_message(error_code, buffer, sizeof(buffer));
    return absl::InvalidArgumentError(absl::StrCat(
        "regex \"", pcre2_pattern,
        "\" does not compile: ", reinterpret_cast<const char*>(buffer),
        " (at byte ", error_offset, ")"));
  }
  // JIT is an optimisation only; the interpreter is used if it fails.
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return std::unique_ptr<Regex>(new Regex(code, std::string(pcre2_pattern)));
}

absl::StatusOr<std::unique_ptr<Regex>> Regex::CompileOniguruma(
    absl::string_view onig_pattern) {
  auto translated = TranslateOnigurumaPattern(onig_pattern);
  if (!translated.ok()) return translated.status();
  return Compile(*translated);
}

Regex::~Regex() { pcre2_code_free(code_); }

absl::Status Regex::FindAll(
    absl::string_view text,
    std::vector<std::pair<size_t, size_t>>* matches) const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
  if (md == nullptr) return absl::ResourceExhaustedError("pcre2 match data");
  static constexpr char kEmpty[] = "";
  const auto* subject =
      reinterpret_cast<PCRE2_SPTR>(text.empty() ? kEmpty : text.data());
  const size_t n = text.size();
  size_t last_end = 0;
  bool skip_next_empty = false;
  absl::Status status;
  while (last_end <= n) {
    int rc = pcre2_match(code_, subject, n, last_end, PCRE2_NO_UTF_CHECK, md,
                         nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      // The JIT's default stack is small; the interpreter uses the heap.
      rc = pcre2_match(code_, subject, n, last_end,
                       PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR buffer[256];
      pcre2_get_error_message(rc, buffer, sizeof(buffer));
      status = absl::ResourceExhaustedError(
          absl::StrCat("regex \"", pattern_,
                       "\" failed: ", reinterpret_cast<const char*>(buffer)));
      break;
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(md);
    const size_t start = ovector[0];
    const size_t end = ovector[1];
    if (start > end || end > n) {
      // Only possible with \K tricks; treat as an unusable pattern.
      status = absl::InvalidArgumentError(absl::StrCat(
          "regex \"", pattern_, "\" produced a match ending before it starts"));
      break;
    }
    last_end = end;
    if (start == end) {
      last_end +=
          end < n ? Utf8CharLength(static_cast<unsigned char>(text[end])) : 1;
      if (skip_next_empty) {
        skip_next_empty = false;
        continue;
      }
    } else {
      skip_next_empty = true;
    }
    matches->emplace_back(start, end);
  }
  pcre2_match_data_free(md);
  return status;
}

}  // namespace alibi::tokenizer::internal
