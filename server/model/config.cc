#include "server/model/config.h"

#include <cmath>
#include <cstdint>
#include <exception>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "server/model/architecture.h"
#include "server/model/config_json.h"

namespace alibi::model {
namespace {

// A config.json larger than this is not a config.
constexpr std::streamoff kMaxConfigBytes = 16 << 20;

// Which architecture: architectures[0] if present, else model_type.
absl::StatusOr<const ArchitectureSpec*> DetectArchitecture(
    const ConfigObject& root) {
  auto listed = [](auto member) {
    std::vector<std::string> names;
    for (const ArchitectureSpec* spec : Architectures()) {
      names.push_back(member(*spec));
    }
    return absl::StrJoin(names, ", ");
  };
  const ArchitectureSpec* from_type = nullptr;
  ASSIGN_OR_RETURN(std::optional<std::string> model_type,
                   root.OptString("model_type"));
  if (model_type.has_value()) {
    for (const ArchitectureSpec* spec : Architectures()) {
      for (const std::string& t : spec->model_types) {
        if (*model_type == t) from_type = spec;
      }
    }
  }
  if (const nlohmann::json* archs = root.Find("architectures");
      archs != nullptr) {
    if (!archs->is_array()) {
      return ConfigError(absl::StrCat("architectures must be a list, got ",
                                      archs->type_name()));
    }
    if (!archs->empty()) {
      const nlohmann::json& first = (*archs)[0];
      if (!first.is_string()) {
        return ConfigError(
            absl::StrCat("architectures[0] must be a string, got ",
                         ConfigObject::Dump(first)));
      }
      const std::string name = first.get<std::string>();
      const ArchitectureSpec* from_name = nullptr;
      for (const ArchitectureSpec* spec : Architectures()) {
        for (const std::string& n : spec->class_names) {
          if (name == n) from_name = spec;
        }
      }
      if (from_name == nullptr) {
        return ConfigError(absl::StrCat(
            "architectures[0] \"", name, "\" is not supported (",
            listed([](const ArchitectureSpec& a) { return a.class_names[0]; }),
            ")"));
      }
      if (from_type != nullptr && from_type != from_name) {
        return ConfigError(absl::StrCat("architectures[0] \"", name,
                                        "\" contradicts model_type \"",
                                        *model_type, "\""));
      }
      return from_name;
    }
  }
  if (from_type != nullptr) return from_type;
  if (model_type.has_value()) {
    return ConfigError(absl::StrCat(
        "model_type \"", *model_type, "\" is not supported (",
        listed([](const ArchitectureSpec& a) { return a.model_types[0]; }),
        ")"));
  }
  return ConfigError(
      "neither architectures nor model_type says which model this is");
}

absl::StatusOr<ModelConfig> ParseModelConfigImpl(absl::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(),
                                           /*cb=*/nullptr,
                                           /*allow_exceptions=*/false);
  if (j.is_discarded()) return ConfigError("not valid JSON");
  if (!j.is_object()) {
    return ConfigError(
        absl::StrCat("must be a JSON object, got ", j.type_name()));
  }
  ConfigObject root(&j, "");
  ModelConfig config;
  ASSIGN_OR_RETURN(const ArchitectureSpec* spec, DetectArchitecture(root));
  config.family = spec->family;
  config.architecture_name = spec->class_names.front();
  RETURN_IF_ERROR(spec->parse_config(root, config));
  return config;
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text) {
  // The parser runs without exceptions and every access is type-checked
  // first; this catch is the last guard that keeps the library exception-free.
  try {
    return ParseModelConfigImpl(json_text);
  } catch (const std::exception& e) {
    return ConfigError(absl::StrCat("malformed: ", e.what()));
  }
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0 || size > kMaxConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot read or too large (", size, " bytes)"));
  }
  in.seekg(0, std::ios::beg);
  std::string text(static_cast<size_t>(size), '\0');
  if (!in.read(text.data(), size)) {
    return absl::DataLossError(absl::StrCat("cannot read ", path));
  }
  absl::StatusOr<ModelConfig> config = ParseModelConfig(text);
  if (!config.ok()) {
    return Annotate(config.status(), absl::StrCat(model_dir, "/"));
  }
  return config;
}

std::vector<double> AlibiSlopes(int num_heads, double max_bias) {
  std::vector<double> slopes;
  if (num_heads <= 0) return slopes;
  slopes.reserve(static_cast<size_t>(num_heads));
  int p = 1;
  while (p * 2 <= num_heads) p *= 2;
  for (int h = 0; h < p; ++h) {
    slopes.push_back(std::exp2(-max_bias * (h + 1) / p));
  }
  for (int k = 0; k < num_heads - p; ++k) {
    slopes.push_back(std::exp2(-max_bias * (2 * k + 1) / (2.0 * p)));
  }
  return slopes;
}

}  // namespace alibi::model
