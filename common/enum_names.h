// Names of the values of a dense enum (0, 1, ... in declaration order) from a
// table, instead of one switch per enum:
//
//   constexpr const char* kNames[] = {"waiting", "running", "preempted"};
//   static_assert(std::size(kNames) == EnumCount(RequestState::kPreempted));
//   return EnumName(state, kNames, "unknown");
//
// Thread-safety: pure functions.
#ifndef ALIBI_COMMON_ENUM_NAMES_H_
#define ALIBI_COMMON_ENUM_NAMES_H_

#include <cstddef>
#include <optional>
#include <type_traits>

namespace alibi {

// The number of values of a dense enum whose last value is `last`.
template <typename Enum>
constexpr size_t EnumCount(Enum last) {
  return static_cast<size_t>(last) + 1;
}

// names[value], or `unknown` for a value outside the table (a corrupted or
// newer value).
template <typename Enum, typename Name, size_t N>
constexpr Name EnumName(Enum value, const Name (&names)[N], Name unknown) {
  static_assert(std::is_enum_v<Enum>);
  // A negative value becomes a large one: out of the table.
  const auto i =
      static_cast<std::make_unsigned_t<std::underlying_type_t<Enum>>>(value);
  return i < N ? names[i] : unknown;
}

// The value whose table entry equals `name`, or nullopt.
template <typename Enum, typename Name, size_t N, typename Text>
constexpr std::optional<Enum> EnumFromName(const Text& name,
                                           const Name (&names)[N]) {
  for (size_t i = 0; i < N; ++i) {
    if (name == names[i]) return static_cast<Enum>(i);
  }
  return std::nullopt;
}

}  // namespace alibi

#endif  // ALIBI_COMMON_ENUM_NAMES_H_
