// The FHIR REST interactions (hl7.org/fhir/R4/http.html), independent of HTTP
// plumbing: the http layer turns a request into a FhirRequest, the policy
// layer decides, and dispatch() runs the interaction against the storage.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "espace/fhir/definitions.h"
#include "espace/fhir/node.h"
#include "espace/fhir/status.h"
#include "espace/storage/storage.h"

namespace espace::profiles {
class Validator;
}

namespace espace::interactions {

enum class Interaction {
  Read, VRead, Update, Patch, Delete,
  HistoryInstance, HistoryType, HistorySystem,
  Create, SearchType, SearchSystem,
  Capabilities, Batch, Transaction,
  ConditionalUpdate, ConditionalDelete, ConditionalPatch,
  Operation,  // $name at system, type or instance level (operations.h)
};
const char* interaction_code(Interaction i);  // CapabilityStatement codes: "read", "history-instance", ...

enum class PreferReturn { Representation, Minimal, OperationOutcome };

struct FhirRequest {
  Interaction interaction = Interaction::Read;
  std::string type;        // resource type from the URL
  std::string id;          // logical id from the URL
  std::string version_id;  // from /_history/{vid}
  // Operation: its name without '$' ("validate", "ingest-cda"), and the HTTP
  // method it came with (GET operations must not change state).
  std::string operation;
  std::string method;
  // Decoded query parameters (search criteria, _since, _count, ...).
  std::vector<std::pair<std::string, std::string>> params;
  // Parsed body for create/update/batch/transaction; empty otherwise.
  std::optional<fhir::Node> resource;
  std::string body;         // raw body (JSON Patch documents, raw-body operations)
  std::string content_type; // of the body, without parameters
  // Conditional headers, verbatim.
  std::string if_match, if_none_match, if_modified_since, if_none_exist;
  PreferReturn prefer_return = PreferReturn::Representation;
  // Prefer: handling=lenient — searches ignore unknown or unsupported
  // parameters (and say so in the Bundle) instead of answering 400.
  bool lenient = false;
  // Compartment search (GET /Patient/123/Observation, /Patient/123/*):
  // SearchType with `type` the member type, or SearchSystem for "*".
  std::string compartment_type, compartment_id;
  // "http://127.0.0.1:8080" — base for absolute URLs (Location, fullUrl).
  std::string base_url;
};

struct FhirResponse {
  int status = 200;
  // The response resource as FHIR JSON (empty for no body). The http layer
  // converts it to the negotiated format.
  std::string json;
  std::string etag;           // W/"3"
  std::string last_modified;  // RFC 7231 date
  std::string location;       // absolute URL
  std::string content_location;
  // When set, the response is an error: the http layer renders its issues as
  // an OperationOutcome with the status of its category.
  fhir::Status error;
};

struct Limits {
  size_t max_bundle_entries = 20000;  // batch/transaction entries
  int default_page_size = 50;         // _count default for history
  int max_page_size = 1000;
  // Search planner hint (storage::SearchQuery::walk_threshold).
  int64_t search_walk_threshold = 5000;
  // Largest document (decoded Binary or inline attachment) an ITI-65
  // Provide Document Bundle may carry (serve --max-document-bytes).
  size_t max_document_bytes = 64u << 20;
};

// What every interaction needs. Definitions and storage outlive it.
struct Services {
  const fhir::Definitions* defs = nullptr;
  storage::Storage* store = nullptr;
  Limits limits;
  // Checks every created/updated/patched resource and transaction before the
  // write (errors -> 422, nothing stored). Null: no validation.
  const profiles::Validator* validator = nullptr;
};

// The one mapping from error categories to HTTP status codes, used for
// responses and for the entries of batch/transaction responses.
int http_status(fhir::ErrorCategory category);
// Reason phrase for a status code ("Not Found"); "Unknown" for others.
const char* reason_phrase(int status);

// Builds the search parameter registry (every SearchParameter expression
// compiled) now instead of on the first write or search: call at startup.
void prepare_search(const fhir::Definitions& defs);

// Runs one interaction. Never throws; failures come back in FhirResponse::error.
FhirResponse dispatch(const Services& services, const FhirRequest& request);

}  // namespace espace::interactions
