// The one mapping from error categories to HTTP status codes.
#pragma once

#include "espace/fhir/status.h"

namespace espace::http {

int http_status(fhir::ErrorCategory category);

// Reason phrase for a status code ("Not Found"); "Unknown" for others.
const char* reason_phrase(int status);

}  // namespace espace::http
