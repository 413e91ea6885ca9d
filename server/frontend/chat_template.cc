#include "server/frontend/chat_template.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace alibi::frontend {
namespace {

// Evaluation limits: a template is the operator's, but messages are the
// client's, and no input may make rendering unbounded.
constexpr size_t kMaxOutputBytes = 16 << 20;
constexpr int64_t kMaxSteps = 2'000'000;
constexpr int kMaxDepth = 100;
constexpr int64_t kMaxRange = 100'000;

// ---------------------------------------------------------------------------
// Values

struct Value;
using List = std::vector<Value>;
using Map = std::vector<std::pair<std::string, Value>>;  // insertion order

struct Value {
  enum class Kind {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kMap,
    kFunction,
  };
  Kind kind = Kind::kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // string, or a function's name
  std::shared_ptr<const List> list;
  std::shared_ptr<const Map> map;

  static Value None() { return Make(Kind::kNone); }
  static Value Bool(bool v) {
    Value x = Make(Kind::kBool);
    x.b = v;
    return x;
  }
  static Value Int(int64_t v) {
    Value x = Make(Kind::kInt);
    x.i = v;
    return x;
  }
  static Value Float(double v) {
    Value x = Make(Kind::kFloat);
    x.f = v;
    return x;
  }
  static Value String(std::string v) {
    Value x = Make(Kind::kString);
    x.s = std::move(v);
    return x;
  }
  static Value OfList(List v) {
    Value x = Make(Kind::kList);
    x.list = std::make_shared<const List>(std::move(v));
    return x;
  }
  static Value OfMap(Map v) {
    Value x = Make(Kind::kMap);
    x.map = std::make_shared<const Map>(std::move(v));
    return x;
  }
  static Value Function(std::string name) {
    Value x = Make(Kind::kFunction);
    x.s = std::move(name);
    return x;
  }
  static Value Make(Kind k) {
    Value x;
    x.kind = k;
    return x;
  }

  bool is_number() const { return kind == Kind::kInt || kind == Kind::kFloat; }
  double number() const {
    return kind == Kind::kInt ? static_cast<double>(i) : f;
  }
  const Value* Find(absl::string_view key) const {
    if (kind != Kind::kMap) return nullptr;
    for (const auto& [k, v] : *map) {
      if (k == key) return &v;
    }
    return nullptr;
  }
};

const char* KindName(Value::Kind k) {
  switch (k) {
    case Value::Kind::kUndefined:
      return "undefined";
    case Value::Kind::kNone:
      return "none";
    case Value::Kind::kBool:
      return "boolean";
    case Value::Kind::kInt:
      return "integer";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return "string";
    case Value::Kind::kList:
      return "list";
    case Value::Kind::kMap:
      return "dict";
    case Value::Kind::kFunction:
      return "function";
  }
  return "value";
}

bool Truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
      return v.b;
    case Value::Kind::kInt:
      return v.i != 0;
    case Value::Kind::kFloat:
      return v.f != 0;
    case Value::Kind::kString:
      return !v.s.empty();
    case Value::Kind::kList:
      return !v.list->empty();
    case Value::Kind::kMap:
      return !v.map->empty();
    case Value::Kind::kFunction:
      return true;
  }
  return false;
}

bool Equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return a.number() == b.number();
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kBool:
      return a.b == b.b;
    case Value::Kind::kString:
    case Value::Kind::kFunction:
      return a.s == b.s;
    case Value::Kind::kList:
      return std::equal(a.list->begin(), a.list->end(), b.list->begin(),
                        b.list->end(), Equal);
    case Value::Kind::kMap:
      return a.map == b.map ||
             std::equal(a.map->begin(), a.map->end(), b.map->begin(),
                        b.map->end(), [](const auto& x, const auto& y) {
                          return x.first == y.first &&
                                 Equal(x.second, y.second);
                        });
    default:
      return false;
  }
}

std::string FormatFloat(double f) {
  if (std::isfinite(f) && f == std::floor(f) && std::fabs(f) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(f), ".0");
  }
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.17g", f);
  return buffer;
}

// Python's json.dumps(v, ensure_ascii=False) with its default separators
// (", " and ": "), or `indent` spaces per level: what transformers' tojson
// filter gives.
void AppendJson(const Value& v, int indent, int level, std::string* out) {
  auto newline = [&](int l) {
    if (indent < 0) return;
    out->push_back('\n');
    out->append(static_cast<size_t>(indent) * l, ' ');
  };
  const char* item_sep = indent < 0 ? ", " : ",";
  switch (v.kind) {
    case Value::Kind::kBool:
      *out += v.b ? "true" : "false";
      return;
    case Value::Kind::kInt:
      absl::StrAppend(out, v.i);
      return;
    case Value::Kind::kFloat:
      *out += nlohmann::json(v.f).dump();
      return;
    case Value::Kind::kString:
      *out += nlohmann::json(v.s).dump(
          -1, ' ', false, nlohmann::json::error_handler_t::replace);
      return;
    case Value::Kind::kList:
      *out += '[';
      for (size_t i = 0; i < v.list->size(); ++i) {
        if (i > 0) *out += item_sep;
        newline(level + 1);
        AppendJson((*v.list)[i], indent, level + 1, out);
      }
      if (!v.list->empty()) newline(level);
      *out += ']';
      return;
    case Value::Kind::kMap: {
      *out += '{';
      bool first = true;
      for (const auto& [k, x] : *v.map) {
        if (!first) *out += item_sep;
        first = false;
        newline(level + 1);
        AppendJson(Value::String(k), indent, level + 1, out);
        *out += ": ";
        AppendJson(x, indent, level + 1, out);
      }
      if (!v.map->empty()) newline(level);
      *out += '}';
      return;
    }
    default:
      *out += "null";
  }
}

std::string Repr(const Value& v);

// What {{ v }} prints (Python's str()).
std::string Str(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
      return "";
    case Value::Kind::kNone:
      return "None";
    case Value::Kind::kBool:
      return v.b ? "True" : "False";
    case Value::Kind::kInt:
      return absl::StrCat(v.i);
    case Value::Kind::kFloat:
      return FormatFloat(v.f);
    case Value::Kind::kString:
      return v.s;
    case Value::Kind::kList: {
      std::string out = "[";
      for (size_t i = 0; i < v.list->size(); ++i) {
        if (i > 0) out += ", ";
        out += Repr((*v.list)[i]);
      }
      return out + "]";
    }
    case Value::Kind::kMap: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, x] : *v.map) {
        if (!first) out += ", ";
        first = false;
        absl::StrAppend(&out, Repr(Value::String(k)), ": ", Repr(x));
      }
      return out + "}";
    }
    case Value::Kind::kFunction:
      return absl::StrCat("<function ", v.s, ">");
  }
  return "";
}

// Python's repr() (strings quoted).
std::string Repr(const Value& v) {
  if (v.kind != Value::Kind::kString) return Str(v);
  return absl::StrCat(
      "'", absl::StrReplaceAll(v.s, {{"\\", "\\\\"}, {"'", "\\'"}}), "'");
}

// ---------------------------------------------------------------------------
// Syntax tree

struct Expr {
  enum class Kind {
    kLiteral,
    kVar,
    kAttr,    // args[0].name
    kItem,    // args[0][args[1]]
    kSlice,   // args[0][args[1]:args[2]] (either may be null)
    kCall,    // args[0](args[1..]), keyword names in kwnames
    kFilter,  // args[0] | name(args[1..])
    kTest,    // args[0] is [not] name(args[1..])
    kUnary,   // name args[0]
    kBinary,  // args[0] name args[1]
    kCond,    // args[0] if args[1] else args[2] (may be null)
    kList,
    kDict,  // key, value, key, value, ...
  };
  Kind kind = Kind::kLiteral;
  Value literal;
  std::string name;
  std::vector<std::unique_ptr<Expr>> args;
  std::vector<std::string> kwnames;  // kCall: per argument, "" if positional
  bool negated = false;              // kTest
  int line = 0;
};

