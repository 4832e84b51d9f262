// The access rules of the DMP policy (the French shared medical record):
// who may see and write which data of which patient. Every rule has a stable
// name, used in 403 diagnostics and in AccessRecord::rules; the names, the
// facts they read and the status codes chosen are documented in
// server/policy/README.md.
//
// Pieces:
//   PatientFacts   what the rules need to know about one patient, read from
//                  the store (Patient + active Consents), once per request
//   RulesConfig    the data-driven parts (server/policy/data/*.json):
//                  habilitation matrix, purposes of use, role defaults
//   DmpRules       ResourceRules (guard.h) for one caller and one request
//   check_request  the request-level rules run by Policy::begin
//   make_dmp_policy  authentication (auth.h) + request rules + guard
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

#include "espace/fhir/definitions.h"
#include "espace/fhir/status.h"
#include "espace/interactions/api.h"
#include "espace/interactions/devices.h"
#include "espace/policy/auth.h"
#include "espace/policy/caller.h"
#include "espace/policy/guard.h"
#include "espace/policy/policy.h"
#include "espace/storage/storage.h"

namespace espace::policy {

// Identifier systems and codes the rules read.
namespace dmp {
// ANS: visibility of DMP documents (codes MASQUE_PS, INVISIBLE_PATIENT,
// INVISIBLE_REPRESENTANTS_LEGAUX) in meta.security / securityLabel.
inline constexpr std::string_view kConfidentialitySystem = "urn:oid:1.2.250.1.213.1.1.4.13";
inline constexpr std::string_view kMaskedToProfessionals = "MASQUE_PS";
inline constexpr std::string_view kInvisibleToPatient = "INVISIBLE_PATIENT";
inline constexpr std::string_view kInvisibleToRepresentatives = "INVISIBLE_REPRESENTANTS_LEGAUX";
inline constexpr std::string_view kRppsSystem = "urn:oid:1.2.250.1.71.4.2.1";
inline constexpr std::string_view kFinessSystem = "urn:oid:1.2.250.1.71.4.2.2";
// Patient extensions of ours (https://espace.example/fhir).
inline constexpr std::string_view kAccountStateUrl =
    "https://espace.example/fhir/StructureDefinition/dmp-account-state";  // valueCode
inline constexpr std::string_view kBreakGlassOppositionUrl =
    "https://espace.example/fhir/StructureDefinition/dmp-break-glass-opposition";  // valueBoolean
inline constexpr std::string_view kHeirsForbiddenUrl =
    "https://espace.example/fhir/StructureDefinition/dmp-heirs-access-forbidden";  // valueBoolean
inline constexpr std::string_view kLegalProtectionUrl =
    "https://espace.example/fhir/StructureDefinition/dmp-legal-protection";  // valueBoolean: protected adult
}  // namespace dmp

enum class AccountState { Active, Opposed, Closed, Deceased, Destroyed };
const char* account_state_code(AccountState state);  // "active", "opposed", ...

// One actor of a Consent provision: a reference ("Practitioner/p1",
// "Organization/o1", "CareTeam/t1", "RelatedPerson/r1") and/or a
// Reference.identifier (system|value, e.g. RPPS or FINESS).
struct ConsentActor {
  std::string reference;
  std::string system, value;
};

struct ConsentFact {
  std::string id;
  bool permit = false;             // provision.type permit (grant) or deny (block)
  std::vector<ConsentActor> actors;
  int64_t start_us = 0, end_us = 0;  // provision.period; 0: unbounded
};

struct PatientFacts {
  std::string id;
  bool exists = false;             // a current, non-deleted Patient
  AccountState state = AccountState::Active;
  bool minor = false;              // birthDate less than 18 years before now
  bool deceased = false;           // deceased[x], or state deceased
  bool legal_protection = false;   // protected adult: representatives keep acting
  bool break_glass_opposed = false;
  bool heirs_forbidden = false;
  std::vector<ConsentActor> general_practitioners;  // Patient.generalPractitioner
  std::vector<ConsentFact> consents;                // active Consents only
};

// From the Patient's JSON (`now_us` decides minority). Invalid on a body that
// is not a Patient.
fhir::Status patient_facts_from_json(std::string_view patient_json, int64_t now_us, PatientFacts* out);
// Adds the Consent if it is active and has a permit/deny provision.
void add_consent_fact(std::string_view consent_json, PatientFacts* facts);
// Patient + its active Consents (storage search Consent?patient=Patient/id).
// A patient never written or deleted gives exists = false, not an error.
fhir::Status load_patient_facts(storage::Storage& store, const std::string& patient_id, int64_t now_us,
                                PatientFacts* out);

// FHIR date/dateTime/instant (possibly partial) -> first and last microsecond
// of its range; false when malformed.
bool fhir_date_range(std::string_view text, int64_t* first_us, int64_t* last_us);

// The habilitation matrix (server/policy/data/habilitations.json).
class Habilitations {
 public:
  static fhir::Status parse(std::string_view json, Habilitations* out);
  // `profession` is a TRE_G15 code, or "system" for a system without one.
  bool allows_type(const std::string& profession, std::string_view resource_type) const;
  // Any of the document's LOINC type codes allowed (a document without a
  // LOINC type is allowed only where every document type is).
  bool allows_document(const std::string& profession, const std::vector<std::string>& loinc_codes) const;
  const std::string& loinc_system() const { return loinc_system_; }

