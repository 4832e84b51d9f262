// The audit trail: one AuditEvent per FHIR request, allowed or refused,
// durable in the storage's append-only, hash-chained audit table
// (storage.h, AuditRecord) before the response leaves the server.
//
// The AuditEvent follows the IHE Basic Audit Log Patterns (BALP) RESTful
// events, as the ANS traceability requirements ask of a DMP-like service:
//   type      audit-event-type#rest; subtype restful-interaction#<interaction>
//   action    C / R / U / D / E (operations and batches: E)
//   outcome   0 (status < 400), 4 (4xx), 8 (500-502), 12 (503 and above)
//   purposeOfEvent and agent.purposeOfUse: v3-ActReason (TREAT, ETREAT, ...)
//   agent     the user (requestor, role, RPPS identifier or fhirUser, token
//             id in agent.policy, network address), the software (client
//             id), the organisation (FINESS), the patients represented, the
//             server; break-the-glass: ETREAT plus our extension below
//   source    the server (security-source-type#4, application server)
//   entity    each Patient (audit-entity-type#1, object-role#1), each
//             resource returned or written ("Type/id/_history/v", role 4),
//             and for searches the query (object-role#24) base64-encoded
//             with the values of identifying parameters (names, birth date,
//             identifiers, contact details, ...) replaced by "redacted"
// Extensions (canonical base https://espace.example/fhir/StructureDefinition/):
//   audit-break-the-glass (valueBoolean, on the requesting agent)
//   audit-rule            (valueString, repeated: the rules that decided)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "espace/policy/policy.h"
#include "espace/storage/storage.h"

namespace espace::policy {

struct AuditOptions {
  // AuditEvent.source.site and observer display: which server wrote it.
  std::string site = "espace";
  std::string observer = "espace FHIR server";
};

// A trail appending to `store` (which outlives it). Concurrent record()
// calls share storage commits (group commit).
std::unique_ptr<AuditTrail> make_audit_trail(storage::Storage& store, AuditOptions options = {});

// The AuditEvent (compact JSON) and its audit record for one request; what
// make_audit_trail appends. `recorded_us` and `id` are given so that tests
// can check the result exactly.
storage::AuditRecord build_audit_record(const Caller& caller, const interactions::FhirRequest& request, int status,
                                        const AccessRecord& access, const AuditOptions& options,
                                        int64_t recorded_us, const std::string& id);

// The AuditEvent.outcome code for an HTTP status ("0", "4", "8", "12").
const char* audit_outcome(int status);

}  // namespace espace::policy
