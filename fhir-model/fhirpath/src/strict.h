// Internal: strict semantic checking of a parsed expression against the R4
// type model (unknown elements, choice elements named with their type suffix,
// ordered functions over unordered collections, non-boolean iif criteria).
#pragma once

#include <string>

#include "engine.h"

namespace espace::fhirpath {

fhir::Status strict_check(const ExprNode& root, const fhir::Definitions& defs, const std::string& root_type);

}  // namespace espace::fhirpath
