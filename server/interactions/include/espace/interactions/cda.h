// CDA R2 documents (HL7 CDA R2 as profiled by the ANS CI-SIS): header checks
// and the header -> DocumentReference mapping, driven by the data files
// server/interactions/data/cda-header-rules.json and cda-header-mapping.json,
// and the operation POST /DocumentReference/$ingest-cda.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "espace/fhir/definitions.h"
#include "espace/fhir/node.h"
#include "espace/fhir/status.h"
#include "espace/interactions/api.h"

namespace espace::interactions {

struct CdaDocument {
  // The mapped DocumentReference without id, subject, date and
  // content[0].attachment.url (the caller knows where the Binary goes).
  // content[0].attachment carries contentType text/xml, size, hash (SHA-1,
  // base64), title, creation and language of the CDA as received.
  fhir::Node document_reference;
  std::string patient_ins;  // recordTarget/patientRole/id with root 1.2.250.1.213.1.4.8
  std::vector<fhir::Issue> warnings;  // rules of severity warning that failed
};

// Parses a CDA R2 document (hardened libxml2: no DOCTYPE, no entities, no
// network, size and depth bounded), checks it against the header rules and
// maps its header. Touches no storage. Errors: Invalid (400) for XML that is
// malformed, hostile or not a ClinicalDocument; TooLarge (413); Unprocessable
// (422) with one issue per failed rule (message_id = rule id, expression =
// XPath of the problem).
fhir::Status read_cda_document(const fhir::Definitions& defs, std::string_view xml, CdaDocument* out);

// POST /DocumentReference/$ingest-cda: the body is the CDA document itself
// (application/xml, text/xml or application/hl7-cda+xml). Stores a Binary
// (the CDA, text/xml) and the DocumentReference pointing at it, for the
// Patient carrying the document's INS, in one transaction; 201 with the
// DocumentReference.
FhirResponse ingest_cda_operation(const Services& services, const FhirRequest& request);

}  // namespace espace::interactions