 private:
  struct Row {
    std::set<std::string, std::less<>> types, documents;
  };
  std::map<std::string, Row, std::less<>> rows_;
  std::string loinc_system_ = "http://loinc.org";
};

// Everything data-driven, loaded once at start-up.
struct RulesConfig {
  Habilitations habilitations;
  struct Purposes {
    std::set<std::string> allowed;
    std::string fallback;  // when the token names none
  };
  std::map<std::string, Purposes> purposes;  // by role_name()
  std::string break_glass_purpose = "ETREAT";
  std::set<std::string, std::less<>> shared_types, administrator_types, administrator_operations,
      patient_writable_types, patient_label_editable_types, professional_never_writes, hideable_types;
  // Types only some professions may write (MedicationRequest: prescribers,
  // MedicationDispense: pharmacists): type -> TRE_G15 codes ("system" for systems).
  std::map<std::string, std::set<std::string>, std::less<>> restricted_writers;
  // Who entered a write: type -> the Reference elements (dotted paths, any
  // of them) that must name the caller on every create/update by a patient,
  // a representative or a professional (provenance inside the resource).
  std::map<std::string, std::vector<std::string>, std::less<>> entered_by;

  // From server/policy/data/{habilitations,purposes,roles}.json.
  static fhir::Status load(RulesConfig* out);
  static fhir::Status parse(std::string_view habilitations_json, std::string_view purposes_json,
                            std::string_view roles_json, RulesConfig* out);
};

// Stable rule names (static storage: usable as Verdict::rule).
namespace rule {
inline constexpr const char* kOpen = "OPEN";
inline constexpr const char* kOwn = "OWN";
inline constexpr const char* kRepresentative = "REPRESENTATIVE";
inline constexpr const char* kHeir = "HEIR";
inline constexpr const char* kGp = "GP";
inline constexpr const char* kGrant = "GRANT";
inline constexpr const char* kBreakGlass = "BREAK_GLASS";
inline constexpr const char* kAuthor = "AUTHOR";
inline constexpr const char* kShared = "SHARED";
inline constexpr const char* kSystem = "SYSTEM";
inline constexpr const char* kAuditOwn = "AUDIT_OWN";
inline constexpr const char* kAdminConformance = "ADMIN_CONFORMANCE";
// refusals
inline constexpr const char* kAuthenticationRequired = "AUTHENTICATION_REQUIRED";
inline constexpr const char* kBlocked = "BLOCKED";
inline constexpr const char* kNoGrant = "NO_GRANT";
inline constexpr const char* kBreakGlassOpposed = "BREAK_GLASS_OPPOSED";
inline constexpr const char* kOtherPatient = "OTHER_PATIENT";
inline constexpr const char* kRepresentationEnded = "REPRESENTATION_ENDED";
inline constexpr const char* kHeirsForbidden = "HEIRS_FORBIDDEN";
inline constexpr const char* kAccountOpposed = "ACCOUNT_OPPOSED";
inline constexpr const char* kAccountClosed = "ACCOUNT_CLOSED";
inline constexpr const char* kAccountDestroyed = "ACCOUNT_DESTROYED";
inline constexpr const char* kHabilitation = "HABILITATION";
inline constexpr const char* kMasked = "MASKED";
inline constexpr const char* kInvisiblePatient = "INVISIBLE_PATIENT";
inline constexpr const char* kInvisibleRepresentatives = "INVISIBLE_REPRESENTANTS_LEGAUX";
inline constexpr const char* kNonCarePurpose = "NON_CARE_PURPOSE";
inline constexpr const char* kScope = "SCOPE";
inline constexpr const char* kAdminNoClinical = "ADMIN_NO_CLINICAL";
inline constexpr const char* kPatientContextRequired = "PATIENT_CONTEXT_REQUIRED";
inline constexpr const char* kChainOnHideable = "CHAIN_ON_HIDEABLE";
inline constexpr const char* kUpdateAsCreate = "UPDATE_AS_CREATE";
inline constexpr const char* kAuditServerOnly = "AUDIT_SERVER_ONLY";
inline constexpr const char* kAuditPatientOnly = "AUDIT_PATIENT_ONLY";
// An access event naming a resource the reader may not see stays hidden.
inline constexpr const char* kAuditHiddenEntity = "AUDIT_HIDDEN_ENTITY";
inline constexpr const char* kSystemOnly = "SYSTEM_ONLY";
inline constexpr const char* kNoPatientLink = "NO_PATIENT_LINK";
inline constexpr const char* kBinaryUnbound = "BINARY_UNBOUND";
inline constexpr const char* kPatientWrite = "PATIENT_WRITE";
inline constexpr const char* kLabelEditOnly = "LABEL_EDIT_ONLY";
inline constexpr const char* kSettingsPatientOnly = "SETTINGS_PATIENT_ONLY";
inline constexpr const char* kConsentPatientOnly = "CONSENT_PATIENT_ONLY";
inline constexpr const char* kPatientChange = "PATIENT_CHANGE";
inline constexpr const char* kPatientCreate = "PATIENT_CREATE";
inline constexpr const char* kSharedWrite = "SHARED_WRITE";
// Prescriptions and dispensations (roles.json restricted_writers, entered_by).
inline constexpr const char* kWriterProfession = "WRITER_PROFESSION";
inline constexpr const char* kEnteredBy = "ENTERED_BY";
inline constexpr const char* kDispensePrescription = "DISPENSE_PRESCRIPTION";
// Connected apps, messages, appointments (rules_devices.cpp).
inline constexpr const char* kDeviceAppConsent = "DEVICE_APP_CONSENT";
inline constexpr const char* kDeviceAppData = "DEVICE_APP_DATA";
inline constexpr const char* kThreadReplyOnly = "THREAD_REPLY_ONLY";
inline constexpr const char* kAttachmentNotVisible = "ATTACHMENT_NOT_VISIBLE";
inline constexpr const char* kAppointmentCancelOnly = "APPOINTMENT_CANCEL_ONLY";
}  // namespace rule

// The rules of one request for one caller. Facts are loaded from `store`
// (the unguarded storage) at most once per patient.
class DmpRules final : public ResourceRules {
 public:
  // `named_patients`: the patients the request names (check_request), to
  // which the searches of professionals are narrowed.
  DmpRules(const RulesConfig& config, const fhir::Definitions& defs, storage::Storage& store, Caller caller,
           int64_t now_us, std::vector<std::string> named_patients = {});

