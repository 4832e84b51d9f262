#include "espace/http/status_map.h"

#include "espace/interactions/api.h"

namespace espace::http {

// Both live in the interactions layer, which needs them for batch and
// transaction entries: one mapping serves every response.
int http_status(fhir::ErrorCategory category) { return interactions::http_status(category); }

const char* reason_phrase(int status) { return interactions::reason_phrase(status); }

}  // namespace espace::http