struct Node {
  enum class Kind { kText, kOutput, kIf, kFor, kSet };
  Kind kind = Kind::kText;
  std::string text;
  std::unique_ptr<Expr> expr;  // output; for: the iterable; set: the value
  // kIf: conditions[i] guards bodies[i]; a last body without a condition is
  // the else branch. kFor: bodies[0] the body, bodies[1] the else branch,
  // conditions[0] (if any) the loop filter.
  std::vector<std::unique_ptr<Expr>> conditions;
  std::vector<std::vector<Node>> bodies;
  std::vector<std::string> targets;  // for: loop variables; set: name
  std::string attr;                  // set ns.attr
  int line = 0;
};

absl::Status SyntaxError(int line, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("chat template, line ", line, ": ", what));
}

// ---------------------------------------------------------------------------
// Template text -> segments (text, {{ }}, {% %}) with Jinja's whitespace
// control as transformers configures it (trim_blocks, lstrip_blocks).

struct Segment {
  enum class Kind { kText, kExpr, kStmt };
  Kind kind;
  std::string content;
  int line;
};

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

absl::StatusOr<std::vector<Segment>> SplitTemplate(const std::string& src) {
  std::vector<Segment> out;
  size_t pos = 0;
  int line = 1;
  bool strip_leading = false;  // the previous tag ended with '-'
  bool trim_newline = false;   // the previous block tag (trim_blocks)
  const size_t n = src.size();
  while (pos <= n) {
    size_t open = pos;
    while (true) {
      open = src.find('{', open);
      if (open == std::string::npos || open + 1 >= n) {
        open = std::string::npos;
        break;
      }
      const char c = src[open + 1];
      if (c == '{' || c == '%' || c == '#') break;
      ++open;
    }
    const size_t text_end = open == std::string::npos ? n : open;
    std::string text = src.substr(pos, text_end - pos);
    if (trim_newline) {
      if (absl::StartsWith(text, "\r\n")) {
        text.erase(0, 2);
      } else if (absl::StartsWith(text, "\n")) {
        text.erase(0, 1);
      }
    }
    if (strip_leading) {
      size_t k = 0;
      while (k < text.size() && IsSpace(text[k])) ++k;
      text.erase(0, k);
    }
    if (open == std::string::npos) {
      if (!text.empty()) out.push_back({Segment::Kind::kText, text, line});
      break;
    }
    const char kind = src[open + 1];
    size_t body = open + 2;
    const bool minus_left = body < n && src[body] == '-';
    const bool plus_left = body < n && src[body] == '+';
    if (minus_left || plus_left) ++body;
    if (minus_left) {
      while (!text.empty() && IsSpace(text.back())) text.pop_back();
    } else if (kind != '{' && !plus_left) {
      // lstrip_blocks: a block tag alone at the start of its line takes the
      // line's leading spaces and tabs with it.
      size_t run = open;
      while (run > pos && (src[run - 1] == ' ' || src[run - 1] == '\t')) --run;
      if (run == 0 || src[run - 1] == '\n') {
        const size_t strip = open - run;
        text.resize(text.size() >= strip ? text.size() - strip : 0);
      }
    }
    for (size_t k = pos; k < open; ++k) line += src[k] == '\n';
    const int tag_line = line;
    // The end of the tag, skipping quoted strings.
    const std::string closer = kind == '{' ? "}}" : (kind == '%' ? "%}" : "#}");
    size_t close = std::string::npos;
    if (kind == '#') {
      close = src.find(closer, body);
    } else {
      char quote = 0;
      for (size_t k = body; k + 1 < n; ++k) {
        const char c = src[k];
        if (quote != 0) {
          if (c == '\\') {
            ++k;
          } else if (c == quote) {
            quote = 0;
          }
        } else if (c == '\'' || c == '"') {
          quote = c;
        } else if (c == closer[0] && src[k + 1] == closer[1]) {
          close = k;
          break;
        }
      }
    }
    if (close == std::string::npos) {
      return SyntaxError(
          tag_line,
          absl::StrCat("unclosed \"{", std::string(1, kind), "\" tag"));
    }
    size_t content_end = close;
    const bool minus_right = content_end > body && src[content_end - 1] == '-';
    const bool plus_right = content_end > body && src[content_end - 1] == '+';
    if (minus_right || plus_right) --content_end;
    if (!text.empty()) out.push_back({Segment::Kind::kText, text, line});
    if (kind != '#') {
      out.push_back({kind == '{' ? Segment::Kind::kExpr : Segment::Kind::kStmt,
                     src.substr(body, content_end - body), tag_line});
    }
    for (size_t k = open; k < close; ++k) line += src[k] == '\n';
    strip_leading = minus_right;
    trim_newline = kind != '{' && !minus_right && !plus_right;
    pos = close + 2;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Expression tokens and parser

struct Token {
  enum class Kind { kName, kString, kInt, kFloat, kOp, kEnd };
  Kind kind = Kind::kEnd;
  std::string text;  // name, operator, or the string's value
  int64_t i = 0;
  double f = 0;
};

absl::StatusOr<std::vector<Token>> Tokenize(absl::string_view s, int line) {
  static const char* const kOps[] = {
      "**", "//", "==", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}", ".",
      ",",  ":",  "|",  "~",  "+",  "-",  "*", "/", "%", "<", ">", "="};
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (IsSpace(c)) {
      ++i;
      continue;
    }
    Token t;
    if (absl::ascii_isalpha(c) || c == '_') {
      size_t j = i;
      while (j < s.size() && (absl::ascii_isalnum(s[j]) || s[j] == '_')) ++j;
      t.kind = Token::Kind::kName;
      t.text = std::string(s.substr(i, j - i));
      i = j;
    } else if (absl::ascii_isdigit(c)) {
      size_t j = i;
      bool is_float = false;
      while (j < s.size() && (absl::ascii_isdigit(s[j]) || s[j] == '_' ||
                              (s[j] == '.' && j + 1 < s.size() &&
                               absl::ascii_isdigit(s[j + 1])))) {
        is_float = is_float || s[j] == '.';
        ++j;
      }
      const std::string number =
          absl::StrReplaceAll(s.substr(i, j - i), {{"_", ""}});
      if (is_float) {
        t.kind = Token::Kind::kFloat;
        if (!absl::SimpleAtod(number, &t.f)) {
          return SyntaxError(line, absl::StrCat("bad number ", number));
        }
      } else {
        t.kind = Token::Kind::kInt;
        if (!absl::SimpleAtoi(number, &t.i)) {
          return SyntaxError(line, absl::StrCat("bad number ", number));
        }
      }
      i = j;
    } else if (c == '\'' || c == '"') {
      t.kind = Token::Kind::kString;
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; ++j) {
        if (s[j] != '\\' || j + 1 == s.size()) {
          t.text += s[j];
          continue;
        }
        const char e = s[++j];
        switch (e) {
          case 'n':
            t.text += '\n';
            break;
          case 't':
            t.text += '\t';
            break;
          case 'r':
            t.text += '\r';
            break;
          case '\\':
          case '\'':
          case '"':
            t.text += e;
            break;
          default:
            t.text += '\\';
            t.text += e;
        }
      }
      if (j >= s.size()) return SyntaxError(line, "unterminated string");
      i = j + 1;
    } else {
      bool found = false;
      for (const char* op : kOps) {
        if (absl::StartsWith(s.substr(i), op)) {
          t.kind = Token::Kind::kOp;
          t.text = op;
          i += t.text.size();
          found = true;
          break;
        }
      }
      if (!found) {
        return SyntaxError(line, absl::StrCat("unexpected character '",
                                              std::string(1, c), "'"));
      }
    }
    out.push_back(std::move(t));
  }
  out.push_back(Token());
  return out;
}

class ExprParser {
 public:
  ExprParser(std::vector<Token> tokens, int line)
      : tokens_(std::move(tokens)), line_(line) {}