  Verdict may_see(const storage::ResourceVersion& version, AccessRecord* record) override;
  fhir::Status may_write(const storage::ResourceVersion* before, const storage::ResourceVersion& after,
                         AccessRecord* record) override;
  fhir::Status restrict_search(storage::SearchQuery* query) override;

  // The patient-level decision: may this caller reach this patient's record
  // at all (OWN, REPRESENTATIVE, HEIR, GP, GRANT, BREAK_GLASS, or why not)?
  Verdict patient_access(const std::string& patient_id);
  // Patients whose compartment this version belongs to (Binary: those of
  // its DocumentReference). Empty for shared data.
  std::vector<std::string> patients_of(const storage::ResourceVersion& version);
  const PatientFacts& facts(const std::string& patient_id);

 private:
  Verdict decide(const storage::ResourceVersion& version, std::vector<std::string>* patients, int depth);
  // `stored`: the stored version the content is from, when it is one (its
  // caller-independent facts may then come from a cache across requests).
  Verdict decide_content(const std::string& type, std::string_view json, std::vector<std::string>* patients,
                         int depth, const storage::ResourceVersion* stored = nullptr);
  bool matches_caller(const ConsentActor& actor);
  bool resource_names_caller(const std::string& reference);
  bool is_gp(const PatientFacts& facts);
  bool names_caller(const rapidjson::Value& resource, const std::vector<std::string>& paths);
  fhir::Status check_dispense(const rapidjson::Value& dispense, const std::vector<std::string>& patients);
  // rules_devices.cpp: connected apps (system callers named by a patient's
  // device-app-connection Consent), secure messages, appointments.
  const std::vector<interactions::devices::AppConsent>& app_consents(const std::string& patient_id);
  bool device_app_access(const std::string& patient_id, Verdict* out);  // false: no Consent names the app
  Verdict device_app_content(const std::string& type, const rapidjson::Value& doc);
  fhir::Status check_app_measurement(const rapidjson::Value& observation);  // declares fr-device-observation
  fhir::Status check_attachments(const rapidjson::Value& communication);
  fhir::Status check_patient_message(bool exists, bool deleting, const rapidjson::Value* after);
  fhir::Status check_patient_appointment(const rapidjson::Value* before, const rapidjson::Value* after);
  bool scope_allows(std::string_view type, char permission, bool* patient_only = nullptr) const;
  std::string profession() const;

