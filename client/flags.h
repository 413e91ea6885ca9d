// A small command-line flag parser for alibi-cli and alibi-bench.
//
// Why not Abseil flags: those are process-global and exit on a bad flag; the
// tools need one flag set per subcommand, errors as absl::Status (exit code 2,
// tested) and positional arguments anywhere on the line.
//
// Accepted syntax:
//   --name=value  --name value   (also with a single dash: -name)
//   --flag  --flag=true|false  --noflag        (boolean flags only)
//   --stop a --stop b            (repeatable: list flags append)
//   --token_ids 1,2,3            (numeric lists also split on commas)
//   --                           (everything after it is positional)
// Anything else that does not start with '-' is a positional argument, so
// `alibi-cli complete "Hello" --max_tokens 8` and
// `alibi-cli --max_tokens 8 complete "Hello"` both work.
//
//   FlagSet flags;
//   int32_t max_tokens = 16;
//   std::optional<float> top_p;
//   flags.Add("max_tokens", &max_tokens, "tokens to generate");
//   flags.Add("top_p", &top_p, "nucleus sampling");
//   std::vector<std::string> positional;
//   absl::Status s = flags.Parse(args, &positional);
//
// Thread-safety: none; a FlagSet and its targets belong to one thread.
#ifndef ALIBI_CLIENT_FLAGS_H_
#define ALIBI_CLIENT_FLAGS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace alibi::client {

// Parsers of one flag value. INVALID_ARGUMENT (without the flag's name) on
// text that is not a value of the type.
absl::Status ParseFlagValue(absl::string_view text, bool* out);
absl::Status ParseFlagValue(absl::string_view text, int32_t* out);
absl::Status ParseFlagValue(absl::string_view text, int64_t* out);
absl::Status ParseFlagValue(absl::string_view text, uint64_t* out);
absl::Status ParseFlagValue(absl::string_view text, float* out);
absl::Status ParseFlagValue(absl::string_view text, double* out);
absl::Status ParseFlagValue(absl::string_view text, std::string* out);
// Appends one string (no comma splitting: stop strings may contain commas).
absl::Status ParseFlagValue(absl::string_view text,
                            std::vector<std::string>* out);
// Appends comma-separated integers ("1,2, 3"); empty items are errors.
absl::Status ParseFlagValue(absl::string_view text, std::vector<int32_t>* out);

template <typename T>
absl::Status ParseFlagValue(absl::string_view text, std::optional<T>* out) {
  T value{};
  absl::Status status = ParseFlagValue(text, &value);
  if (status.ok()) *out = std::move(value);
  return status;
}

namespace flags_internal {
template <typename T>
struct IsBool : std::is_same<T, bool> {};
template <>
struct IsBool<std::optional<bool>> : std::true_type {};

template <typename T>
struct IsList : std::false_type {};
template <typename T>
struct IsList<std::vector<T>> : std::true_type {};

template <typename T>
const char* TypeName() {
  if constexpr (IsBool<T>::value) {
    return "";
  } else if constexpr (std::is_same_v<T, std::string> ||
                       std::is_same_v<T, std::optional<std::string>> ||
                       std::is_same_v<T, std::vector<std::string>>) {
    return "<string>";
  } else if constexpr (std::is_same_v<T, std::vector<int32_t>>) {
    return "<ids>";
  } else if constexpr (std::is_same_v<T, float> ||
                       std::is_same_v<T, std::optional<float>> ||
                       std::is_same_v<T, double> ||
                       std::is_same_v<T, std::optional<double>>) {
    return "<number>";
  } else {
    return "<int>";
  }
}
}  // namespace flags_internal

class FlagSet {
 public:
  // Registers --name writing into *target (which must outlive Parse). The
  // target's current value is the default. Bool targets take no value.
  template <typename T>
  void Add(std::string name, T* target, std::string help) {
    Flag flag;
    flag.name = std::move(name);
    flag.help = std::move(help);
    flag.type = flags_internal::TypeName<T>();
    flag.is_bool = flags_internal::IsBool<T>::value;
    flag.repeatable = flags_internal::IsList<T>::value;
    flag.set = [target](absl::string_view text) {
      return ParseFlagValue(text, target);
    };
    flags_.push_back(std::move(flag));
  }

  // Parses `args` (without the program name). Positional arguments go to
  // *positional in order. INVALID_ARGUMENT naming the flag on an unknown
  // flag, a missing or malformed value, or a non-list flag given twice.
  absl::Status Parse(absl::Span<const std::string> args,
                     std::vector<std::string>* positional);

  // Whether --name appeared on the command line.
  bool IsSet(absl::string_view name) const;
  // The names of the flags that appeared, in registration order.
  std::vector<std::string> SetFlags() const;

  // One line per flag: "  --name <type>  help", wrapped to the flag column,
  // in registration order; only the flags in `names` when it is not empty.
  std::string Help(absl::Span<const std::string> names = {}) const;

 private:
  struct Flag {
    std::string name;
    std::string help;
    const char* type = "";
    bool is_bool = false;
    bool repeatable = false;
    bool seen = false;
    std::function<absl::Status(absl::string_view)> set;
  };
  Flag* Find(absl::string_view name);

  std::vector<Flag> flags_;
};

}  // namespace alibi::client

#endif  // ALIBI_CLIENT_FLAGS_H_
