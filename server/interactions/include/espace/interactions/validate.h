// Validation in the REST layer: the check every write passes before it is
// stored, and the $validate operation (hl7.org/fhir/R4/resource-operation-validate.html).
#pragma once

#include <string>

#include "espace/fhir/node.h"
#include "espace/fhir/status.h"
#include "espace/interactions/api.h"

namespace espace::interactions {

// Validates `resource` against the base specification, its meta.profile and
// the profiles the validator requires for its type (Validator::require_profile). Ok when there is no error;
// otherwise an Unprocessable (422) status carrying every issue found,
// warnings included. Ok when services.validator is null (validation off).
// `location_prefix` roots the issue locations ("Bundle.entry[2].resource").
fhir::Status validate_for_write(const Services& services, const fhir::Node& resource,
                                const std::string& location_prefix = {});

// POST [type]/$validate and POST [type]/[id]/$validate. The body
// (request.resource) is the resource itself or a Parameters resource with
// `resource`, `mode` (create | update | delete) and `profile`; `mode` and
// `profile` may also come in the query. Answers 200 with an OperationOutcome
// listing the issues (an information issue when there are none): invalid
// content is the answer of the operation, not an HTTP error.
FhirResponse validate_operation(const Services& services, const FhirRequest& request);

}  // namespace espace::interactions
