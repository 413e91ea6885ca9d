#include "tests/client/json_schema.h"

#include <cmath>
#include <set>
#include <string>

namespace alibi::client::testing {
namespace {

using nlohmann::json;

class Validator {
 public:
  explicit Validator(const json& root) : root_(root) {}

  void Check(const json& schema, const json& value, const std::string& path) {
    if (schema.is_boolean()) {
      if (!schema.get<bool>()) Error(path, "no value is allowed here");
      return;
    }
    if (!schema.is_object()) {
      Error(path, "schema is not an object");
      return;
    }
    static const std::set<std::string> kAnnotations = {
        "$schema", "$id", "$defs", "$comment", "title", "description"};
    static const std::set<std::string> kKeywords = {"type",
                                                    "enum",
                                                    "const",
                                                    "properties",
                                                    "required",
                                                    "items",
                                                    "additionalProperties",
                                                    "propertyNames",
                                                    "minimum",
                                                    "maximum",
                                                    "exclusiveMinimum",
                                                    "exclusiveMaximum",
                                                    "anyOf",
                                                    "$ref"};
    for (const auto& [key, unused] : schema.items()) {
      if (!kAnnotations.count(key) && !kKeywords.count(key)) {
        Error(path, "unsupported schema keyword \"" + key + "\"");
      }
    }
    if (auto it = schema.find("$ref"); it != schema.end()) {
      const std::string ref = it->get<std::string>();
      const std::string prefix = "#/$defs/";
      const std::string name =
          ref.rfind(prefix, 0) == 0 ? ref.substr(prefix.size()) : "";
      if (name.empty() || !root_.contains("$defs") ||
          !root_.at("$defs").contains(name)) {
        Error(path, "unresolvable $ref " + ref);
      } else {
        Check(root_.at("$defs").at(name), value, path);
      }
    }
    if (auto it = schema.find("type"); it != schema.end()) {
      bool match = false;
      if (it->is_string()) {
        match = HasType(value, it->get<std::string>());
      } else {
        for (const json& t : *it) match = match || HasType(value, t);
      }
      if (!match) {
        Error(path, "type " + std::string(value.type_name()) + " is not " +
                        it->dump());
        return;
      }
    }
    if (auto it = schema.find("const"); it != schema.end() && value != *it) {
      Error(path, value.dump() + " is not " + it->dump());
    }
    if (auto it = schema.find("enum"); it != schema.end()) {
      bool found = false;
      for (const json& option : *it) found = found || option == value;
      if (!found) Error(path, value.dump() + " is not one of " + it->dump());
    }
    if (auto it = schema.find("anyOf"); it != schema.end()) {
      bool any = false;
      for (const json& option : *it) {
        Validator sub(root_);
        sub.Check(option, value, path);
        any = any || sub.errors_.empty();
      }
      if (!any) Error(path, value.dump() + " matches no anyOf option");
    }
    if (value.is_number()) CheckNumber(schema, value.get<double>(), path);
    if (value.is_object()) CheckObject(schema, value, path);
    if (value.is_array()) {
      if (auto it = schema.find("items"); it != schema.end()) {
        for (size_t i = 0; i < value.size(); ++i) {
          Check(*it, value[i], path + "/" + std::to_string(i));
        }
      }
    }
  }

  std::vector<std::string> TakeErrors() { return std::move(errors_); }

 private:
  static bool HasType(const json& value, const std::string& type) {
    if (type == "null") return value.is_null();
    if (type == "boolean") return value.is_boolean();
    if (type == "string") return value.is_string();
    if (type == "object") return value.is_object();
    if (type == "array") return value.is_array();
    if (type == "number") return value.is_number();
    if (type == "integer") {
      if (value.is_number_integer()) return true;
      if (!value.is_number_float()) return false;
      const double d = value.get<double>();
      return std::isfinite(d) && std::floor(d) == d;
    }
    return false;
  }

  void CheckNumber(const json& schema, double v, const std::string& path) {
    auto bound = [&](const char* key, auto ok, const char* what) {
      if (auto it = schema.find(key); it != schema.end()) {
        if (!ok(v, it->template get<double>())) {
          Error(path, std::to_string(v) + " is not " + what + " " + it->dump());
        }
      }
    };
    bound(
        "minimum", [](double x, double b) { return x >= b; }, ">=");
    bound(
        "maximum", [](double x, double b) { return x <= b; }, "<=");
    bound(
        "exclusiveMinimum", [](double x, double b) { return x > b; }, ">");
    bound(
        "exclusiveMaximum", [](double x, double b) { return x < b; }, "<");
  }

  void CheckObject(const json& schema, const json& value,
                   const std::string& path) {
    if (auto it = schema.find("required"); it != schema.end()) {
      for (const json& name : *it) {
        if (!value.contains(name.get<std::string>())) {
          Error(path, "missing required property " + name.dump());
        }
      }
    }
    const json* properties = nullptr;
    if (auto it = schema.find("properties"); it != schema.end()) {
      properties = &*it;
    }
    for (const auto& [key, member] : value.items()) {
      const std::string member_path = path + "/" + key;
      if (auto it = schema.find("propertyNames"); it != schema.end()) {
        Check(*it, json(key), member_path);
      }
      if (properties != nullptr && properties->contains(key)) {
        Check(properties->at(key), member, member_path);
      } else if (auto it = schema.find("additionalProperties");
                 it != schema.end()) {
        if (it->is_boolean() && !it->get<bool>()) {
          Error(member_path, "property not allowed");
        } else {
          Check(*it, member, member_path);
        }
      }
    }
  }

  void Error(const std::string& path, const std::string& what) {
    errors_.push_back((path.empty() ? "/" : path) + ": " + what);
  }

  const json& root_;
  std::vector<std::string> errors_;
};

}  // namespace

std::vector<std::string> ValidateJson(const json& schema,
                                      const json& instance) {
  Validator validator(schema);
  validator.Check(schema, instance, "");
  return validator.TakeErrors();
}

}  // namespace alibi::client::testing
