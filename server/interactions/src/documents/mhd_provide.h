// IHE MHD ITI-65 Provide Document Bundle (profiles.ihe.net/ITI/MHD/ITI-65.html)
// as the DMP receives it: the checks that apply to the submission as a whole,
// and what the transaction machinery of bundle.cpp must do differently for it.
// Internal to the interactions library.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../common.h"

namespace espace::interactions::mhd {

// The id a document's uniqueId (kind "DocumentReference", "List", ...) is
// stored under: stable and unguessable without the uniqueId. Every channel
// that files documents (ITI-65, $ingest-cda) uses it, so a duplicate uniqueId
// is one id conflict inside the write transaction, whichever way it came.
std::string derived_id(std::string_view kind, std::string_view unique_id);

// Canonical URLs and codes used by the document-sharing code (MHD, FR Core, ours).
inline constexpr const char* kListTypesSystem = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes";
inline constexpr const char* kMhdProfilePrefix = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.";
inline constexpr const char* kInsNirSystem = "urn:oid:1.2.250.1.213.1.4.8";
inline constexpr const char* kIdentityReliabilityUrl =
    "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability";
// The same extension as our fr-patient-ins profile names it (profiles/data).
inline constexpr const char* kOurIdentityReliabilityUrl =
    "https://espace.example/fhir/StructureDefinition/identity-reliability";
// Where we record the digest of a stored submission (idempotent re-submission).
inline constexpr const char* kSubmissionDigestUrl = "https://espace.example/fhir/StructureDefinition/submission-digest";
// meta.tag system of the DMP document flags we keep (archived).
inline constexpr const char* kDocumentStateSystem = "https://espace.example/fhir/CodeSystem/dmp-document-state";
inline constexpr const char* kArchivedCode = "archived";

// An ITI-65 bundle: its meta.profile names an MHD ProvideBundle profile, or it
// carries a List coded as a SubmissionSet.
bool is_provide_bundle(const fhir::Node& bundle);

struct SubmittedEntry {
  std::string type;       // List, DocumentReference or Binary
  std::string full_url;
  std::string id;         // the id it is stored under (derived, see mhd_provide.cpp)
  std::string unique_id;  // List.identifier (official) or DocumentReference.masterIdentifier value
};

struct Submission {
  std::string digest;                    // hex SHA-256 of the submission's content
  std::vector<SubmittedEntry> entries;   // in bundle order
  std::map<std::string, std::string> id_of_full_url;
  // Updates that mark replaced DocumentReferences superseded; written in the
  // same storage transaction, each conditional on the version checked.
  std::vector<WriteOp> supersede;
};

// Checks the bundle as a whole and prepares the submission. Adds the digest
// extension to the SubmissionSet List (after profile validation ran). Errors
// name the entry (Bundle.entry[i]...): 422 for content, 409 for a replacement
// of a document that is no longer current.
Status prepare_submission(const Services& services, const std::string& base_url, fhir::Node& bundle,
                          Submission* out);

// After the storage transaction failed: the answer for an ITI-65 submission
// (idempotent replay of an identical stored submission, or a 409 naming the
// duplicate uniqueId or the concurrently changed replaced document), or
// nothing when the generic answer fits. failed_entry is the bundle entry
// whose write failed, or npos for a superseding write.
std::optional<FhirResponse> explain_failed_write(const Services& services, const FhirRequest& request,
                                                 const Submission& submission, const Status& failure,
                                                 size_t failed_entry);

// ---- plain create and update of a DocumentReference (document_writes.cpp) ----

// The id POST stores a DocumentReference under: the one its masterIdentifier
// determines (derived_id), or a fresh id when it has none.
std::string document_reference_id(const fhir::Node& resource);
// apply_write for a create or update whose body is `resource`, with the
// DocumentReference rules checked inside the same write transaction: a PUT on
// a stored document changes only the lifecycle's metadata; a PUT does not
// create a document under another id than its uniqueId's (409 when that
// uniqueId is stored, 422 otherwise). Other types: apply_write.
Status apply_checked_write(storage::WriteTxn& txn, const fhir::Node& resource, const WriteOp& op, WriteOutcome* out);
// The answer to a failed POST of a DocumentReference: the stored resource when
// the identical document is posted again, 409 naming the stored document when
// its uniqueId is taken, the failure itself otherwise.
FhirResponse document_create_failed(const Services& services, const FhirRequest& request, const fhir::Node& resource,
                                    const WriteOp& op, Status failure);

// ---- lifecycle (mhd_lifecycle.cpp) ----

// A JSON Patch on a DocumentReference may change only the metadata the DMP
// lets a sharer change; Unprocessable naming the first other path. Checked
// before the patch is applied.
Status check_document_patch_paths(std::string_view patch_json);
// The status may only become entered-in-error (logical deletion), once.
// current_json: the stored version the patch applies to.
Status check_document_status_change(std::string_view current_json, std::string_view patched_status);

// Default filters of a DocumentReference search (ITI-67): without a status
// parameter entered-in-error documents are left out; without a _tag parameter
// archived ones are. Appends the conditions to the query.
void add_default_document_filters(const std::vector<std::pair<std::string, std::string>>& params,
                                  storage::SearchQuery* query);

}  // namespace espace::interactions::mhd
