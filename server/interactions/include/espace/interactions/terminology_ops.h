// Terminology operations over the server's terminology store
// (hl7.org/fhir/R4/terminology-service.html):
//   [base]/ValueSet/$expand?url=…          ValueSet/[id]/$expand
//   [base]/ValueSet/$validate-code?url=…&system=…&code=…   (or &coding / Parameters body)
//   [base]/CodeSystem/$lookup?system=…&code=…
// GET with query parameters, or POST with a Parameters body (valueUri/valueCode/valueString/valueCoding).
#pragma once

#include <string>

#include "espace/interactions/api.h"

namespace espace::interactions {

// True for the operation names handled here ("expand", "validate-code", "lookup").
bool is_terminology_operation(const std::string& operation);

// Runs one of them. An expansion the store cannot make complete (codes of
// external systems such as SNOMED CT) is refused with 422 rather than
// returned partial; $validate-code answers result=false with a message
// starting "not checked:" when the store lacks the data (never result=true).
FhirResponse terminology_operation(const Services& services, const FhirRequest& request, const std::string& operation);

}  // namespace espace::interactions
