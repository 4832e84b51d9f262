// Who is calling: the identity the authentication step (a verified bearer
// token, or the open development mode) hands to the access rules. Plain data;
// filled by policy/auth.h, read by the rules, recorded by the audit trail.
#pragma once

#include <string>
#include <vector>

namespace espace::policy {

enum class Role {
  Anonymous,            // no credentials
  Patient,              // the holder of the record
  LegalRepresentative,  // acts for the patients in represented_patients (minors, protected adults)
  Professional,         // a health professional (RPPS)
  System,               // a hospital system or practice software acting for a user or for itself
  Administrator,        // runs the platform: no clinical access
  Open,                 // --auth none: development and generic test suites, every right
};
const char* role_name(Role role);  // "patient", "legal-representative", ...

// One SMART v2 scope: patient/Observation.rs, user/*.cruds, system/*.r
// (hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).
struct Scope {
  enum class Context { Patient, User, System } context = Context::User;
  std::string type;         // resource type or "*"
  std::string permissions;  // subset of "cruds" in that order
};

struct Caller {
  bool authenticated = false;
  Role role = Role::Anonymous;
  std::string subject;      // token `sub`: an opaque account id (never logged with patient data)
  std::string issuer;       // token `iss`
  std::string client_id;    // the software (token `client_id` or `azp`)
  std::string token_id;     // token `jti`, for the audit trail
  // The caller's own FHIR resource (SMART `fhirUser`): "Patient/123",
  // "Practitioner/abc", "RelatedPerson/x". Empty for systems and admins.
  std::string fhir_user;
  // Patient role: the patient's own id. SMART patient launch context otherwise.
  std::string patient_id;
  // LegalRepresentative: the ids of the patients represented.
  std::vector<std::string> represented_patients;
  // Professional (IHE IUA extensions.ihe_iua and ANS claims):
  std::string national_id;        // RPPS / ADELI number, e.g. "810001234567"
  std::string profession_code;    // TRE_G15 profession, e.g. "10" médecin, "21" pharmacien, "60" infirmier
  std::string specialty_code;     // TRE_R38 specialty, e.g. "SM54" médecine générale
  std::string organization_id;    // FINESS / SIRET of the care structure
  std::string display_name;       // for the patient's access history ("Dr Marie Martin")
  // IHE IUA purpose_of_use (v3 ActReason): TREAT, ETREAT (break-the-glass), ...
  std::string purpose_of_use;
  std::vector<Scope> scopes;
  std::string remote_address;
};

}  // namespace espace::policy
