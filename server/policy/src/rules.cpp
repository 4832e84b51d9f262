// DmpRules: the resource-level access rules of one request (see rules.h and
// server/policy/README.md for each rule's meaning).
#include "espace/policy/rules.h"

#include <rapidjson/document.h>

#include <algorithm>
#include <functional>

#include "espace/fhir/json.h"
#include "espace/fhir/node.h"
#include "espace/interactions/compartments.h"
#include "bounded_cache.h"
#include "rules_json.h"

namespace espace::policy {

using fhir::ErrorCategory;
using fhir::Status;

Status refusal(const char* rule_name, const std::string& why) {
  fhir::Issue issue;
  issue.code = "forbidden";
  issue.diagnostics = why + " (rule " + rule_name + ")";
  issue.message_id = std::string("policy-") + rule_name;
  return Status::error(ErrorCategory::Forbidden, std::move(issue));
}

const char* public_rule(const Caller& caller, const char* rule_name) {
  std::string_view r = rule_name;
  const bool patient_level = r == rule::kBlocked || r == rule::kBreakGlassOpposed || r == rule::kAccountOpposed ||
                             r == rule::kAccountClosed || r == rule::kAccountDestroyed || r == rule::kNoGrant ||
                             r == rule::kDeviceAppConsent;
  if (!patient_level) return rule_name;
  if (caller.role == Role::Professional || caller.role == Role::System) return rule::kNoGrant;
  if (caller.role == Role::LegalRepresentative && r == rule::kBlocked) return rule::kNoGrant;
  return rule_name;
}

namespace {

constexpr int kMaxDepth = 3;  // Binary -> DocumentReference, deleted -> previous version

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Codes of the ANS confidentiality system in meta.security and securityLabel.
std::vector<std::string> visibility_codes(const rapidjson::Value& doc) {
  std::vector<std::string> codes;
  auto take = [&](const rapidjson::Value& coding) {
    if (json::str(coding, "system") == dmp::kConfidentialitySystem) codes.push_back(json::str(coding, "code"));
  };
  if (const rapidjson::Value* meta = json::obj(doc, "meta"))
    if (const rapidjson::Value* sec = json::arr(*meta, "security"))
      for (const auto& c : sec->GetArray()) take(c);
  if (const rapidjson::Value* labels = json::arr(doc, "securityLabel"))
    for (const auto& cc : labels->GetArray())
      if (const rapidjson::Value* codings = json::arr(cc, "coding"))
        for (const auto& c : codings->GetArray()) take(c);
  return codes;
}

// Every security label (any system) but MASQUE_PS, as "system|code", sorted:
// what a patient's masking edit must leave unchanged.
std::vector<std::string> labels_but_masking(const rapidjson::Value& doc) {
  std::vector<std::string> out;
  auto take = [&](const rapidjson::Value& coding) {
    std::string system = json::str(coding, "system"), code = json::str(coding, "code");
    if (system == dmp::kConfidentialitySystem && code == dmp::kMaskedToProfessionals) return;
    out.push_back(system + "|" + code);
  };
  if (const rapidjson::Value* meta = json::obj(doc, "meta"))
    if (const rapidjson::Value* sec = json::arr(*meta, "security"))
      for (const auto& c : sec->GetArray()) take(c);
  if (const rapidjson::Value* labels = json::arr(doc, "securityLabel"))
    for (const auto& cc : labels->GetArray())
      if (const rapidjson::Value* codings = json::arr(cc, "coding"))
        for (const auto& c : codings->GetArray()) take(c);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> loinc_types(const rapidjson::Value& doc, const std::string& loinc) {
  std::vector<std::string> codes;
  if (const rapidjson::Value* type = json::obj(doc, "type"))
    if (const rapidjson::Value* codings = json::arr(*type, "coding"))
      for (const auto& c : codings->GetArray())
        if (json::str(c, "system") == loinc) codes.push_back(json::str(c, "code"));
  return codes;
}

// What the rules read from the content of a compartment resource whatever
// the caller: its patients (a typed parse and the compartment definition,
// the costliest part of a decision), confidentiality codes and LOINC types.
struct ContentFacts {
  std::vector<std::string> owners, codes, loinc;
};

// ContentFacts of stored versions, across requests. A stored version never
// changes, and (type, id, version, lastUpdated) names one: commit times are
// unique, so a version erased and written again gets another key. The size
// and a hash of the JSON are checked as well, with the definitions and LOINC
// system they were computed with, so a hit is that very content.
class ContentFactsCache {
 public:
  static std::string key(const storage::ResourceVersion& v, const fhir::Definitions& defs, const std::string& loinc) {
    std::string k = v.type;
    k += '/';
    k += v.id;
    k += '/';
    k += std::to_string(v.version);
    k += '@';
    k += std::to_string(v.last_updated_us);
    k += '#';
    k += std::to_string(reinterpret_cast<uintptr_t>(&defs));
    k += '#';
    k += loinc;
    return k;
  }

  bool find(const std::string& key, std::string_view json, ContentFacts* out) {
    const size_t digest = std::hash<std::string_view>{}(json);
    return entries_.find(key, [&](const Entry& e) {
      if (e.size != json.size() || e.digest != digest) return false;
      *out = e.facts;
      return true;
    });
  }

  void keep(std::string key, std::string_view json, const ContentFacts& facts) {
    entries_.keep(std::move(key), Entry{json.size(), std::hash<std::string_view>{}(json), facts});
  }

 private:
  struct Entry {
    size_t size;
    size_t digest;
    ContentFacts facts;
  };
  BoundedCache<Entry> entries_{50000};
};

ContentFactsCache& content_facts_cache() {
  static ContentFactsCache cache;
  return cache;
}

ConsentActor actor_of(const rapidjson::Value& reference) {
  ConsentActor a;
  a.reference = json::str(reference, "reference");
  if (const rapidjson::Value* id = json::obj(reference, "identifier")) {
    a.system = json::str(*id, "system");
    a.value = json::str(*id, "value");
  }
  if (a.reference.find("://") != std::string::npos) {
    size_t slash = a.reference.rfind('/');
    size_t type_slash = slash == std::string::npos || slash == 0 ? std::string::npos : a.reference.rfind('/', slash - 1);
    if (type_slash != std::string::npos) a.reference = a.reference.substr(type_slash + 1);
  }
  return a;
}

// The values of our settings extensions on a Patient, for "unchanged" checks.
std::vector<std::string> settings_of(const rapidjson::Value& doc) {
  std::vector<std::string> out;
  if (const rapidjson::Value* exts = json::arr(doc, "extension"))
    for (const auto& e : exts->GetArray()) {
      std::string url = json::str(e, "url");
      if (url == dmp::kAccountStateUrl || url == dmp::kBreakGlassOppositionUrl || url == dmp::kHeirsForbiddenUrl ||
          url == dmp::kLegalProtectionUrl)
        out.push_back(url + "=" + json::str(e, "valueCode") + (json::boolean(e, "valueBoolean") ? "true" : ""));
    }
  std::sort(out.begin(), out.end());
  return out;
}

bool is_active(const ConsentFact& c, int64_t now_us) {
  return (c.start_us == 0 || c.start_us <= now_us) && (c.end_us == 0 || now_us <= c.end_us);
}

}  // namespace

DmpRules::DmpRules(const RulesConfig& config, const fhir::Definitions& defs, storage::Storage& store, Caller caller,
                   int64_t now_us, std::vector<std::string> named_patients)
    : config_(config),
      defs_(defs),
      store_(store),
      caller_(std::move(caller)),
      now_us_(now_us),
      named_patients_(std::move(named_patients)) {
  if (caller_.purpose_of_use.empty()) {
    auto it = config_.purposes.find(role_name(caller_.role));
    if (it != config_.purposes.end()) caller_.purpose_of_use = it->second.fallback;
  }
}

const PatientFacts& DmpRules::facts(const std::string& patient_id) {
  auto it = facts_.find(patient_id);
  if (it != facts_.end()) return it->second;
  PatientFacts f;
  if (Status s = load_patient_facts(store_, patient_id, now_us_, &f); !s) {
    // A storage failure must not open anything: the patient reads as absent.
    f = PatientFacts();
    f.id = patient_id;
  }
  return facts_.emplace(patient_id, std::move(f)).first->second;
}

std::string DmpRules::profession() const {
  if (!caller_.profession_code.empty()) return caller_.profession_code;
  return caller_.role == Role::System ? "system" : "";
}

bool scopes_allow(const Caller& caller, std::string_view type, char permission, bool* patient_only) {
  if (patient_only) *patient_only = false;
  if (caller.scopes.empty()) return true;  // no SMART scopes: the role's rights alone
  bool allowed = false, only_patient = true;
  for (const Scope& s : caller.scopes)
    if ((s.type == "*" || s.type == type) && s.permissions.find(permission) != std::string::npos) {
      allowed = true;
      only_patient = only_patient && s.context == Scope::Context::Patient;
    }
  if (patient_only) *patient_only = allowed && only_patient;
  return allowed;
}

bool DmpRules::scope_allows(std::string_view type, char permission, bool* patient_only) const {
  return scopes_allow(caller_, type, permission, patient_only);
}

bool DmpRules::resource_names_caller(const std::string& reference) {
  auto cached = reference_matches_.find(reference);
  if (cached != reference_matches_.end()) return cached->second;
  bool match = false;
  size_t slash = reference.find('/');
  std::string type = reference.substr(0, slash), id = slash == std::string::npos ? "" : reference.substr(slash + 1);
  storage::ResourceVersion v;
  if (!id.empty() && (type == "Practitioner" || type == "Organization" || type == "CareTeam" ||
                      type == "PractitionerRole") &&
      store_.read(type, id, &v) && !v.deleted) {
    rapidjson::Document doc;
    doc.Parse(v.json.data(), v.json.size());
    if (!doc.HasParseError() && doc.IsObject()) {
      auto has_identifier = [&](std::string_view system, const std::string& value) {
        if (value.empty()) return false;
        if (const rapidjson::Value* ids = json::arr(doc, "identifier"))
          for (const auto& i : ids->GetArray())
            if (json::str(i, "system") == system && json::str(i, "value") == value) return true;
        return false;
      };
      if (type == "Practitioner") {
        match = has_identifier(dmp::kRppsSystem, caller_.national_id);
      } else if (type == "Organization") {
        match = has_identifier(dmp::kFinessSystem, caller_.organization_id);
      } else if (type == "PractitionerRole") {
        if (const rapidjson::Value* p = json::obj(doc, "practitioner")) {
          ConsentActor a = actor_of(*p);
          match = (!a.reference.empty() && a.reference == caller_.fhir_user) ||
                  (a.system == dmp::kRppsSystem && !a.value.empty() && a.value == caller_.national_id);
          if (!match && a.reference.starts_with("Practitioner/")) {
            reference_matches_[reference] = false;  // no cycles through the recursion below
            match = resource_names_caller(a.reference);
          }
        }
      } else if (type == "CareTeam") {
        std::string status = json::str(doc, "status");
        if (status.empty() || status == "active")
          if (const rapidjson::Value* parts = json::arr(doc, "participant"))
            for (const auto& p : parts->GetArray()) {
              const rapidjson::Value* member = json::obj(p, "member");
              if (!member) continue;
              ConsentActor a = actor_of(*member);
              if (a.reference.starts_with("CareTeam/")) continue;  // no nested teams
              if (matches_caller(a)) {
                match = true;
                break;
              }
            }
      }
    }
  }
  reference_matches_[reference] = match;
  return match;
}

bool DmpRules::matches_caller(const ConsentActor& actor) {
  if (!actor.value.empty()) {
    if (actor.system == dmp::kRppsSystem && actor.value == caller_.national_id) return true;
    if (actor.system == dmp::kFinessSystem && actor.value == caller_.organization_id) return true;
  }
  if (actor.reference.empty()) return false;
  if (!caller_.fhir_user.empty() && actor.reference == caller_.fhir_user) return true;
  return resource_names_caller(actor.reference);
}

bool DmpRules::is_gp(const PatientFacts& f) {
  for (const ConsentActor& gp : f.general_practitioners)
    if (matches_caller(gp)) return true;
  return false;
}

Verdict DmpRules::patient_access(const std::string& patient_id) {
  auto cached = access_.find(patient_id);
  if (cached != access_.end()) return cached->second;
  auto decided = [&](bool visible, const char* rule_name) {
    Verdict v{visible, rule_name};
    access_[patient_id] = v;
    return v;
  };
  if (caller_.role == Role::Open) return decided(true, rule::kOpen);
  if (!caller_.authenticated || caller_.role == Role::Anonymous) return decided(false, rule::kAuthenticationRequired);
  if (caller_.role == Role::Administrator) return decided(false, rule::kAdminNoClinical);
  if (caller_.role == Role::Patient) {
    if (patient_id != caller_.patient_id) return decided(false, rule::kOtherPatient);
    const PatientFacts& f = facts(patient_id);
    if (f.exists && f.state == AccountState::Destroyed) return decided(false, rule::kAccountDestroyed);
    return decided(true, rule::kOwn);  // closed / opposed: only the Patient itself (decide_content)
  }
  if (caller_.role == Role::LegalRepresentative && !contains(caller_.represented_patients, patient_id))
    return decided(false, rule::kOtherPatient);

  const PatientFacts& f = facts(patient_id);
  if (!f.exists) return decided(false, rule::kNoGrant);  // the same answer as an existing record without a grant
  switch (f.state) {
    case AccountState::Destroyed: return decided(false, rule::kAccountDestroyed);
    case AccountState::Opposed: return decided(false, rule::kAccountOpposed);
    case AccountState::Closed: return decided(false, rule::kAccountClosed);
    default: break;
  }
  bool blocked = false, granted = false;
  for (const ConsentFact& c : f.consents) {
    if (!is_active(c, now_us_)) continue;
    bool names_caller = false;
    for (const ConsentActor& a : c.actors)
      if (matches_caller(a)) {
        names_caller = true;
        break;
      }
    if (!names_caller) continue;
    (c.permit ? granted : blocked) = true;
  }
  if (blocked) return decided(false, rule::kBlocked);  // a block always wins

  if (caller_.role == Role::LegalRepresentative) {
    if (f.deceased) return decided(!f.heirs_forbidden, f.heirs_forbidden ? rule::kHeirsForbidden : rule::kHeir);
    if (f.minor || f.legal_protection) return decided(true, rule::kRepresentative);
    return decided(false, rule::kRepresentationEnded);
  }
  // Professionals and systems.
  if (is_gp(f)) return decided(true, rule::kGp);
  if (granted) return decided(true, rule::kGrant);
  if (Verdict app; device_app_access(patient_id, &app)) return decided(app.visible, app.rule);
  if (caller_.purpose_of_use == config_.break_glass_purpose)
    return decided(!f.break_glass_opposed, f.break_glass_opposed ? rule::kBreakGlassOpposed : rule::kBreakGlass);
  return decided(false, rule::kNoGrant);
}

std::vector<std::string> DmpRules::patients_of(const storage::ResourceVersion& version) {
  std::vector<std::string> patients;
  decide(version, &patients, 0);
  return patients;
}

Verdict DmpRules::decide(const storage::ResourceVersion& version, std::vector<std::string>* patients, int depth) {
  if (!version.deleted) return decide_content(version.type, version.json, patients, depth, &version);
  // A delete marker has no body: it is judged by the last version that had
  // one, so a hidden resource stays hidden (404, not 410) once deleted.
  storage::ResourceVersion previous;
  for (int64_t v = version.version - 1; v >= 1 && v >= version.version - 8; --v) {
    if (!store_.vread(version.type, version.id, v, &previous)) break;
    if (!previous.deleted) return decide_content(previous.type, previous.json, patients, depth, &previous);
  }
  if (caller_.role == Role::Open) return {true, rule::kOpen};
  return {caller_.role == Role::System, caller_.role == Role::System ? rule::kSystem : rule::kNoPatientLink};
}

Verdict DmpRules::decide_content(const std::string& type, std::string_view json_text,
                                 std::vector<std::string>* patients, int depth, const storage::ResourceVersion* stored) {
  if (caller_.role == Role::Open) return {true, rule::kOpen};
  if (!caller_.authenticated || caller_.role == Role::Anonymous) return {false, rule::kAuthenticationRequired};
  if (caller_.role == Role::Administrator) {
    if (config_.administrator_types.count(type)) return {true, rule::kAdminConformance};
    return {false, rule::kAdminNoClinical};
  }
  bool read_patient_only = false, search_patient_only = false;
  const bool can_read = scope_allows(type, 'r', &read_patient_only);
  const bool can_search = scope_allows(type, 's', &search_patient_only);
  if (!can_read && !can_search) return {false, rule::kScope};
  // patient/ scopes reach the launch patient's data only.
  const bool launch_patient_only = (!can_read || read_patient_only) && (!can_search || search_patient_only);

  // A compartment resource's owners, codes and LOINC types may be known
  // already (ContentFactsCache); the JSON is then parsed only if a rule
  // below needs more of it.
  const bool patient_reader = caller_.role == Role::Patient || caller_.role == Role::LegalRepresentative;
  const bool compartment_content = type != "Binary" && type != "AuditEvent" && !config_.shared_types.count(type) &&
                                   interactions::is_compartment_member(defs_, "Patient", type);
  std::string cache_key;
  ContentFacts content;
  bool known = false;
  if (compartment_content && stored) {
    cache_key = ContentFactsCache::key(*stored, defs_, config_.habilitations.loinc_system());
    known = content_facts_cache().find(cache_key, json_text, &content);
  }
  rapidjson::Document doc;
  bool parsed = false;
  auto parse = [&]() -> bool {
    if (!parsed) {
      doc.Parse(json_text.data(), json_text.size());
      parsed = true;
    }
    return !doc.HasParseError() && doc.IsObject();
  };
  if (!known && !parse()) return {false, rule::kNoPatientLink};

  std::vector<std::string> owners;
  if (known) {
    owners = content.owners;
  } else if (type == "Binary") {
    const rapidjson::Value* context = json::obj(doc, "securityContext");
    ConsentActor target = context ? actor_of(*context) : ConsentActor();
    if (target.reference.starts_with("DocumentReference/") && depth < kMaxDepth) {
      storage::ResourceVersion docref;
      if (store_.read("DocumentReference", target.reference.substr(18), &docref) && !docref.deleted)
        return decide_content("DocumentReference", docref.json, patients, depth + 1);
    } else if (target.reference.starts_with("Patient/")) {
      owners.push_back(target.reference.substr(8));
    }
    if (owners.empty()) {
      // No DocumentReference to follow: nobody but a system knows whose it is.
      if (caller_.role == Role::System) return {true, rule::kSystem};
      return {false, rule::kBinaryUnbound};
    }
  } else if (type == "AuditEvent" && !patient_reader) {
    return {false, rule::kAuditPatientOnly};
  } else if (config_.shared_types.count(type)) {
    return {true, rule::kShared};
  } else if (!interactions::is_compartment_member(defs_, "Patient", type)) {
    if (caller_.role == Role::System) return {true, rule::kSystem};
    return {false, rule::kSystemOnly};
  } else {
    fhir::Node node;
    if (!fhir::parse_json(defs_, json_text, &node)) return {false, rule::kNoPatientLink};
    owners = interactions::compartment_owners(defs_, "Patient", node);
    if (compartment_content) {
      content.owners = owners;
      content.codes = visibility_codes(doc);
      content.loinc = loinc_types(doc, config_.habilitations.loinc_system());
      known = true;
      if (stored) content_facts_cache().keep(std::move(cache_key), json_text, content);
    }
    if (owners.empty()) {
      if (caller_.role == Role::System) return {true, rule::kSystem};
      return {false, rule::kNoPatientLink};
    }
  }

  const char* decided = nullptr;
  for (const std::string& owner : owners) {
    if (launch_patient_only && owner != caller_.patient_id) return {false, rule::kScope};
    Verdict v = patient_access(owner);
    if (!v.visible) return v;
    if (!decided || v.rule == rule::kBreakGlass) decided = v.rule;
    if (caller_.role == Role::Patient && type != "Patient") {
      const PatientFacts& f = facts(owner);
      if (f.exists && f.state == AccountState::Closed) return {false, rule::kAccountClosed};
      if (f.exists && f.state == AccountState::Opposed) return {false, rule::kAccountOpposed};
    }
  }
  if (decided == rule::kDeviceAppConsent) {
    if (!parse()) return {false, rule::kNoPatientLink};
    if (Verdict v = device_app_content(type, doc); !v.visible) return v;
  }
  if (type == "AuditEvent") {
    decided = rule::kAuditOwn;
    // An access event names what was read. The patient must not learn from it
    // of a resource hidden from them (INVISIBLE_PATIENT, ...): the event stays
    // hidden while any resource it names is.
    if (const rapidjson::Value* entities = json::arr(doc, "entity"); entities && depth < kMaxDepth) {
      for (const auto& e : entities->GetArray()) {
        const rapidjson::Value* what = e.IsObject() ? json::obj(e, "what") : nullptr;
        std::string ref = what ? json::str(*what, "reference") : std::string();
        if (ref.empty() || ref.starts_with("Patient/")) continue;
        size_t slash = ref.find('/');
        if (slash == std::string::npos) continue;
        std::string named_type = ref.substr(0, slash);
        std::string named_id = ref.substr(slash + 1, ref.find('/', slash + 1) - slash - 1);
        storage::ResourceVersion named;
        if (!store_.read(named_type, named_id, &named)) continue;  // never stored: nothing to reveal
        std::vector<std::string> ignored;
        if (!decide(named, &ignored, depth + 1).visible) return {false, rule::kAuditHiddenEntity};
      }
    }
  }

  std::vector<std::string> codes = known ? std::move(content.codes) : visibility_codes(doc);
  auto labelled = [&](std::string_view code) { return std::find(codes.begin(), codes.end(), code) != codes.end(); };
  switch (caller_.role) {
    case Role::Patient:
      if (labelled(dmp::kInvisibleToPatient)) return {false, rule::kInvisiblePatient};
      break;
    case Role::LegalRepresentative:
      if (labelled(dmp::kInvisibleToPatient)) return {false, rule::kInvisiblePatient};
      if (labelled(dmp::kInvisibleToRepresentatives)) return {false, rule::kInvisibleRepresentatives};
      break;
    default: {  // professionals and systems
      std::string prof = profession();
      if (!config_.habilitations.allows_type(prof, type)) return {false, rule::kHabilitation};
      if ((type == "DocumentReference" || type == "Composition") &&
          !config_.habilitations.allows_document(
              prof, known ? content.loinc : loinc_types(doc, config_.habilitations.loinc_system())))
        return {false, rule::kHabilitation};
      if (labelled(dmp::kMaskedToProfessionals)) {
        bool author = false;
        if (!parse()) return {false, rule::kNoPatientLink};
        if (const rapidjson::Value* authors = json::arr(doc, "author"))
          for (const auto& a : authors->GetArray())
            if (matches_caller(actor_of(a))) {
              author = true;
              break;
            }
        if (author) {
          decided = rule::kAuthor;
        } else {
          bool gp = true;
          for (const std::string& owner : owners) gp = gp && is_gp(facts(owner));
          if (!gp) return {false, rule::kMasked};
          decided = rule::kGp;
        }
      }
      break;
    }
  }
  if (patients) patients->insert(patients->end(), owners.begin(), owners.end());
  return {true, decided ? decided : rule::kSystem};
}

namespace {

// The guard records the versions themselves; the rules add whose they are and why.
void note(AccessRecord* record, const std::vector<std::string>& patients, const char* rule_name) {
  if (!record) return;
  for (const std::string& p : patients)
    if (!contains(record->patients, p)) record->patients.push_back(p);
  if (!contains(record->rules, rule_name)) record->rules.emplace_back(rule_name);
  if (std::string_view(rule_name) == rule::kBreakGlass) record->break_glass = true;
}

}  // namespace

Verdict DmpRules::may_see(const storage::ResourceVersion& version, AccessRecord* record) {
  std::vector<std::string> patients;
  Verdict v = decide(version, &patients, 0);
  if (v.visible) {
    // Break-glass is recorded whenever it opened the patient, even when a
    // narrower rule (author, GP) named the decision on this version.
    for (const std::string& p : patients)
      if (Verdict pv = patient_access(p); pv.rule == rule::kBreakGlass && record) {
        record->break_glass = true;
        if (!contains(record->rules, rule::kBreakGlass)) record->rules.emplace_back(rule::kBreakGlass);
      }
    note(record, patients, v.rule);
  } else if (record) {
    ++record->hidden;
  }
  return v;
}

Status DmpRules::may_write(const storage::ResourceVersion* before, const storage::ResourceVersion& after,
                           AccessRecord* record) {
  if (caller_.role == Role::Open) return Status::ok();
  if (!caller_.authenticated || caller_.role == Role::Anonymous)
    return refusal(rule::kAuthenticationRequired, "writing needs an authenticated caller");
  const std::string& type = after.type;
  if (type == "AuditEvent") {
    Status s = refusal(rule::kAuditServerOnly, "AuditEvent resources are written by the server only");
    s.set_category(ErrorCategory::NotAllowed);
    return s;
  }
  if (caller_.role == Role::Administrator)
    return refusal(rule::kAdminNoClinical, "administrators do not write resources");

  // A `before` the caller may not see is treated as absent (no oracle).
  std::vector<std::string> before_patients;
  const storage::ResourceVersion* seen_before = nullptr;
  if (before && decide(*before, &before_patients, 0).visible) seen_before = before;
  if (!seen_before) before_patients.clear();
  const bool exists_for_caller = seen_before && !seen_before->deleted;

  char permission = after.deleted ? 'd' : exists_for_caller ? 'u' : (after.method == "PUT" ? 'u' : 'c');
  bool write_patient_only = false;
  if (!scope_allows(type, permission, &write_patient_only))
    return refusal(rule::kScope, std::string("the token's scopes do not allow '") + permission + "' on " + type);

  if (!seen_before && after.deleted)
    return refusal(rule::kNoGrant, "this resource cannot be deleted by this caller");
  const bool new_patient_by_system =
      type == "Patient" && !exists_for_caller && caller_.role == Role::System && !facts(after.id).exists;
  if (!seen_before && after.method == "PUT" && caller_.role != Role::System)
    return refusal(rule::kUpdateAsCreate, "an update may create a resource only for systems");
  if (!seen_before && after.method == "PUT" && caller_.role == Role::System && before &&
      !new_patient_by_system)
    return refusal(rule::kUpdateAsCreate, "an update may create a resource only for systems");

  std::vector<std::string> patients;
  const char* decided = rule::kSystem;
  if (!new_patient_by_system) {
    const storage::ResourceVersion& content = after.deleted ? *seen_before : after;
    Verdict v = decide(content, &patients, 0);
    if (!v.visible) return refusal(public_rule(caller_, v.rule), "the caller may not write this resource");
    decided = v.rule;
  } else {
    patients.push_back(after.id);
  }
  if (write_patient_only)
    for (const std::string& p : patients)
      if (p != caller_.patient_id)
        return refusal(rule::kScope, "patient/ scopes reach the launch patient's data only");
  if (seen_before && !seen_before->deleted && !after.deleted) {
    std::vector<std::string> a = patients, b = before_patients;
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    if (a != b) return refusal(rule::kPatientChange, "a write may not move data to another patient's record");
  }

  rapidjson::Document after_doc, before_doc;
  if (!after.deleted) after_doc.Parse(after.json.data(), after.json.size());
  if (exists_for_caller) before_doc.Parse(seen_before->json.data(), seen_before->json.size());
  const bool parsed = !after_doc.HasParseError() && !before_doc.HasParseError();

  switch (caller_.role) {
    case Role::Patient:
    case Role::LegalRepresentative:
      if (type == "Communication") {
        if (Status s = check_patient_message(exists_for_caller, after.deleted, parsed ? &after_doc : nullptr); !s)
          return s;
        break;
      }
      if (type == "Appointment") {
        if (Status s = check_patient_appointment(exists_for_caller && parsed ? &before_doc : nullptr,
                                                 !after.deleted && parsed ? &after_doc : nullptr);
            !s)
          return s;
        break;
      }
      if (config_.patient_writable_types.count(type)) {
        // Withdrawing a grant or a block is the one deletion a patient makes;
        // the rest of the record is not the patient's to erase.
        if (after.deleted && type != "Consent")
          return refusal(rule::kPatientWrite, "a patient may not delete " + type + " resources");
        if (type == "Patient" && !exists_for_caller)
          return refusal(rule::kPatientCreate, "a patient's record is opened by the platform, not by the patient");
        break;
      }
      if (config_.patient_label_editable_types.count(type) && exists_for_caller && !after.deleted && parsed) {
        // Masking / unmasking: only MASQUE_PS may change.
        rapidjson::Document a, b;
        a.CopyFrom(after_doc, a.GetAllocator());
        b.CopyFrom(before_doc, b.GetAllocator());
        for (rapidjson::Document* d : {&a, &b}) {
          d->RemoveMember("meta");
          d->RemoveMember("securityLabel");
          d->RemoveMember("text");
        }
        if (a == b && labels_but_masking(after_doc) == labels_but_masking(before_doc)) break;
        return refusal(rule::kLabelEditOnly, "a patient may only mask or unmask a document (MASQUE_PS)");
      }
      return refusal(rule::kPatientWrite, "a patient may not write " + type + " resources");
    default:  // professionals and systems
      if (config_.professional_never_writes.count(type))
        return refusal(rule::kConsentPatientOnly, type + " resources are the patient's choices");
      if (config_.shared_types.count(type) && caller_.role != Role::System)
        return refusal(rule::kSharedWrite, type + " resources are maintained by platform systems");
      if (auto w = config_.restricted_writers.find(type);
          w != config_.restricted_writers.end() && !w->second.count(profession()))
        return refusal(rule::kWriterProfession, type + " resources are not written by this profession");
      if (type == "Patient") {
        if (!exists_for_caller && caller_.role != Role::System)
          return refusal(rule::kPatientCreate, "patients are registered by systems");
        if (exists_for_caller && !after.deleted && parsed && settings_of(after_doc) != settings_of(before_doc))
          return refusal(rule::kSettingsPatientOnly, "the record's settings are changed by the patient only");
        if (after.deleted && caller_.role != Role::System)
          return refusal(rule::kPatientCreate, "patients are removed by systems");
      }
      break;
  }
  if (!after.deleted && parsed) {
    // Systems relay what named professionals entered; everyone else signs
    // their own writes (the audit trail records systems).
    auto entered = config_.entered_by.find(type);
    if (entered != config_.entered_by.end() && !entered->second.empty() && caller_.role != Role::System &&
        !names_caller(after_doc, entered->second)) {
      Status s = refusal(rule::kEnteredBy, type + "." + entered->second.front() +
                                               " must name the caller: every write records who entered it");
      s.set_category(ErrorCategory::Unprocessable);
      s.issues().front().expression = type + "." + entered->second.front();
      return s;
    }
    if (type == "MedicationDispense")
      if (Status s = check_dispense(after_doc, patients); !s) return s;
    if (type == "Communication")
      if (Status s = check_attachments(after_doc); !s) return s;
    if (decided == rule::kDeviceAppConsent)
      if (Status s = check_app_measurement(after_doc); !s) return s;
  }
  if (type == "MedicationRequest") {
    if (after.deleted) {
      written_prescriptions_.erase(after.id);
    } else {
      std::vector<std::string> owners = patients;
      std::sort(owners.begin(), owners.end());
      written_prescriptions_[after.id] = std::move(owners);
    }
  }
  note(record, patients, decided);
  for (const std::string& p : patients)
    if (record && patient_access(p).rule == rule::kBreakGlass) record->break_glass = true;
  return Status::ok();
}

namespace {

// The Reference objects at a dotted path ("performer.actor"), through arrays.
void references_at(const rapidjson::Value& node, std::string_view path, std::vector<const rapidjson::Value*>* out) {
  if (node.IsArray()) {
    for (const auto& item : node.GetArray()) references_at(item, path, out);
    return;
  }
  if (path.empty()) {
    if (node.IsObject()) out->push_back(&node);
    return;
  }
  size_t dot = path.find('.');
  std::string name(path.substr(0, dot));
  if (const rapidjson::Value* child = json::member(node, name.c_str()))
    references_at(*child, dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1), out);
}

}  // namespace

bool DmpRules::names_caller(const rapidjson::Value& resource, const std::vector<std::string>& paths) {
  for (const std::string& path : paths) {
    std::vector<const rapidjson::Value*> references;
    references_at(resource, path, &references);
    for (const rapidjson::Value* r : references) {
      ConsentActor a = actor_of(*r);
      // A patient's token need not carry fhirUser: the launch patient is who they are.
      if (caller_.role == Role::Patient && !caller_.patient_id.empty() && a.reference == "Patient/" + caller_.patient_id)
        return true;
      if (matches_caller(a)) return true;
    }
  }
  return false;
}

Status DmpRules::check_dispense(const rapidjson::Value& dispense, const std::vector<std::string>& patients) {
  // One answer for "absent" and "another patient's": no oracle on other records.
  auto refuse = [](const std::string& why) {
    Status s = refusal(rule::kDispensePrescription, why);
    s.set_category(ErrorCategory::Unprocessable);
    s.issues().front().expression = "MedicationDispense.authorizingPrescription";
    return s;
  };
  const char* kWhy = "authorizingPrescription must reference a MedicationRequest of the same patient";
  const rapidjson::Value* prescriptions = json::arr(dispense, "authorizingPrescription");
  if (!prescriptions || prescriptions->Empty())
    return refuse("a dispensation names the prescription it fulfils (authorizingPrescription)");
  std::vector<std::string> expected = patients;
  std::sort(expected.begin(), expected.end());
  for (const auto& p : prescriptions->GetArray()) {
    std::string reference = actor_of(p).reference;
    constexpr std::string_view kPrefix = "MedicationRequest/";
    if (reference.compare(0, kPrefix.size(), kPrefix) != 0) return refuse(kWhy);
    std::string id = reference.substr(kPrefix.size());
    id = id.substr(0, id.find('/'));  // a versioned reference names the same request
    std::vector<std::string> owners;
    if (auto written = written_prescriptions_.find(id); written != written_prescriptions_.end()) {
      owners = written->second;  // written earlier in this request (a transaction), not yet in the store
    } else {
      storage::ResourceVersion request;
      if (id.empty() || !store_.read("MedicationRequest", id, &request) || request.deleted) return refuse(kWhy);
      owners = patients_of(request);
      std::sort(owners.begin(), owners.end());
    }
    if (owners.empty() || owners != expected) return refuse(kWhy);
  }
  return Status::ok();
}

Status DmpRules::restrict_search(storage::SearchQuery* query) {
  if (caller_.role == Role::Open) return Status::ok();
  // Chains and _has into types that can hide single resources would answer
  // "does a hidden match exist?": refused outright.
  const bool professional = caller_.role == Role::Professional || caller_.role == Role::System;
  auto hideable = [&](const std::string& t) {
    return config_.hideable_types.count(t) > 0 ||
           (professional && !t.empty() && !config_.habilitations.allows_type(profession(), t));
  };
  std::function<Status(const storage::SearchQuery&, int)> walk = [&](const storage::SearchQuery& q, int depth) {
    if (depth > 8) return Status::ok();
    for (const storage::Condition& c : q.all_of) {
      for (const storage::IndexTest& t : c.any_of)
        if (t.target) {
          if (hideable(t.target->type))
            return refusal(rule::kChainOnHideable, "chained search into " + t.target->type + " is not offered");
          if (Status s = walk(*t.target, depth + 1); !s) return s;
        }
      if (c.kind == storage::Condition::Kind::Has) {
        if (hideable(c.has_type)) return refusal(rule::kChainOnHideable, "_has on " + c.has_type + " is not offered");
        if (c.has_query)
          if (Status s = walk(*c.has_query, depth + 1); !s) return s;
      }
    }
    return Status::ok();
  };
  if (Status s = walk(*query, 0); !s) return s;

  std::vector<std::string> compartments;
  if (caller_.role == Role::Patient || caller_.role == Role::LegalRepresentative) {
    std::vector<std::string> candidates = caller_.role == Role::Patient ? std::vector<std::string>{caller_.patient_id}
                                                                        : caller_.represented_patients;
    for (const std::string& p : candidates)
      if (!p.empty() && patient_access(p).visible) compartments.push_back(p);
  } else if (professional) {
    compartments = named_patients_;
  } else {
    return Status::ok();  // administrators: begin() let through conformance types only
  }

  const std::string& type = query->type;
  if (!type.empty() && !interactions::is_compartment_member(defs_, "Patient", type)) return Status::ok();
  if (compartments.empty()) {
    if (professional && type == "Patient") return Status::ok();  // found by identifier; each Patient then judged
    if (professional)
      return refusal(rule::kPatientContextRequired, "a search of patient data must name the patient");
    // Nothing reachable: a condition no resource meets ("-" is never an id).
    storage::Condition none;
    none.kind = storage::Condition::Kind::Id;
    none.ids = {"-"};
    query->all_of.push_back(std::move(none));
    return Status::ok();
  }
  // A search that names its patients itself (patient=, subject=Patient/...)
  // among the reachable ones needs no second condition saying the same: it
  // would cost the storage a selectivity probe and a test per candidate.
  if (interactions::confined_to_compartments(defs_, "Patient", compartments, *query)) return Status::ok();
  storage::Condition cond;
  std::vector<std::string> member_types;
  if (Status s = interactions::compartments_condition(defs_, "Patient", compartments, type, &cond, &member_types); !s)
    return s;
  query->all_of.push_back(std::move(cond));
  if (type.empty()) {
    std::vector<std::string> both;
    if (query->types.empty()) {
      both = member_types;
    } else {
      for (const std::string& t : query->types)
        if (contains(member_types, t)) both.push_back(t);
    }
    query->types = both.empty() ? std::vector<std::string>{"-"} : both;
  }
  return Status::ok();
}

}  // namespace espace::policy
