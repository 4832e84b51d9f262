// Request-level rules: decided from the caller and the request alone, before
// anything is read from the store.
#include <algorithm>

#include "espace/interactions/compartments.h"
#include "espace/policy/rules.h"

namespace espace::policy {

using fhir::ErrorCategory;
using fhir::Status;
using interactions::Interaction;

namespace {

bool is_write(Interaction i) {
  switch (i) {
    case Interaction::Create:
    case Interaction::Update:
    case Interaction::Patch:
    case Interaction::Delete:
    case Interaction::ConditionalUpdate:
    case Interaction::ConditionalDelete:
    case Interaction::ConditionalPatch: return true;
    default: return false;
  }
}

// The SMART permission an interaction needs (0: decided per resource later).
char permission_of(Interaction i) {
  switch (i) {
    case Interaction::Read:
    case Interaction::VRead:
    case Interaction::HistoryInstance: return 'r';
    case Interaction::SearchType:
    case Interaction::SearchSystem:
    case Interaction::HistoryType:
    case Interaction::HistorySystem: return 's';
    case Interaction::Create: return 'c';
    case Interaction::Update:
    case Interaction::Patch:
    case Interaction::ConditionalUpdate:
    case Interaction::ConditionalPatch: return 'u';
    case Interaction::Delete:
    case Interaction::ConditionalDelete: return 'd';
    default: return 0;
  }
}

void add_unique(std::vector<std::string>* v, std::string s) {
  if (!s.empty() && std::find(v->begin(), v->end(), s) == v->end()) v->push_back(std::move(s));
}

// "Patient/p1", "https://host/fhir/Patient/p1", "p1" (when `bare_is_patient`)
// -> "p1"; anything else -> "".
std::string patient_id_of(std::string_view value, bool bare_is_patient) {
  size_t at = value.rfind("Patient/");
  if (at != std::string_view::npos && (at == 0 || value[at - 1] == '/')) {
    std::string_view id = value.substr(at + 8);
    if (id.find('/') != std::string_view::npos) return "";  // Patient/p1/_history/2
    return std::string(id);
  }
  if (bare_is_patient && value.find('/') == std::string_view::npos) return std::string(value);
  return "";
}

}  // namespace

Status check_request(const RulesConfig& config, const fhir::Definitions& defs, const Caller& caller,
                     const interactions::FhirRequest& req, std::vector<std::string>* named_patients) {
  named_patients->clear();
  if (caller.role == Role::Open) return Status::ok();
  if (!caller.authenticated || caller.role == Role::Anonymous)
    return refusal(rule::kAuthenticationRequired, "this server needs an authenticated caller");

  // Purpose of use: care only.
  auto purposes = config.purposes.find(role_name(caller.role));
  std::string purpose = caller.purpose_of_use;
  if (purposes != config.purposes.end() && purpose.empty()) purpose = purposes->second.fallback;
  if (purposes == config.purposes.end() || !purposes->second.allowed.count(purpose))
    return refusal(rule::kNonCarePurpose, "the purpose of use '" + purpose + "' is not care of the patient");

  const Interaction i = req.interaction;
  const std::string& type = req.type;
  if (type == "AuditEvent" && is_write(i)) {
    Status s = refusal(rule::kAuditServerOnly, "AuditEvent resources are written by the server only");
    s.set_category(ErrorCategory::NotAllowed);
    return s;
  }
  if (type == "AuditEvent" && caller.role != Role::Patient && caller.role != Role::LegalRepresentative)
    return refusal(rule::kAuditPatientOnly, "the access history is shown to the patient only");

  if (caller.role == Role::Administrator) {
    if (i == Interaction::Capabilities) return Status::ok();
    if (i == Interaction::Operation && config.administrator_operations.count(req.operation) &&
        (req.id.empty() || config.administrator_types.count(type)))
      return Status::ok();
    if ((i == Interaction::Read || i == Interaction::VRead || i == Interaction::HistoryInstance ||
         i == Interaction::HistoryType || i == Interaction::SearchType) &&
        req.compartment_type.empty() && config.administrator_types.count(type))
      return Status::ok();
    return refusal(rule::kAdminNoClinical, "administrators reach conformance and terminology resources only");
  }

  // SMART scopes: the type (or every type for system-level interactions).
  bool launch_patient_only = false;
  if (char p = permission_of(i); p && !caller.scopes.empty()) {
    std::vector<std::string> types;
    if (!type.empty()) {
      types.push_back(type);
    } else {
      for (const auto& [name, value] : req.params)
        if (name == "_type") {
          size_t start = 0;
          while (start <= value.size()) {
            size_t comma = value.find(',', start);
            if (comma == std::string::npos) comma = value.size();
            if (comma > start) types.push_back(value.substr(start, comma - start));
            start = comma + 1;
          }
        }
      if (types.empty()) types.push_back("*");
    }
    for (const std::string& t : types) {
      bool patient_only = false;
      if (!scopes_allow(caller, t, p, &patient_only))
        return refusal(rule::kScope, std::string("the token's scopes do not allow '") + p + "' on " + t);
      launch_patient_only = launch_patient_only || patient_only;
    }
  }

  // The patients the request names.
  if (req.compartment_type == "Patient") add_unique(named_patients, req.compartment_id);
  if (type == "Patient" && !req.id.empty() && req.compartment_type.empty()) add_unique(named_patients, req.id);
  bool patient_found_by_identifier = false;
  for (const auto& [raw_name, value] : req.params) {
    std::string name = raw_name, modifier;
    if (size_t colon = name.find(':'); colon != std::string::npos) {
      modifier = name.substr(colon + 1);
      name.resize(colon);
    }
    if (name.find('.') != std::string::npos) continue;  // chains name no patient by themselves
    const bool patient_param = name == "patient" || name == "subject" || name == "beneficiary";
    const bool own_id = type == "Patient" && name == "_id";
    if (type == "Patient" && (name == "identifier" || name == "_id")) patient_found_by_identifier = true;
    if (!patient_param && !own_id) continue;
    if (!modifier.empty() && modifier != "Patient") continue;
    size_t start = 0;
    while (start <= value.size()) {
      size_t comma = value.find(',', start);
      if (comma == std::string::npos) comma = value.size();
      std::string one = value.substr(start, comma - start);
      add_unique(named_patients, patient_id_of(one, own_id || name == "patient" || modifier == "Patient"));
      start = comma + 1;
    }
  }
  if (req.resource && is_write(i) && type != "Patient")
    for (std::string& p : interactions::compartment_owners(defs, "Patient", *req.resource))
      add_unique(named_patients, std::move(p));

  // Operations are judged per resource they touch; a patient/ read scope
  // still confines the patients they may name.
  if (i == Interaction::Operation && !caller.scopes.empty()) {
    bool patient_only = false;
    if (scopes_allow(caller, type.empty() ? "*" : type, 'r', &patient_only) && patient_only)
      launch_patient_only = true;
  }
  // patient/ scopes: the launch patient, and only that one, is named.
  if (launch_patient_only)
    for (const std::string& p : *named_patients)
      if (p != caller.patient_id)
        return refusal(rule::kScope, "patient/ scopes reach the launch patient's data only");

  // Professionals and systems name the patient of every search of patient data.
  if (caller.role == Role::Professional || caller.role == Role::System) {
    const bool member = type.empty() || (interactions::is_compartment_member(defs, "Patient", type) &&
                                         !config.shared_types.count(type));
    if ((i == Interaction::SearchType || i == Interaction::SearchSystem) && member && named_patients->empty() &&
        !patient_found_by_identifier)
      return refusal(rule::kPatientContextRequired, "a search of patient data must name the patient");
    if ((i == Interaction::HistoryType && member) || i == Interaction::HistorySystem)
      return refusal(rule::kPatientContextRequired, "history across patients is not offered; read one resource's history");
  }
  return Status::ok();
}

}  // namespace espace::policy
