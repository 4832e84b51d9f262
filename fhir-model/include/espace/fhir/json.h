// FHIR JSON (hl7.org/fhir/R4/json.html) <-> Node, with RapidJSON.
#pragma once

#include <string>
#include <string_view>

#include "espace/fhir/definitions.h"
#include "espace/fhir/node.h"
#include "espace/fhir/status.h"

namespace espace::fhir {

struct ParseLimits {
  size_t max_bytes = 64u << 20;  // refuse larger documents outright
  int max_depth = 64;            // nesting of objects/arrays
};

// Parses one resource. Checks: well-formed JSON (error with line/column),
// `resourceType` present and known, every property a known element of its
// type (error names the FHIRPath location), arrays exactly where the
// definition repeats, JSON value kinds matching primitive types (numbers for
// integer/decimal, booleans for boolean, strings otherwise), `_x` primitive
// extension objects paired with their values, no empty objects/arrays/strings.
// Decimals keep their exact text. On error *out is unspecified.
Status parse_json(const Definitions& defs, std::string_view text, Node* out,
                  const ParseLimits& limits = {});

struct JsonWriteOptions {
  bool pretty = false;
};

// Writes the resource in definition element order.
std::string write_json(const Node& resource, const JsonWriteOptions& opts = {});

}  // namespace espace::fhir
