// Internal to alibi_model: reading config.json with errors that name the key
// ("config.json: attn_config.alibi is false: ..."), shared by the generic
// parser (config.cc) and the per-architecture parsers (arch/*.cc).
//
// Thread-safety: a ConfigObject is a view used by one thread.
#ifndef ALIBI_SERVER_MODEL_CONFIG_JSON_H_
#define ALIBI_SERVER_MODEL_CONFIG_JSON_H_

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "server/model/config.h"

namespace alibi::model {

// Upper bounds that keep every derived size (vocab * hidden, 3 * hidden, ...)
// far from overflowing while admitting any real model.
inline constexpr int64_t kMaxHidden = 1 << 20;
inline constexpr int64_t kMaxHeads = 1 << 16;
inline constexpr int64_t kMaxLayers = 1 << 14;
inline constexpr int64_t kMaxVocab = 1 << 24;
inline constexpr int64_t kMaxFfn = 1 << 24;
inline constexpr int64_t kMaxSeqLen = int64_t{1} << 30;
inline constexpr int64_t kMaxTokenId = std::numeric_limits<int32_t>::max();

// INVALID_ARGUMENT "config.json: <message>".
absl::Status ConfigError(absl::string_view message);

// A JSON object of config.json with the dotted path of its keys, so errors
// name "attn_config.alibi" rather than "alibi".
class ConfigObject {
 public:
  ConfigObject(const nlohmann::json* j, std::string prefix)
      : j_(j), prefix_(std::move(prefix)) {}

  std::string Key(absl::string_view key) const {
    return absl::StrCat(prefix_, key);
  }

  // The value at `key`; nullptr when absent or null (null means "default"
  // in Hugging Face configs).
  const nlohmann::json* Find(absl::string_view key) const {
    auto it = j_->find(std::string(key));
    if (it == j_->end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool Has(absl::string_view key) const { return Find(key) != nullptr; }

  absl::StatusOr<std::optional<int64_t>> OptInt(absl::string_view key,
                                                int64_t min,
                                                int64_t max) const {
    const nlohmann::json* v = Find(key);
    if (v == nullptr) return std::optional<int64_t>();
    int64_t value = 0;
    if (v->is_number_unsigned()) {
      uint64_t u = v->get<uint64_t>();
      if (u > static_cast<uint64_t>(max)) return OutOfRange(key, *v, min, max);
      value = static_cast<int64_t>(u);
    } else if (v->is_number_integer()) {
      value = v->get<int64_t>();
    } else {
      return TypeError(key, "an integer", *v);
    }
    if (value < min || value > max) return OutOfRange(key, *v, min, max);
    return std::optional<int64_t>(value);
  }

  absl::StatusOr<std::optional<double>> OptNumber(absl::string_view key,
                                                  double min,
                                                  double max) const {
    const nlohmann::json* v = Find(key);
    if (v == nullptr) return std::optional<double>();
    if (!v->is_number()) return TypeError(key, "a number", *v);
    double value = v->get<double>();
    if (!std::isfinite(value) || value < min || value > max) {
      return ConfigError(absl::StrCat(Key(key), " is ", Dump(*v),
                                      ": must be between ", min, " and ", max));
    }
    return std::optional<double>(value);
  }

  absl::StatusOr<std::optional<bool>> OptBool(absl::string_view key) const {
    const nlohmann::json* v = Find(key);
    if (v == nullptr) return std::optional<bool>();
    if (!v->is_boolean()) return TypeError(key, "true or false", *v);
    return std::optional<bool>(v->get<bool>());
  }

  absl::StatusOr<std::optional<std::string>> OptString(
      absl::string_view key) const {
    const nlohmann::json* v = Find(key);
    if (v == nullptr) return std::optional<std::string>();
    if (!v->is_string()) return TypeError(key, "a string", *v);
    return std::optional<std::string>(v->get<std::string>());
  }

  // A nested object; absent or null gives an empty object.
  absl::StatusOr<ConfigObject> SubObject(absl::string_view key) const {
    const nlohmann::json* v = Find(key);
    if (v == nullptr) return ConfigObject(&EmptyObject(), Key(key) + ".");
    if (!v->is_object()) return TypeError(key, "an object", *v);
    return ConfigObject(v, Key(key) + ".");
  }

  // The first present key of `keys` (aliases); both present with different
  // values is an error.
  absl::StatusOr<std::optional<int64_t>> OptIntAlias(
      const std::vector<absl::string_view>& keys, int64_t min,
      int64_t max) const {
    std::optional<int64_t> result;
    absl::string_view result_key;
    for (absl::string_view key : keys) {
      ASSIGN_OR_RETURN(std::optional<int64_t> v, OptInt(key, min, max));
      if (!v.has_value()) continue;
      if (result.has_value() && *result != *v) {
        return ConfigError(absl::StrCat(Key(result_key), " (", *result,
                                        ") and ", Key(key), " (", *v,
                                        ") disagree"));
      }
      result = v;
      result_key = key;
    }
    return result;
  }

  absl::StatusOr<int64_t> RequiredIntAlias(
      const std::vector<absl::string_view>& keys, int64_t min,
      int64_t max) const {
    ASSIGN_OR_RETURN(std::optional<int64_t> v, OptIntAlias(keys, min, max));
    if (!v.has_value()) {
      std::vector<std::string> names;
      for (absl::string_view k : keys) names.push_back(Key(k));
      return ConfigError(
          absl::StrCat("missing required key ", absl::StrJoin(names, " or ")));
    }
    return *v;
  }

  static std::string Dump(const nlohmann::json& v) {
    std::string s =
        v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (s.size() > 64) s = s.substr(0, 61) + "...";
    return s;
  }

 private:
  static const nlohmann::json& EmptyObject() {
    static const nlohmann::json* const kEmpty =
        new nlohmann::json(nlohmann::json::object());
    return *kEmpty;
  }

  absl::Status TypeError(absl::string_view key, absl::string_view expected,
                         const nlohmann::json& v) const {
    return ConfigError(absl::StrCat(Key(key), " must be ", expected, ", got ",
                                    v.type_name(), " ", Dump(v)));
  }
  absl::Status OutOfRange(absl::string_view key, const nlohmann::json& v,
                          int64_t min, int64_t max) const {
    return ConfigError(absl::StrCat(Key(key), " is ", Dump(v),
                                    ": must be between ", min, " and ", max));
  }

  const nlohmann::json* j_;
  std::string prefix_;
};

// The keys every architecture shares: torch_dtype (or dtype),
// tie_word_embeddings, bos/eos/pad token ids (eos may be a list).
absl::Status ParseCommonKeys(const ConfigObject& root, ModelConfig& config);

// head_dim (hidden / heads, which must divide) and the default softmax scale;
// the key names are for the error message.
absl::Status FinishShapes(const ConfigObject& root,
                          absl::string_view hidden_key,
                          absl::string_view heads_key, ModelConfig& config);

// An error when boolean `key` is true ("<key> is true: <why>").
absl::Status RefuseIfTrue(const ConfigObject& obj, absl::string_view key,
                          absl::string_view why);

}  // namespace alibi::model

#endif  // ALIBI_SERVER_MODEL_CONFIG_JSON_H_