  const RulesConfig& config_;
  const fhir::Definitions& defs_;
  storage::Storage& store_;
  Caller caller_;
  int64_t now_us_;
  std::vector<std::string> named_patients_;
  std::map<std::string, PatientFacts> facts_;
  std::map<std::string, Verdict> access_;
  std::map<std::string, bool> reference_matches_;  // "CareTeam/t1" -> includes the caller
  // MedicationRequests this request has written so far (id -> their patients):
  // a transaction's dispensation may name a prescription the store does not
  // show yet.
  std::map<std::string, std::vector<std::string>> written_prescriptions_;
  std::map<std::string, std::vector<interactions::devices::AppConsent>> app_consents_;
  std::map<std::string, bool> app_devices_;  // "Device/d1" -> carries the calling app's client id
};

// Request-level rules (before anything is read): authentication, purpose of
// use, AuditEvent, administrator, SMART scopes, patient context. Ok with
// *named_patients filled (from the URL, compartment, patient/subject
// parameters, or the body's compartment), or Forbidden / NotAllowed naming
// the rule. The patient-level decision on the named patients is the
// caller's next step (DmpRules::patient_access).
fhir::Status check_request(const RulesConfig& config, const fhir::Definitions& defs, const Caller& caller,
                           const interactions::FhirRequest& request, std::vector<std::string>* named_patients);

// The rule a refusal names to the caller. A patient-level refusal must not
// tell a professional or a system anything about the record (that it exists,
// that they are blocked, that break-glass is opposed, the account's state):
// all of them answer NO_GRANT, exactly as for a patient never written. A
// representative is not told that the minor opposed them (BLOCKED ->
// NO_GRANT). The precise rule stays in DmpRules' verdicts.
const char* public_rule(const Caller& caller, const char* rule_name);

// SMART scopes: does the caller hold `permission` ('c','r','u','d','s') on
// `type`? A caller without scopes has the rights of its role (true).
// *patient_only is set when every scope giving it is a patient/ scope: it
// then reaches the launch patient (Caller::patient_id) only.
bool scopes_allow(const Caller& caller, std::string_view type, char permission, bool* patient_only = nullptr);

// A Forbidden status whose diagnostics name the rule ("... (rule GRANT)")
// and whose message id is "policy-<RULE>".
fhir::Status refusal(const char* rule_name, const std::string& why);

struct DmpPolicyConfig {
  AuthConfig auth;
  // Microseconds since the Unix epoch for the rules (minority, consent
  // periods); empty: the system clock.
  std::function<int64_t()> clock_us;
};

// The DMP policy: authenticate with auth.h's Authenticator, begin() =
// check_request + patient-level decision on named patients + make_guard
// with DmpRules. `config` and `defs` must outlive the policy.
fhir::Status make_dmp_policy(const DmpPolicyConfig& options, const RulesConfig& config,
                             const fhir::Definitions& defs, std::unique_ptr<Policy>* out);

}  // namespace espace::policy