  const Token& Peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  bool AtEnd() const { return Peek().kind == Token::Kind::kEnd; }
  bool IsOp(absl::string_view op, size_t ahead = 0) const {
    return Peek(ahead).kind == Token::Kind::kOp && Peek(ahead).text == op;
  }
  bool IsName(absl::string_view name, size_t ahead = 0) const {
    return Peek(ahead).kind == Token::Kind::kName && Peek(ahead).text == name;
  }
  bool AcceptOp(absl::string_view op) {
    if (!IsOp(op)) return false;
    ++pos_;
    return true;
  }
  bool AcceptName(absl::string_view name) {
    if (!IsName(name)) return false;
    ++pos_;
    return true;
  }
  absl::Status ExpectOp(absl::string_view op) {
    if (AcceptOp(op)) return absl::OkStatus();
    return Error(absl::StrCat("expected '", op, "'"));
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Peek().kind != Token::Kind::kName) return Error("expected a name");
    return tokens_[pos_++].text;
  }
  absl::Status ExpectEnd() {
    if (AtEnd()) return absl::OkStatus();
    return Error("unexpected text after the expression");
  }
  absl::Status Error(absl::string_view what) const {
    const Token& t = Peek();
    return SyntaxError(
        line_, absl::StrCat(what, t.kind == Token::Kind::kEnd
                                      ? " at the end of the tag"
                                      : absl::StrCat(" near '", t.text, "'")));
  }

  using ExprPtr = std::unique_ptr<Expr>;

  // An expression without a trailing `if` (a for loop's iterable).
  absl::StatusOr<ExprPtr> OrExpression() { return Or(); }

  absl::StatusOr<ExprPtr> Expression() {
    if (++depth_ > kMaxDepth) return Error("expression nested too deeply");
    ASSIGN_OR_RETURN(ExprPtr then, Or());
    if (AcceptName("if")) {
      ASSIGN_OR_RETURN(ExprPtr cond, Or());
      ExprPtr otherwise;
      if (AcceptName("else")) {
        ASSIGN_OR_RETURN(otherwise, Expression());
      }
      ExprPtr e = Make(Expr::Kind::kCond);
      e->args.push_back(std::move(then));
      e->args.push_back(std::move(cond));
      e->args.push_back(std::move(otherwise));
      then = std::move(e);
    }
    --depth_;
    return then;
  }

 private:
  ExprPtr Make(Expr::Kind kind, std::string name = "") const {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->name = std::move(name);
    e->line = line_;
    return e;
  }
  ExprPtr Binary(std::string op, ExprPtr a, ExprPtr b) const {
    ExprPtr e = Make(Expr::Kind::kBinary, std::move(op));
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  absl::StatusOr<ExprPtr> Or() {
    ASSIGN_OR_RETURN(ExprPtr a, And());
    while (AcceptName("or")) {
      ASSIGN_OR_RETURN(ExprPtr b, And());
      a = Binary("or", std::move(a), std::move(b));
    }
    return a;
  }
  absl::StatusOr<ExprPtr> And() {
    ASSIGN_OR_RETURN(ExprPtr a, Not());
    while (AcceptName("and")) {
      ASSIGN_OR_RETURN(ExprPtr b, Not());
      a = Binary("and", std::move(a), std::move(b));
    }
    return a;
  }
  absl::StatusOr<ExprPtr> Not() {
    if (AcceptName("not")) {
      ASSIGN_OR_RETURN(ExprPtr a, Not());
      ExprPtr e = Make(Expr::Kind::kUnary, "not");
      e->args.push_back(std::move(a));
      return e;
    }
    return Compare();
  }
  absl::StatusOr<ExprPtr> Compare() {
    ASSIGN_OR_RETURN(ExprPtr a, Add());
    while (true) {
      std::string op;
      if (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp("<=") || IsOp(">") ||
          IsOp(">=")) {
        op = tokens_[pos_++].text;
      } else if (AcceptName("in")) {
        op = "in";
      } else if (IsName("not") && IsName("in", 1)) {
        pos_ += 2;
        op = "not in";
      } else {
        return a;
      }
      ASSIGN_OR_RETURN(ExprPtr b, Add());
      a = Binary(op, std::move(a), std::move(b));
    }
  }
  absl::StatusOr<ExprPtr> Add() {
    ASSIGN_OR_RETURN(ExprPtr a, Concat());
    while (IsOp("+") || IsOp("-")) {
      std::string op = tokens_[pos_++].text;
      ASSIGN_OR_RETURN(ExprPtr b, Concat());
      a = Binary(op, std::move(a), std::move(b));
    }
    return a;
  }
  absl::StatusOr<ExprPtr> Concat() {
    ASSIGN_OR_RETURN(ExprPtr a, Mul());
    while (AcceptOp("~")) {
      ASSIGN_OR_RETURN(ExprPtr b, Mul());
      a = Binary("~", std::move(a), std::move(b));
    }
    return a;
  }
  absl::StatusOr<ExprPtr> Mul() {
    ASSIGN_OR_RETURN(ExprPtr a, Unary());
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      std::string op = tokens_[pos_++].text;
      ASSIGN_OR_RETURN(ExprPtr b, Unary());
      a = Binary(op, std::move(a), std::move(b));
    }
    return a;
  }
  absl::StatusOr<ExprPtr> Unary() {
    if (IsOp("-") || IsOp("+")) {
      std::string op = tokens_[pos_++].text;
      ASSIGN_OR_RETURN(ExprPtr a, Unary());
      ExprPtr e = Make(Expr::Kind::kUnary, op);
      e->args.push_back(std::move(a));
      return e;
    }
    ASSIGN_OR_RETURN(ExprPtr e, Primary());
    return Postfix(std::move(e));
  }

  // Arguments after '(' up to ')', positional and keyword, appended to
  // `call`'s.
  absl::Status Arguments(Expr& call) {
    bool first = true;
    while (!AcceptOp(")")) {
      if (!first) {
        RETURN_IF_ERROR(ExpectOp(","));
        if (AcceptOp(")")) break;
      }
      first = false;
      std::string keyword;
      if (Peek().kind == Token::Kind::kName && IsOp("=", 1)) {
        keyword = tokens_[pos_].text;
        pos_ += 2;
      }
      ASSIGN_OR_RETURN(ExprPtr arg, Expression());
      call.args.push_back(std::move(arg));
      call.kwnames.push_back(std::move(keyword));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<ExprPtr> Postfix(ExprPtr e) {
    while (true) {
      if (AcceptOp(".")) {
        ASSIGN_OR_RETURN(std::string name, ExpectName());
        ExprPtr a = Make(Expr::Kind::kAttr, std::move(name));
        a->args.push_back(std::move(e));
        e = std::move(a);
      } else if (AcceptOp("[")) {
        ExprPtr start, stop;
        if (!IsOp(":")) {
          ASSIGN_OR_RETURN(start, Expression());
        }
        if (AcceptOp(":")) {
          if (!IsOp("]")) {
            ASSIGN_OR_RETURN(stop, Expression());
          }
          RETURN_IF_ERROR(ExpectOp("]"));
          ExprPtr s = Make(Expr::Kind::kSlice);
          s->args.push_back(std::move(e));
          s->args.push_back(std::move(start));
          s->args.push_back(std::move(stop));
          e = std::move(s);
        } else {
          RETURN_IF_ERROR(ExpectOp("]"));
          if (start == nullptr) return Error("empty subscript");
          ExprPtr item = Make(Expr::Kind::kItem);
          item->args.push_back(std::move(e));
          item->args.push_back(std::move(start));
          e = std::move(item);
        }
      } else if (AcceptOp("(")) {
        ExprPtr call = Make(Expr::Kind::kCall);
        call->args.push_back(std::move(e));
        call->kwnames.push_back("");
        RETURN_IF_ERROR(Arguments(*call));
        e = std::move(call);
      } else if (AcceptOp("|")) {
        ASSIGN_OR_RETURN(std::string name, ExpectName());
        ExprPtr f = Make(Expr::Kind::kFilter, std::move(name));
        f->args.push_back(std::move(e));
        f->kwnames.push_back("");
        if (AcceptOp("(")) RETURN_IF_ERROR(Arguments(*f));
        e = std::move(f);
      } else if (AcceptName("is")) {
        const bool negated = AcceptName("not");
        ASSIGN_OR_RETURN(std::string name, ExpectName());
        ExprPtr t = Make(Expr::Kind::kTest, std::move(name));
        t->negated = negated;
        t->args.push_back(std::move(e));
        t->kwnames.push_back("");
        if (AcceptOp("(")) {
          RETURN_IF_ERROR(Arguments(*t));
        } else if (Peek().kind == Token::Kind::kString ||
                   Peek().kind == Token::Kind::kInt ||
                   Peek().kind == Token::Kind::kFloat) {
          ASSIGN_OR_RETURN(ExprPtr arg, Primary());  // `is equalto 3`
          t->args.push_back(std::move(arg));
          t->kwnames.push_back("");
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }

  absl::StatusOr<ExprPtr> Primary() {
    const Token t = Peek();
    ++pos_;
    switch (t.kind) {
      case Token::Kind::kString: {
        // Adjacent literals concatenate, as in Python.
        std::string s = t.text;
        while (Peek().kind == Token::Kind::kString) s += tokens_[pos_++].text;
        ExprPtr e = Make(Expr::Kind::kLiteral);
        e->literal = Value::String(std::move(s));
        return e;
      }
      case Token::Kind::kInt: {
        ExprPtr e = Make(Expr::Kind::kLiteral);
        e->literal = Value::Int(t.i);
        return e;
      }
      case Token::Kind::kFloat: {
        ExprPtr e = Make(Expr::Kind::kLiteral);
        e->literal = Value::Float(t.f);
        return e;
      }
      case Token::Kind::kName: {
        ExprPtr e = Make(Expr::Kind::kLiteral);
        if (t.text == "true" || t.text == "True") {
          e->literal = Value::Bool(true);
        } else if (t.text == "false" || t.text == "False") {
          e->literal = Value::Bool(false);
        } else if (t.text == "none" || t.text == "None") {
          e->literal = Value::None();
        } else {
          e = Make(Expr::Kind::kVar, t.text);
        }
        return e;
      }
      case Token::Kind::kOp:
        if (t.text == "(") {
          ASSIGN_OR_RETURN(ExprPtr e, Expression());
          if (AcceptOp(",")) {  // a tuple: treated as a list
            ExprPtr list = Make(Expr::Kind::kList);
            list->args.push_back(std::move(e));
            while (!AcceptOp(")")) {
              ASSIGN_OR_RETURN(ExprPtr item, Expression());
              list->args.push_back(std::move(item));
              if (!IsOp(")")) RETURN_IF_ERROR(ExpectOp(","));
            }
            return list;
          }
          RETURN_IF_ERROR(ExpectOp(")"));
          return e;
        }
        if (t.text == "[") {
          ExprPtr list = Make(Expr::Kind::kList);
          while (!AcceptOp("]")) {
            if (!list->args.empty()) {
              RETURN_IF_ERROR(ExpectOp(","));
              if (AcceptOp("]")) break;
            }
            ASSIGN_OR_RETURN(ExprPtr item, Expression());
            list->args.push_back(std::move(item));
          }
          return list;
        }
        if (t.text == "{") {
          ExprPtr dict = Make(Expr::Kind::kDict);
          while (!AcceptOp("}")) {
            if (!dict->args.empty()) {
              RETURN_IF_ERROR(ExpectOp(","));
              if (AcceptOp("}")) break;
            }
            ASSIGN_OR_RETURN(ExprPtr key, Expression());
            RETURN_IF_ERROR(ExpectOp(":"));
            ASSIGN_OR_RETURN(ExprPtr value, Expression());
            dict->args.push_back(std::move(key));
            dict->args.push_back(std::move(value));
          }
          return dict;
        }
        break;
      case Token::Kind::kEnd:
        break;
    }
    --pos_;
    return Error("expected a value");
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int line_;
  int depth_ = 0;
};

// ---------------------------------------------------------------------------
// Statements

class TemplateParser {
 public:
  explicit TemplateParser(std::vector<Segment> segments)
      : segments_(std::move(segments)) {}

  absl::StatusOr<std::vector<Node>> Parse() {
    std::string end;
    ASSIGN_OR_RETURN(std::vector<Node> body, Body({}, &end));
    return body;
  }

 private:
  // Parses nodes until a statement whose keyword is in `ends` (returned in
  // `*end`, with its parser positioned after the keyword in `*rest`).
  absl::StatusOr<std::vector<Node>> Body(
      const std::vector<std::string>& ends, std::string* end,
      std::unique_ptr<ExprParser>* rest = nullptr) {
    std::vector<Node> nodes;
    while (pos_ < segments_.size()) {
      const Segment& seg = segments_[pos_++];
      if (seg.kind == Segment::Kind::kText) {
        Node n;
        n.kind = Node::Kind::kText;
        n.text = seg.content;
        n.line = seg.line;
        nodes.push_back(std::move(n));
        continue;
      }
      ASSIGN_OR_RETURN(std::vector<Token> tokens,
                       Tokenize(seg.content, seg.line));
      auto p = std::make_unique<ExprParser>(std::move(tokens), seg.line);
      if (seg.kind == Segment::Kind::kExpr) {
        Node n;
        n.kind = Node::Kind::kOutput;
        n.line = seg.line;
        ASSIGN_OR_RETURN(n.expr, p->Expression());
        RETURN_IF_ERROR(p->ExpectEnd());
        nodes.push_back(std::move(n));
        continue;
      }
      ASSIGN_OR_RETURN(std::string keyword, p->ExpectName());
      if (std::find(ends.begin(), ends.end(), keyword) != ends.end()) {
        *end = keyword;
        if (rest != nullptr) *rest = std::move(p);
        return nodes;
      }
      if (keyword == "if") {
        ASSIGN_OR_RETURN(Node n, If(*p, seg.line));
        nodes.push_back(std::move(n));
      } else if (keyword == "for") {
        ASSIGN_OR_RETURN(Node n, For(*p, seg.line));
        nodes.push_back(std::move(n));
      } else if (keyword == "set") {
        ASSIGN_OR_RETURN(Node n, Set(*p, seg.line));
        nodes.push_back(std::move(n));
      } else if (keyword == "generation" || keyword == "endgeneration") {
        // transformers' assistant-mask markers: no output of their own.
        RETURN_IF_ERROR(p->ExpectEnd());
      } else {
        return SyntaxError(
            seg.line,
            absl::StrCat("unsupported or unexpected tag \"", keyword, "\""));
      }
    }
    if (!ends.empty()) {
      return SyntaxError(segments_.empty() ? 1 : segments_.back().line,
                         absl::StrCat("missing {% ", ends.back(), " %}"));
    }
    return nodes;
  }

  absl::StatusOr<Node> If(ExprParser& p, int line) {
    Node n;
    n.kind = Node::Kind::kIf;
    n.line = line;
    ASSIGN_OR_RETURN(std::unique_ptr<Expr> cond, p.Expression());
    RETURN_IF_ERROR(p.ExpectEnd());
    while (true) {
      n.conditions.push_back(std::move(cond));
      std::string end;
      std::unique_ptr<ExprParser> rest;
      ASSIGN_OR_RETURN(std::vector<Node> body,
                       Body({"elif", "else", "endif"}, &end, &rest));
      n.bodies.push_back(std::move(body));
      if (end == "elif") {
        ASSIGN_OR_RETURN(cond, rest->Expression());
        RETURN_IF_ERROR(rest->ExpectEnd());
        continue;
      }
      RETURN_IF_ERROR(rest->ExpectEnd());
      if (end == "else") {
        ASSIGN_OR_RETURN(std::vector<Node> otherwise,
                         Body({"endif"}, &end, &rest));
        RETURN_IF_ERROR(rest->ExpectEnd());
        n.bodies.push_back(std::move(otherwise));
      }
      return n;
    }
  }

  absl::StatusOr<Node> For(ExprParser& p, int line) {
    Node n;
    n.kind = Node::Kind::kFor;
    n.line = line;
    do {
      ASSIGN_OR_RETURN(std::string target, p.ExpectName());
      n.targets.push_back(std::move(target));
    } while (p.AcceptOp(","));
    if (!p.AcceptName("in")) return p.Error("expected 'in'");
    ASSIGN_OR_RETURN(n.expr, p.OrExpression());
    if (p.AcceptName("if")) {  // a loop filter
      ASSIGN_OR_RETURN(std::unique_ptr<Expr> filter, p.Expression());
      n.conditions.push_back(std::move(filter));
    }
    RETURN_IF_ERROR(p.ExpectEnd());
    std::string end;
    std::unique_ptr<ExprParser> rest;
    ASSIGN_OR_RETURN(std::vector<Node> body,
                     Body({"else", "endfor"}, &end, &rest));
    RETURN_IF_ERROR(rest->ExpectEnd());
    n.bodies.push_back(std::move(body));
    if (end == "else") {
      ASSIGN_OR_RETURN(std::vector<Node> otherwise,
                       Body({"endfor"}, &end, &rest));
      RETURN_IF_ERROR(rest->ExpectEnd());
      n.bodies.push_back(std::move(otherwise));
    }
    return n;
  }

  absl::StatusOr<Node> Set(ExprParser& p, int line) {
    Node n;
    n.kind = Node::Kind::kSet;
    n.line = line;
    ASSIGN_OR_RETURN(std::string target, p.ExpectName());
    n.targets.push_back(std::move(target));
    if (p.AcceptOp(".")) {
      ASSIGN_OR_RETURN(n.attr, p.ExpectName());
    }
    if (!p.AcceptOp("=")) {
      return p.Error("only `set name = value` is supported; expected '='");
    }
    ASSIGN_OR_RETURN(n.expr, p.Expression());
    RETURN_IF_ERROR(p.ExpectEnd());
    return n;
  }

  std::vector<Segment> segments_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------
// Evaluation

class Evaluator {
 public:
  explicit Evaluator(Map globals) { scopes_.push_back(std::move(globals)); }

  absl::Status Run(const std::vector<Node>& nodes) {
    for (const Node& n : nodes) RETURN_IF_ERROR(Exec(n));
    return absl::OkStatus();
  }
  std::string TakeOutput() { return std::move(out_); }

 private:
  absl::Status Error(int line, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("chat template, line ", line, ": ", what));
  }
  absl::Status Step(int line) {
    if (++steps_ > kMaxSteps) return Error(line, "evaluation limit reached");
    return absl::OkStatus();
  }
  absl::Status Emit(absl::string_view s, int line) {
    if (out_.size() + s.size() > kMaxOutputBytes) {
      return Error(line, "the rendered prompt is too long");
    }
    out_.append(s.data(), s.size());
    return absl::OkStatus();
  }

  Value Lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      for (const auto& [k, v] : *it) {
        if (k == name) return v;
      }
    }
    return Value();
  }
  void Assign(Map& scope, const std::string& name, Value v) {
    for (auto& [k, x] : scope) {
      if (k == name) {
        x = std::move(v);
        return;
      }
    }
    scope.emplace_back(name, std::move(v));
  }

  absl::Status Exec(const Node& n) {
    RETURN_IF_ERROR(Step(n.line));
    switch (n.kind) {
      case Node::Kind::kText:
        return Emit(n.text, n.line);
      case Node::Kind::kOutput: {
        ASSIGN_OR_RETURN(Value v, Eval(*n.expr));
        return Emit(Str(v), n.line);
      }
      case Node::Kind::kIf:
        for (size_t i = 0; i < n.bodies.size(); ++i) {
          if (i < n.conditions.size()) {
            ASSIGN_OR_RETURN(Value c, Eval(*n.conditions[i]));
            if (!Truthy(c)) continue;
          }
          return Run(n.bodies[i]);
        }
        return absl::OkStatus();
      case Node::Kind::kFor:
        return ExecFor(n);
      case Node::Kind::kSet: {
        ASSIGN_OR_RETURN(Value v, Eval(*n.expr));
        if (n.attr.empty()) {
          Assign(scopes_.back(), n.targets[0], std::move(v));
          return absl::OkStatus();
        }
        // ns.attr = v: rebinds the namespace where it lives.
        for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
          for (auto& [k, x] : *it) {
            if (k != n.targets[0]) continue;
            if (x.kind != Value::Kind::kMap) {
              return Error(n.line,
                           absl::StrCat(n.targets[0], " is not a namespace"));
            }
            Map updated = *x.map;
            Assign(updated, n.attr, std::move(v));
            x = Value::OfMap(std::move(updated));
            return absl::OkStatus();
          }
        }
        return Error(n.line, absl::StrCat(n.targets[0], " is undefined"));
      }
    }
    return absl::OkStatus();
  }

  // The loop variables of `n` bound to `item`.
  absl::StatusOr<Map> Bind(const Node& n, const Value& item) const {
    Map scope;
    if (n.targets.size() == 1) {
      scope.emplace_back(n.targets[0], item);
      return scope;
    }
    if (item.kind != Value::Kind::kList ||
        item.list->size() != n.targets.size()) {
      return Error(n.line, "cannot unpack the loop item");
    }
    for (size_t t = 0; t < n.targets.size(); ++t) {
      scope.emplace_back(n.targets[t], (*item.list)[t]);
    }
    return scope;
  }

  absl::Status ExecFor(const Node& n) {
    ASSIGN_OR_RETURN(Value seq, Eval(*n.expr));
    List items;
    if (seq.kind == Value::Kind::kList) {
      items = *seq.list;
    } else if (seq.kind == Value::Kind::kMap) {
      for (const auto& [k, v] : *seq.map) items.push_back(Value::String(k));
    } else if (seq.kind == Value::Kind::kString) {
      for (char c : seq.s) items.push_back(Value::String(std::string(1, c)));
    } else if (seq.kind != Value::Kind::kUndefined &&
               seq.kind != Value::Kind::kNone) {
      return Error(n.line,
                   absl::StrCat("cannot loop over a ", KindName(seq.kind)));
    }
    if (!n.conditions.empty()) {  // the loop filter
      List kept;
      for (const Value& item : items) {
        ASSIGN_OR_RETURN(Map scope, Bind(n, item));
        scopes_.push_back(std::move(scope));
        absl::StatusOr<Value> keep = Eval(*n.conditions[0]);
        scopes_.pop_back();
        if (!keep.ok()) return keep.status();
        if (Truthy(*keep)) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      return n.bodies.size() > 1 ? Run(n.bodies[1]) : absl::OkStatus();
    }
    const int64_t length = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < length; ++i) {
      RETURN_IF_ERROR(Step(n.line));
      ASSIGN_OR_RETURN(Map scope, Bind(n, items[i]));
      scope.emplace_back(
          "loop", Value::OfMap(
                      {{"index", Value::Int(i + 1)},
                       {"index0", Value::Int(i)},
                       {"revindex", Value::Int(length - i)},
                       {"revindex0", Value::Int(length - i - 1)},
                       {"first", Value::Bool(i == 0)},
                       {"last", Value::Bool(i == length - 1)},
                       {"length", Value::Int(length)},
                       {"previtem", i > 0 ? items[i - 1] : Value()},
                       {"nextitem", i + 1 < length ? items[i + 1] : Value()}}));
      scopes_.push_back(std::move(scope));
      const absl::Status s = Run(n.bodies[0]);
      scopes_.pop_back();
      RETURN_IF_ERROR(s);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Value> Eval(const Expr& e) {
    RETURN_IF_ERROR(Step(e.line));
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.literal;
      case Expr::Kind::kVar:
        return Lookup(e.name);
      case Expr::Kind::kAttr: {
        ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
        const Value* v = obj.Find(e.name);
        return v != nullptr ? *v : Value();
      }
      case Expr::Kind::kItem: {
        ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
        ASSIGN_OR_RETURN(Value key, Eval(*e.args[1]));
        return Item(obj, key, e.line);
      }
      case Expr::Kind::kSlice:
        return EvalSlice(e);
      case Expr::Kind::kCall:
        return Call(e);
      case Expr::Kind::kFilter:
        return Filter(e);
      case Expr::Kind::kTest: {
        ASSIGN_OR_RETURN(bool result, Test(e));
        return Value::Bool(result != e.negated);
      }
      case Expr::Kind::kUnary: {
        ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
        if (e.name == "not") return Value::Bool(!Truthy(v));
        if (!v.is_number()) {
          return Error(e.line, absl::StrCat("unary ", e.name, " of a ",
                                            KindName(v.kind)));
        }
        if (e.name == "+") return v;
        return v.kind == Value::Kind::kInt ? Value::Int(-v.i)
                                           : Value::Float(-v.f);
      }
      case Expr::Kind::kBinary:
        return EvalBinary(e);
      case Expr::Kind::kCond: {
        ASSIGN_OR_RETURN(Value c, Eval(*e.args[1]));
        if (Truthy(c)) return Eval(*e.args[0]);
        if (e.args[2] == nullptr) return Value();
        return Eval(*e.args[2]);
      }
      case Expr::Kind::kList: {
        List items;
        for (const auto& a : e.args) {
          ASSIGN_OR_RETURN(Value v, Eval(*a));
          items.push_back(std::move(v));
        }
        return Value::OfList(std::move(items));
      }
      case Expr::Kind::kDict: {
        Map entries;
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          ASSIGN_OR_RETURN(Value k, Eval(*e.args[i]));
          ASSIGN_OR_RETURN(Value v, Eval(*e.args[i + 1]));
          Assign(entries, Str(k), std::move(v));
        }
        return Value::OfMap(std::move(entries));
      }
    }
    return Value();
  }

  absl::StatusOr<Value> Item(const Value& obj, const Value& key, int line) {
    if (obj.kind == Value::Kind::kMap) {
      if (key.kind != Value::Kind::kString) return Value();
      const Value* v = obj.Find(key.s);
      return v != nullptr ? *v : Value();
    }
    if (obj.kind == Value::Kind::kList || obj.kind == Value::Kind::kString) {
      if (key.kind != Value::Kind::kInt) {
        return Error(line, "indices must be integers");
      }
      const int64_t size = obj.kind == Value::Kind::kList
                               ? static_cast<int64_t>(obj.list->size())
                               : static_cast<int64_t>(obj.s.size());
      const int64_t i = key.i < 0 ? key.i + size : key.i;
      if (i < 0 || i >= size) return Value();
      return obj.kind == Value::Kind::kList
                 ? (*obj.list)[i]
                 : Value::String(std::string(1, obj.s[i]));
    }
    return Value();
  }

  absl::StatusOr<Value> EvalSlice(const Expr& e) {
    ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
    int64_t size = 0;
    if (obj.kind == Value::Kind::kList) {
      size = static_cast<int64_t>(obj.list->size());
    } else if (obj.kind == Value::Kind::kString) {
      size = static_cast<int64_t>(obj.s.size());
    } else {
      return Error(e.line, absl::StrCat("cannot slice a ", KindName(obj.kind)));
    }
    auto bound = [&](const std::unique_ptr<Expr>& b,
                     int64_t fallback) -> absl::StatusOr<int64_t> {
      if (b == nullptr) return fallback;
      ASSIGN_OR_RETURN(Value v, Eval(*b));
      if (v.kind == Value::Kind::kNone) return fallback;
      if (v.kind != Value::Kind::kInt) {
        return Error(e.line, "slice bounds must be integers");
      }
      const int64_t x = v.i < 0 ? v.i + size : v.i;
      return std::clamp<int64_t>(x, 0, size);
    };
    ASSIGN_OR_RETURN(int64_t start, bound(e.args[1], 0));
    ASSIGN_OR_RETURN(int64_t stop, bound(e.args[2], size));
    stop = std::max(start, stop);
    if (obj.kind == Value::Kind::kString) {
      return Value::String(obj.s.substr(start, stop - start));
    }
    return Value::OfList(
        List(obj.list->begin() + start, obj.list->begin() + stop));
  }

  absl::StatusOr<Value> Arithmetic(const std::string& op, const Value& a,
                                   const Value& b, int line) {
    if (!a.is_number() || !b.is_number()) {
      return Error(line,
                   absl::StrCat("unsupported operands for ", op, ": ",
                                KindName(a.kind), " and ", KindName(b.kind)));
    }
    const bool ints =
        a.kind == Value::Kind::kInt && b.kind == Value::Kind::kInt;
    if (op == "/") {
      if (b.number() == 0) return Error(line, "division by zero");
      return Value::Float(a.number() / b.number());
    }
    if (op == "//" || op == "%") {
      if (b.number() == 0) return Error(line, "division by zero");
      if (ints) {
        int64_t q = a.i / b.i;
        if ((a.i % b.i != 0) && ((a.i < 0) != (b.i < 0))) --q;  // floor
        return op == "//" ? Value::Int(q) : Value::Int(a.i - q * b.i);
      }
      const double q = std::floor(a.number() / b.number());
      return op == "//" ? Value::Float(q)
                        : Value::Float(a.number() - q * b.number());
    }
    if (ints) {
      if (op == "+") return Value::Int(a.i + b.i);
      if (op == "-") return Value::Int(a.i - b.i);
      return Value::Int(a.i * b.i);
    }
    if (op == "+") return Value::Float(a.number() + b.number());
    if (op == "-") return Value::Float(a.number() - b.number());
    return Value::Float(a.number() * b.number());
  }

  absl::StatusOr<Value> EvalBinary(const Expr& e) {
    const std::string& op = e.name;
    ASSIGN_OR_RETURN(Value a, Eval(*e.args[0]));
    if (op == "and") return Truthy(a) ? Eval(*e.args[1]) : a;
    if (op == "or") return Truthy(a) ? a : Eval(*e.args[1]);
    ASSIGN_OR_RETURN(Value b, Eval(*e.args[1]));
    if (op == "~") return Value::String(Str(a) + Str(b));
    if (op == "==") return Value::Bool(Equal(a, b));
    if (op == "!=") return Value::Bool(!Equal(a, b));
    if (op == "in" || op == "not in") {
      bool found = false;
      if (b.kind == Value::Kind::kString && a.kind == Value::Kind::kString) {
        found = absl::StrContains(b.s, a.s);
      } else if (b.kind == Value::Kind::kList) {
        for (const Value& x : *b.list) found = found || Equal(a, x);
      } else if (b.kind == Value::Kind::kMap) {
        found = a.kind == Value::Kind::kString && b.Find(a.s) != nullptr;
      } else {
        return Error(e.line, absl::StrCat("'in' needs a string, list or dict, "
                                          "got a ",
                                          KindName(b.kind)));
      }
      return Value::Bool(found == (op == "in"));
    }
    if (op == "<" || op == "<=" || op == ">" || op == ">=") {
      int cmp = 0;
      if (a.is_number() && b.is_number()) {
        cmp = a.number() < b.number() ? -1 : (a.number() > b.number() ? 1 : 0);
      } else if (a.kind == Value::Kind::kString &&
                 b.kind == Value::Kind::kString) {
        cmp = a.s.compare(b.s);
      } else {
        return Error(e.line, absl::StrCat("cannot compare a ", KindName(a.kind),
                                          " with a ", KindName(b.kind)));
      }
      if (op == "<") return Value::Bool(cmp < 0);
      if (op == "<=") return Value::Bool(cmp <= 0);
      if (op == ">") return Value::Bool(cmp > 0);
      return Value::Bool(cmp >= 0);
    }
    if (op == "+") {
      if (a.kind == Value::Kind::kString && b.kind == Value::Kind::kString) {
        return Value::String(a.s + b.s);
      }
      if (a.kind == Value::Kind::kList && b.kind == Value::Kind::kList) {
        List items = *a.list;
        items.insert(items.end(), b.list->begin(), b.list->end());
        return Value::OfList(std::move(items));
      }
    }
    return Arithmetic(op, a, b, e.line);
  }

  // Positional and keyword arguments of a call, filter or test (after the
  // first, which is the callee or the value).
  struct Args {
    std::vector<Value> positional;
    Map keywords;
  };
  absl::StatusOr<Args> EvalArgs(const Expr& e) {
    Args args;
    for (size_t i = 1; i < e.args.size(); ++i) {
      ASSIGN_OR_RETURN(Value v, Eval(*e.args[i]));
      if (e.kwnames[i].empty()) {
        args.positional.push_back(std::move(v));
      } else {
        args.keywords.emplace_back(e.kwnames[i], std::move(v));
      }
    }
    return args;
  }

  absl::StatusOr<Value> StringArg(const Args& args, size_t i, int line,
                                  absl::string_view what) {
    if (i >= args.positional.size() ||
        args.positional[i].kind != Value::Kind::kString) {
      return Error(line, absl::StrCat(what, " needs a string argument"));
    }
    return args.positional[i];
  }

  absl::StatusOr<Value> Call(const Expr& e) {
    const Expr& callee = *e.args[0];
    ASSIGN_OR_RETURN(Args args, EvalArgs(e));
    if (callee.kind == Expr::Kind::kAttr) {
      ASSIGN_OR_RETURN(Value obj, Eval(*callee.args[0]));
      return Method(obj, callee.name, args, e.line);
    }
    ASSIGN_OR_RETURN(Value f, Eval(callee));
    if (f.kind != Value::Kind::kFunction) {
      return Error(e.line,
                   absl::StrCat("a ", KindName(f.kind), " is not callable"));
    }
    if (f.s == "raise_exception") {
      return Error(e.line, args.positional.empty()
                               ? "the template raised an error"
                               : Str(args.positional[0]));
    }
    if (f.s == "namespace") return Value::OfMap(args.keywords);
    if (f.s == "range") {
      int64_t start = 0, stop = 0, step = 1;
      std::vector<int64_t> v;
      for (const Value& a : args.positional) {
        if (a.kind != Value::Kind::kInt) {
          return Error(e.line, "range needs integers");
        }
        v.push_back(a.i);
      }
      if (v.size() == 1) {
        stop = v[0];
      } else if (v.size() >= 2) {
        start = v[0];
        stop = v[1];
        if (v.size() == 3) step = v[2];
      }
      if (step == 0) return Error(e.line, "range step 0");
      List items;
      for (int64_t x = start; step > 0 ? x < stop : x > stop; x += step) {
        if (static_cast<int64_t>(items.size()) >= kMaxRange) {
          return Error(e.line, "range too long");
        }
        items.push_back(Value::Int(x));
      }
      return Value::OfList(std::move(items));
    }
    return Error(e.line, absl::StrCat("unknown function ", f.s));
  }

  absl::StatusOr<Value> Method(const Value& obj, const std::string& name,
                               const Args& args, int line) {
    if (obj.kind == Value::Kind::kString) {
      const std::string& s = obj.s;
      auto chars = [&](size_t i) -> std::string {
        return i < args.positional.size() &&
                       args.positional[i].kind == Value::Kind::kString
                   ? args.positional[i].s
                   : std::string(" \t\n\r\f\v");
      };
      if (name == "strip" || name == "lstrip" || name == "rstrip") {
        const std::string set = chars(0);
        size_t b = 0, end = s.size();
        if (name != "rstrip") {
          while (b < end && set.find(s[b]) != std::string::npos) ++b;
        }
        if (name != "lstrip") {
          while (end > b && set.find(s[end - 1]) != std::string::npos) --end;
        }
        return Value::String(s.substr(b, end - b));
      }
      if (name == "upper") return Value::String(absl::AsciiStrToUpper(s));
      if (name == "lower") return Value::String(absl::AsciiStrToLower(s));
      if (name == "title" || name == "capitalize") {
        std::string t = absl::AsciiStrToLower(s);
        bool start = true;
        for (char& c : t) {
          if (start && absl::ascii_isalpha(c)) c = absl::ascii_toupper(c);
          start = name == "title" ? !absl::ascii_isalpha(c) : false;
        }
        return Value::String(t);
      }
      if (name == "startswith" || name == "endswith") {
        ASSIGN_OR_RETURN(Value p, StringArg(args, 0, line, name));
        return Value::Bool(name == "startswith" ? absl::StartsWith(s, p.s)
                                                : absl::EndsWith(s, p.s));
      }
      if (name == "replace") {
        ASSIGN_OR_RETURN(Value from, StringArg(args, 0, line, name));
        ASSIGN_OR_RETURN(Value to, StringArg(args, 1, line, name));
        if (from.s.empty()) return obj;
        return Value::String(absl::StrReplaceAll(s, {{from.s, to.s}}));
      }
      if (name == "split") {
        List parts;
        if (args.positional.empty()) {
          for (absl::string_view p : absl::StrSplit(
                   s, absl::ByAnyChar(" \t\n\r\f\v"), absl::SkipEmpty())) {
            parts.push_back(Value::String(std::string(p)));
          }
        } else {
          ASSIGN_OR_RETURN(Value sep, StringArg(args, 0, line, name));
          if (sep.s.empty()) return Error(line, "empty separator");
          for (absl::string_view p : absl::StrSplit(s, sep.s)) {
            parts.push_back(Value::String(std::string(p)));
          }
        }
        return Value::OfList(std::move(parts));
      }
    }
    if (obj.kind == Value::Kind::kMap) {
      if (name == "items" || name == "keys" || name == "values") {
        List out;
        for (const auto& [k, v] : *obj.map) {
          if (name == "items") {
            out.push_back(Value::OfList({Value::String(k), v}));
          } else {
            out.push_back(name == "keys" ? Value::String(k) : v);
          }
        }
        return Value::OfList(std::move(out));
      }
      if (name == "get") {
        ASSIGN_OR_RETURN(Value key, StringArg(args, 0, line, name));
        const Value* v = obj.Find(key.s);
        if (v != nullptr) return *v;
        return args.positional.size() > 1 ? args.positional[1] : Value::None();
      }
    }
    return Error(line, absl::StrCat("unsupported method ", name, "() of a ",
                                    KindName(obj.kind)));
  }

  absl::StatusOr<Value> Filter(const Expr& e) {
    ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
    ASSIGN_OR_RETURN(Args args, EvalArgs(e));
    const std::string& f = e.name;
    if (f == "trim") return Method(v, "strip", {}, e.line);
    if (f == "upper" || f == "lower" || f == "capitalize" || f == "title") {
      if (v.kind != Value::Kind::kString) v = Value::String(Str(v));
      return Method(v, f, {}, e.line);
    }
    if (f == "replace") return Method(v, "replace", args, e.line);
    if (f == "length" || f == "count") {
      switch (v.kind) {
        case Value::Kind::kString:
          return Value::Int(static_cast<int64_t>(v.s.size()));
        case Value::Kind::kList:
          return Value::Int(static_cast<int64_t>(v.list->size()));
        case Value::Kind::kMap:
          return Value::Int(static_cast<int64_t>(v.map->size()));
        default:
          return Error(e.line,
                       absl::StrCat("a ", KindName(v.kind), " has no length"));
      }
    }
    if (f == "default" || f == "d") {
      const bool boolean =
          args.positional.size() > 1 && Truthy(args.positional[1]);
      const bool use_default =
          v.kind == Value::Kind::kUndefined || (boolean && !Truthy(v));
      if (!use_default) return v;
      return args.positional.empty() ? Value::String("") : args.positional[0];
    }
    if (f == "string") return Value::String(Str(v));
    if (f == "int") {
      if (v.kind == Value::Kind::kInt) return v;
      if (v.kind == Value::Kind::kFloat) {
        return Value::Int(static_cast<int64_t>(v.f));
      }
      int64_t x = 0;
      if (v.kind == Value::Kind::kString &&
          absl::SimpleAtoi(absl::StripAsciiWhitespace(v.s), &x)) {
        return Value::Int(x);
      }
      return Value::Int(0);
    }
    if (f == "list") {
      if (v.kind == Value::Kind::kList) return v;
      if (v.kind == Value::Kind::kString) {
        List chars;
        for (char c : v.s) chars.push_back(Value::String(std::string(1, c)));
        return Value::OfList(std::move(chars));
      }
      return Error(e.line,
                   absl::StrCat("cannot make a list of a ", KindName(v.kind)));
    }
    if (f == "first" || f == "last") {
      if (v.kind == Value::Kind::kList) {
        if (v.list->empty()) return Value();
        return f == "first" ? v.list->front() : v.list->back();
      }
      if (v.kind == Value::Kind::kString) {
        if (v.s.empty()) return Value();
        return Value::String(
            std::string(1, f == "first" ? v.s.front() : v.s.back()));
      }
      return Error(
          e.line, absl::StrCat("a ", KindName(v.kind), " has no ", f, " item"));
    }
    if (f == "reverse") {
      if (v.kind == Value::Kind::kString) {
        return Value::String(std::string(v.s.rbegin(), v.s.rend()));
      }
      if (v.kind == Value::Kind::kList) {
        return Value::OfList(List(v.list->rbegin(), v.list->rend()));
      }
      return Error(e.line, absl::StrCat("cannot reverse a ", KindName(v.kind)));
    }
    if (f == "join") {
      if (v.kind != Value::Kind::kList) {
        return Error(e.line, absl::StrCat("cannot join a ", KindName(v.kind)));
      }
      const std::string sep =
          args.positional.empty() ? "" : Str(args.positional[0]);
      std::vector<std::string> parts;
      for (const Value& x : *v.list) parts.push_back(Str(x));
      return Value::String(absl::StrJoin(parts, sep));
    }
    if (f == "tojson") {
      int indent = -1;
      for (const auto& [k, x] : args.keywords) {
        if (k == "indent" && x.kind == Value::Kind::kInt) {
          indent = static_cast<int>(std::clamp<int64_t>(x.i, 0, 16));
        }
      }
      std::string json;
      AppendJson(v, indent, 0, &json);
      return Value::String(std::move(json));
    }
    if (f == "safe" || f == "e" || f == "escape") {
      if (f == "safe") return v;
      return Error(e.line, "HTML escaping is not supported");
    }
    return Error(e.line, absl::StrCat("unsupported filter \"", f, "\""));
  }

  absl::StatusOr<bool> Test(const Expr& e) {
    ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
    ASSIGN_OR_RETURN(Args args, EvalArgs(e));
    const std::string& t = e.name;
    using K = Value::Kind;
    if (t == "defined") return v.kind != K::kUndefined;
    if (t == "undefined") return v.kind == K::kUndefined;
    if (t == "none") return v.kind == K::kNone;
    if (t == "string") return v.kind == K::kString;
    if (t == "number") return v.is_number();
    if (t == "integer") return v.kind == K::kInt;
    if (t == "float") return v.kind == K::kFloat;
    if (t == "boolean") return v.kind == K::kBool;
    if (t == "true") return v.kind == K::kBool && v.b;
    if (t == "false") return v.kind == K::kBool && !v.b;
    if (t == "mapping") return v.kind == K::kMap;
    if (t == "sequence" || t == "iterable") {
      return v.kind == K::kList || v.kind == K::kString ||
             (t == "iterable" && v.kind == K::kMap);
    }
    if (t == "callable") return v.kind == K::kFunction;
    if (t == "odd" || t == "even") {
      if (v.kind != K::kInt) {
        return Error(e.line, absl::StrCat("'", t, "' needs an integer"));
      }
      return (v.i % 2 != 0) == (t == "odd");
    }
    if (t == "equalto" || t == "eq" || t == "sameas") {
      if (args.positional.empty()) return Error(e.line, "missing argument");
      return Equal(v, args.positional[0]);
    }
    return Error(e.line, absl::StrCat("unsupported test \"", t, "\""));
  }

  std::vector<Map> scopes_;
  std::string out_;
  int64_t steps_ = 0;
};

// A special token of tokenizer_config.json: a string, or an AddedToken
// object {"content": ...}.
std::string SpecialToken(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) {
      return content->get<std::string>();
    }
  }
  return "";
}

}  // namespace

