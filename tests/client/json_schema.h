// A JSON Schema (draft 2020-12) checker for the subset of keywords
// client/bench_report.schema.json uses, so the tests can validate alibi-bench's
// reports without another dependency:
//
//   type (string or list), enum, const, properties, required,
//   additionalProperties (bool or schema), propertyNames, items, minimum,
//   maximum, exclusiveMinimum, exclusiveMaximum, anyOf, $ref ("#/$defs/x").
//
// Annotations ($schema, $id, $defs, $comment, title, description) are
// ignored. Any other keyword is reported as an error, so the schema cannot
// rely on a rule this checker would silently skip.
//
// Thread-safety: a pure function.
#ifndef ALIBI_TESTS_CLIENT_JSON_SCHEMA_H_
#define ALIBI_TESTS_CLIENT_JSON_SCHEMA_H_

#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace alibi::client::testing {

// The violations of `schema` by `instance`, each as "<json pointer>: what";
// empty when the instance is valid.
std::vector<std::string> ValidateJson(const nlohmann::json& schema,
                                      const nlohmann::json& instance);

}  // namespace alibi::client::testing

#endif  // ALIBI_TESTS_CLIENT_JSON_SCHEMA_H_
