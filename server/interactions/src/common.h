// Helpers shared by the interaction files; internal to the interactions library.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "espace/interactions/api.h"
#include "espace/interactions/text_forms.h"

namespace espace::interactions {

using fhir::ErrorCategory;
using fhir::Status;

// A new server-assigned logical id: a random (version 4) UUID, unguessable.
std::string new_id();

// RFC 7231 IMF-fixdate: "Mon, 23 Nov 2026 13:20:00 GMT".
std::string format_http_date(int64_t us);
bool parse_http_date(std::string_view text, int64_t* us);
// A FHIR instant/dateTime (partial precision allowed: 2026, 2026-11, ...,
// with or without time zone, UTC assumed without) to microseconds; for _since.
bool parse_fhir_datetime(std::string_view text, int64_t* us);

std::string make_etag(int64_t version);  // W/"3"
// Accepts W/"3", "3" and 3; false otherwise.
bool parse_etag(std::string_view text, int64_t* version);

// An If-Match header (or Bundle entry.request.ifMatch): empty leaves *out
// unset; otherwise it must be a version ETag. Invalid when malformed.
Status parse_if_match(std::string_view header, std::optional<int64_t>* out);

bool is_valid_id(std::string_view id);

// Percent-encodes everything but RFC 3986 unreserved characters (for links).
std::string url_encode(std::string_view s);
// "?k1=v1&k2=v2" with keys and values percent-encoded; empty for no parameters.
std::string query_string(const std::vector<std::pair<std::string, std::string>>& params);
// base + path + query_string(params): a Bundle link.
std::string link_url(const std::string& base, const std::string& path,
                     const std::vector<std::pair<std::string, std::string>>& params);

FhirResponse error_response(Status status);
FhirResponse error_response(ErrorCategory category, std::string issue_code, std::string diagnostics,
                            std::string expression = {});

// A resource serialized once, outside the storage writer, with placeholders
// where meta.versionId and meta.lastUpdated go; finalize() fills them in on
// the writer thread once the version and the commit time are known.
class PreparedBody {
 public:
  // Sets id (when non-empty) and placeholder meta on a copy-free basis: the
  // node is modified in place.
  static Status prepare(fhir::Node& resource, const std::string& id, PreparedBody* out);
  std::string finalize(int64_t version, int64_t last_updated_us) const;

 private:
  std::string json_;
  size_t version_at_ = 0, version_len_ = 0;
  size_t time_at_ = 0, time_len_ = 0;
};

// Search index rows for a resource: every SearchParameter of its type,
// evaluated from its FHIRPath expression (search/registry.h has the layout).
std::vector<storage::IndexEntry> index_entries(const fhir::Definitions& defs, const fhir::Node& resource);

// Splits "a=1&b=x%7Cy" into decoded pairs ('+' is a space); false on a
// malformed percent-escape.
bool split_query(std::string_view query, std::vector<std::pair<std::string, std::string>>* params);

// Resolves a conditional criteria query ("identifier=sys|val&_id=x") for
// `type` to matching current ids with the search engine (unknown parameters
// are errors).
Status resolve_criteria(const Services& services, const std::string& type, std::string_view query,
                        std::vector<std::string>* ids);
Status resolve_criteria(const Services& services, const std::string& type,
                        const std::vector<std::pair<std::string, std::string>>& params,
                        std::vector<std::string>* ids);

// One write to perform inside a storage transaction.
struct WriteOp {
  enum class Kind { Create, Update, Delete } kind = Kind::Create;
  std::string type, id;
  PreparedBody body;                 // unused for Delete
  std::vector<storage::IndexEntry> index;
  std::optional<int64_t> if_match;   // required current version (412 otherwise)
  std::string method;                // POST, PUT, PATCH, DELETE (recorded in history)
};

struct WriteOutcome {
  int status = 0;            // 201 created, 200 updated, 204 deleted or nothing to delete
  int64_t version = 0;       // new version (0 when nothing was written)
  int64_t last_updated_us = 0;
  std::string json;          // final stored body (empty for deletes)
  bool wrote = false;
};

// Applies one write inside a transaction. Preconditions: called from a
// Storage::write body.
Status apply_write(storage::WriteTxn& txn, const WriteOp& op, WriteOutcome* out);

// Fills status/etag/last-modified/location and the body per Prefer.
FhirResponse write_response(const FhirRequest& request, const WriteOp& op, const WriteOutcome& outcome);

std::string resource_url(const std::string& base, const std::string& type, const std::string& id);
std::string version_url(const std::string& base, const std::string& type, const std::string& id, int64_t version);

// The answer to a conditional create whose criteria matched `type/id`:
// 200 with the existing resource (per Prefer), nothing written (http.html#ccreate).
FhirResponse existing_resource_response(const Services& services, const FhirRequest& request,
                                        const std::string& type, const std::string& id);

// Checks the body of a create/update: present, of the URL's type.
Status check_body_type(const FhirRequest& request);

// OperationOutcome JSON with one information issue (Prefer: return=OperationOutcome).
std::string informational_outcome(const std::string& text);

// Per-interaction entry points (one file each).
FhirResponse do_read(const Services&, const FhirRequest&);
FhirResponse do_vread(const Services&, const FhirRequest&);
FhirResponse do_create(const Services&, const FhirRequest&);
FhirResponse do_update(const Services&, const FhirRequest&);
FhirResponse do_conditional_update(const Services&, const FhirRequest&);
FhirResponse do_patch(const Services&, const FhirRequest&);
FhirResponse do_delete(const Services&, const FhirRequest&);
FhirResponse do_conditional_delete(const Services&, const FhirRequest&);
FhirResponse do_history(const Services&, const FhirRequest&);
FhirResponse do_capabilities(const Services&, const FhirRequest&);
FhirResponse do_bundle(const Services&, const FhirRequest&);
FhirResponse do_search(const Services&, const FhirRequest&);

}  // namespace espace::interactions