struct ChatTemplate::Program {
  std::vector<Node> body;
};

ChatTemplate::ChatTemplate(std::unique_ptr<Program> program,
                           std::string bos_token, std::string eos_token)
    : program_(std::move(program)),
      bos_token_(std::move(bos_token)),
      eos_token_(std::move(eos_token)) {}

ChatTemplate::~ChatTemplate() = default;

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Create(
    const std::string& source, std::string bos_token, std::string eos_token) {
  ASSIGN_OR_RETURN(std::vector<Segment> segments, SplitTemplate(source));
  auto program = std::make_unique<Program>();
  ASSIGN_OR_RETURN(program->body, TemplateParser(std::move(segments)).Parse());
  return std::unique_ptr<ChatTemplate>(new ChatTemplate(
      std::move(program), std::move(bos_token), std::move(eos_token)));
}

absl::StatusOr<std::string> ChatTemplate::Render(
    absl::Span<const ChatMessage> messages, bool add_generation_prompt) const {
  List list;
  list.reserve(messages.size());
  for (const ChatMessage& m : messages) {
    list.push_back(Value::OfMap({{"role", Value::String(m.role)},
                                 {"content", Value::String(m.content)}}));
  }
  Map globals = {
      {"messages", Value::OfList(std::move(list))},
      {"add_generation_prompt", Value::Bool(add_generation_prompt)},
      {"bos_token", Value::String(bos_token_)},
      {"eos_token", Value::String(eos_token_)},
      {"raise_exception", Value::Function("raise_exception")},
      {"namespace", Value::Function("namespace")},
      {"range", Value::Function("range")},
  };
  Evaluator evaluator(std::move(globals));
  RETURN_IF_ERROR(evaluator.Run(program_->body));
  return evaluator.TakeOutput();
}

