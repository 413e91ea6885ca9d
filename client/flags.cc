#include "client/flags.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace alibi::client {
namespace {

absl::Status Expected(absl::string_view what, absl::string_view text) {
  return absl::InvalidArgumentError(
      absl::StrCat("expected ", what, ", got \"", text, "\""));
}

template <typename Int>
absl::Status ParseInt(absl::string_view text, Int* out,
                      absl::string_view what) {
  Int value;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &value)) {
    return Expected(what, text);
  }
  *out = value;
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseFlagValue(absl::string_view text, bool* out) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "true" || lower == "1" || lower == "yes") {
    *out = true;
  } else if (lower == "false" || lower == "0" || lower == "no") {
    *out = false;
  } else {
    return Expected("true or false", text);
  }
  return absl::OkStatus();
}

absl::Status ParseFlagValue(absl::string_view text, int32_t* out) {
  return ParseInt(text, out, "an integer");
}

absl::Status ParseFlagValue(absl::string_view text, int64_t* out) {
  return ParseInt(text, out, "an integer");
}

absl::Status ParseFlagValue(absl::string_view text, uint64_t* out) {
  return ParseInt(text, out, "a non-negative integer");
}

absl::Status ParseFlagValue(absl::string_view text, float* out) {
  double value;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(text), &value)) {
    return Expected("a number", text);
  }
  *out = static_cast<float>(value);
  return absl::OkStatus();
}

absl::Status ParseFlagValue(absl::string_view text, double* out) {
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(text), out)) {
    return Expected("a number", text);
  }
  return absl::OkStatus();
}

absl::Status ParseFlagValue(absl::string_view text, std::string* out) {
  *out = std::string(text);
  return absl::OkStatus();
}

absl::Status ParseFlagValue(absl::string_view text,
                            std::vector<std::string>* out) {
  out->emplace_back(text);
  return absl::OkStatus();
}

absl::Status ParseFlagValue(absl::string_view text, std::vector<int32_t>* out) {
  std::vector<int32_t> values;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    int32_t value;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(item), &value)) {
      return Expected("comma-separated integers", text);
    }
    values.push_back(value);
  }
  out->insert(out->end(), values.begin(), values.end());
  return absl::OkStatus();
}

FlagSet::Flag* FlagSet::Find(absl::string_view name) {
  for (Flag& flag : flags_) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

absl::Status FlagSet::Parse(absl::Span<const std::string> args,
                            std::vector<std::string>* positional) {
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--") {
      positional->insert(positional->end(), args.begin() + i + 1, args.end());
      return absl::OkStatus();
    }
    // "-" alone and negative numbers ("-3") are positional.
    if (arg.size() < 2 || arg[0] != '-' ||
        absl::ascii_isdigit(static_cast<unsigned char>(arg[1]))) {
      positional->emplace_back(arg);
      continue;
    }
    absl::string_view body = arg;
    if (!absl::ConsumePrefix(&body, "--")) absl::ConsumePrefix(&body, "-");
    absl::string_view name = body;
    std::optional<absl::string_view> value;
    if (size_t eq = body.find('='); eq != absl::string_view::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
    }
    Flag* flag = Find(name);
    bool negated = false;
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      flag = Find(name.substr(2));
      if (flag != nullptr && !flag->is_bool) flag = nullptr;
      negated = flag != nullptr;
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (flag->seen && !flag->repeatable) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", flag->name, " given more than once"));
    }
    std::string text;
    if (flag->is_bool) {
      if (negated && value.has_value()) {
        return absl::InvalidArgumentError(
            absl::StrCat("flag --no", flag->name, " takes no value"));
      }
      text = negated ? "false" : std::string(value.value_or("true"));
    } else if (value.has_value()) {
      text = std::string(*value);
    } else if (i + 1 < args.size()) {
      text = args[++i];
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", flag->name, " needs a value"));
    }
    if (absl::Status status = flag->set(text); !status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", flag->name, ": ", status.message()));
    }
    flag->seen = true;
  }
  return absl::OkStatus();
}

bool FlagSet::IsSet(absl::string_view name) const {
  for (const Flag& flag : flags_) {
    if (flag.name == name) return flag.seen;
  }
  return false;
}

std::vector<std::string> FlagSet::SetFlags() const {
  std::vector<std::string> names;
  for (const Flag& flag : flags_) {
    if (flag.seen) names.push_back(flag.name);
  }
  return names;
}

std::string FlagSet::Help(absl::Span<const std::string> names) const {
  constexpr size_t kColumn = 34;
  std::string out;
  for (const Flag& flag : flags_) {
    if (!names.empty() &&
        std::find(names.begin(), names.end(), flag.name) == names.end()) {
      continue;
    }
    std::string head = absl::StrCat("  --", flag.name);
    if (*flag.type != '\0') absl::StrAppend(&head, " ", flag.type);
    if (head.size() + 2 > kColumn) {
      absl::StrAppend(&out, head, "\n", std::string(kColumn, ' '));
    } else {
      absl::StrAppend(&out, head, std::string(kColumn - head.size(), ' '));
    }
    absl::StrAppend(&out, flag.help, "\n");
  }
  return out;
}

}  // namespace alibi::client