absl::StatusOr<std::unique_ptr<ChatTemplate>> LoadChatTemplate(
    const std::string& model_dir, const std::string& override_template) {
  const std::filesystem::path config_path =
      std::filesystem::path(model_dir) / "tokenizer_config.json";
  nlohmann::json config = nlohmann::json::object();
  if (std::filesystem::exists(config_path)) {
    std::ifstream in(config_path);
    config = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(config_path.string(), ": not a JSON object"));
    }
  }
  std::string source;
  std::string origin;
  if (!override_template.empty()) {
    if (absl::StrContains(override_template, "{{") ||
        absl::StrContains(override_template, "{%")) {
      source = override_template;
      origin = "--chat_template";
    } else {
      std::ifstream in(override_template, std::ios::binary);
      if (!in) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--chat_template: cannot read \"", override_template, "\""));
      }
      std::stringstream buffer;
      buffer << in.rdbuf();
      source = buffer.str();
      origin = override_template;
    }
  } else {
    auto it = config.find("chat_template");
    if (it == config.end() || it->is_null()) return nullptr;
    origin = config_path.string();
    if (it->is_string()) {
      source = it->get<std::string>();
    } else if (it->is_array()) {
      for (const nlohmann::json& entry : *it) {
        if (entry.is_object() && entry.value("name", "") == "default" &&
            entry.contains("template") && entry["template"].is_string()) {
          source = entry["template"].get<std::string>();
        }
      }
      if (source.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            origin, ": chat_template has no template named \"default\""));
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": chat_template is neither text nor a list"));
    }
  }
  absl::StatusOr<std::unique_ptr<ChatTemplate>> made =
      ChatTemplate::Create(source, SpecialToken(config, "bos_token"),
                           SpecialToken(config, "eos_token"));
  if (!made.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": ", made.status().message()));
  }
  return made;
}

}  // namespace alibi::frontend
