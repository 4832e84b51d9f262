// The DMP access rules one by one, without HTTP: facts, data files,
// request-level rules, and DmpRules over a real SQLite store.
#include "espace/policy/rules.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "espace/fhir/json.h"
#include "espace/interactions/api.h"
#include "espace/storage/storage.h"
#include "model_fixture.h"
#include "rules_fixture.h"

namespace {

using namespace espace;
using policy::Caller;
using policy::Role;

using policy_test::at;
using policy_test::config;
using policy_test::rule_of;
using Space = policy_test::RulesSpace;

const char* kRpps = "urn:oid:1.2.250.1.71.4.2.1";

std::string practitioner(const std::string& id, const std::string& rpps) {
  return R"({"resourceType":"Practitioner","id":")" + id + R"(","identifier":[{"system":")" + kRpps +
         R"(","value":")" + rpps + R"("}]})";
}

std::string consent(const std::string& id, const std::string& patient, const std::string& type,
                    const std::string& actor_reference, const std::string& period = "") {
  return R"({"resourceType":"Consent","id":")" + id + R"(","status":"active",
    "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
    "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
    "patient":{"reference":"Patient/)" + patient + R"("},
    "provision":{"type":")" + type + R"(",)" + (period.empty() ? "" : "\"period\":" + period + ",") +
         R"("actor":[{"role":{"coding":[{"code":"PRCP"}]},"reference":{"reference":")" + actor_reference + R"("}}]}})";
}

Caller professional(const std::string& practitioner_id, const std::string& rpps, const std::string& profession = "10") {
  Caller c;
  c.authenticated = true;
  c.role = Role::Professional;
  c.fhir_user = "Practitioner/" + practitioner_id;
  c.national_id = rpps;
  c.profession_code = profession;
  return c;
}

Caller patient_caller(const std::string& id) {
  Caller c;
  c.authenticated = true;
  c.role = Role::Patient;
  c.patient_id = id;
  return c;
}

}  // namespace

TEST_CASE("rules: FHIR date ranges", "[policy][rules]") {
  int64_t first = 0, last = 0;
  REQUIRE(policy::fhir_date_range("2024", &first, &last));
  CHECK(first == at("2024-01-01"));
  CHECK(last == at("2025-01-01") - 1);
  REQUIRE(policy::fhir_date_range("2024-02", &first, &last));
  CHECK(last == at("2024-03-01") - 1);  // leap year
  REQUIRE(policy::fhir_date_range("2024-05-03T10:00:00+02:00", &first, &last));
  CHECK(first == at("2024-05-03T08:00:00Z"));
  CHECK(last == first + 999999);
  for (const char* bad : {"", "24", "2024-13", "2023-02-29", "2024-05-03T25:00:00Z", "2024-05-03T10:00:00", "2024/05"})
    CHECK_FALSE(policy::fhir_date_range(bad, &first, &last));
}

TEST_CASE("rules: patient facts from the Patient resource", "[policy][rules]") {
  policy::PatientFacts f;
  const int64_t now = at("2026-06-01");
  REQUIRE(policy::patient_facts_from_json(R"({"resourceType":"Patient","id":"p","birthDate":"2008-06-01"})", now, &f));
  CHECK_FALSE(f.minor);  // 18 today
  REQUIRE(policy::patient_facts_from_json(R"({"resourceType":"Patient","id":"p","birthDate":"2008-06-02"})", now, &f));
  CHECK(f.minor);
  REQUIRE(policy::patient_facts_from_json(R"({"resourceType":"Patient","id":"p","birthDate":"2008"})", now, &f));
  CHECK_FALSE(f.minor);  // a partial date counts from its first day
  CHECK(f.state == policy::AccountState::Active);

  std::string settings = R"({"resourceType":"Patient","id":"p","deceasedDateTime":"2025-01-01",
    "extension":[{"url":"https://espace.example/fhir/StructureDefinition/dmp-account-state","valueCode":"closed"},
                 {"url":"https://espace.example/fhir/StructureDefinition/dmp-break-glass-opposition","valueBoolean":true},
                 {"url":"https://espace.example/fhir/StructureDefinition/dmp-heirs-access-forbidden","valueBoolean":true}],
    "generalPractitioner":[{"reference":"https://other.example/fhir/Practitioner/gp1"},
                           {"identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810000000001"}}]})";
  REQUIRE(policy::patient_facts_from_json(settings, now, &f));
  CHECK(f.state == policy::AccountState::Closed);
  CHECK(f.break_glass_opposed);
  CHECK(f.heirs_forbidden);
  CHECK(f.deceased);
  REQUIRE(f.general_practitioners.size() == 2);
  CHECK(f.general_practitioners[0].reference == "Practitioner/gp1");
  CHECK(f.general_practitioners[1].value == "810000000001");

  CHECK_FALSE(policy::patient_facts_from_json(R"({"resourceType":"Observation"})", now, &f));
  CHECK_FALSE(policy::patient_facts_from_json("{not json", now, &f));
}

TEST_CASE("rules: only active consents with actors count", "[policy][rules]") {
  policy::PatientFacts f;
  policy::add_consent_fact(consent("c1", "p", "permit", "Practitioner/a", R"({"start":"2026-01-01","end":"2026-12-31"})"), &f);
  policy::add_consent_fact(consent("c2", "p", "deny", "CareTeam/t"), &f);
  std::string draft = consent("c3", "p", "permit", "Practitioner/b");
  draft.replace(draft.find("\"active\""), 8, "\"draft\"");
  policy::add_consent_fact(draft, &f);
  policy::add_consent_fact(R"({"resourceType":"Consent","status":"active","provision":{"type":"permit"}})", &f);
  REQUIRE(f.consents.size() == 2);
  CHECK(f.consents[0].permit);
  CHECK(f.consents[0].start_us == at("2026-01-01"));
  CHECK(f.consents[0].end_us == at("2027-01-01") - 1);
  CHECK_FALSE(f.consents[1].permit);
  CHECK(f.consents[1].actors.at(0).reference == "CareTeam/t");
}

TEST_CASE("rules: the habilitation matrix and data files", "[policy][rules]") {
  const auto& h = config().habilitations;
  CHECK(h.allows_type("10", "Observation"));
  CHECK(h.allows_document("10", {"75474-7"}));
  CHECK(h.allows_type("21", "MedicationDispense"));
  CHECK_FALSE(h.allows_type("21", "Observation"));
  CHECK(h.allows_document("21", {"57833-6"}));
  CHECK_FALSE(h.allows_document("21", {"75474-7"}));  // no psychiatric notes for pharmacists
  CHECK_FALSE(h.allows_document("21", {}));           // untyped documents only where every type is allowed
  CHECK_FALSE(h.allows_type("", "Patient"));          // no profession, no data
  CHECK_FALSE(h.allows_type("99", "Patient"));
  CHECK(config().purposes.at("professional").allowed.count("ETREAT"));
  CHECK_FALSE(config().purposes.at("professional").allowed.count("HRESCH"));
  CHECK(config().administrator_types.count("ValueSet"));
  CHECK_FALSE(config().administrator_types.count("Observation"));

  policy::Habilitations bad;
  CHECK_FALSE(policy::Habilitations::parse("[]", &bad));
  CHECK_FALSE(policy::Habilitations::parse(R"({"professions":{"10":[]}})", &bad));
}

TEST_CASE("rules: request-level rules", "[policy][rules]") {
  const auto& defs = test_definitions();
  std::vector<std::string> named;
  interactions::FhirRequest req;
  req.interaction = interactions::Interaction::SearchType;
  req.type = "Observation";

  Caller doctor = professional("d", "1");
  CHECK(rule_of(policy::check_request(config(), defs, doctor, req, &named)) == "policy-PATIENT_CONTEXT_REQUIRED");
  req.params = {{"subject", "http://host/fhir/Patient/p1,Patient/p2"}, {"patient:Patient", "p3"}, {"subject", "Group/g"}};
  REQUIRE(policy::check_request(config(), defs, doctor, req, &named));
  CHECK(named == std::vector<std::string>{"p1", "p2", "p3"});
  req.params = {{"subject.name", "x"}};  // a chain names nobody
  CHECK(rule_of(policy::check_request(config(), defs, doctor, req, &named)) == "policy-PATIENT_CONTEXT_REQUIRED");

  Caller research = doctor;
  research.purpose_of_use = "HRESCH";
  req.params = {{"patient", "p1"}};
  CHECK(rule_of(policy::check_request(config(), defs, research, req, &named)) == "policy-NON_CARE_PURPOSE");

  Caller scoped = doctor;
  scoped.scopes.push_back({policy::Scope::Context::User, "Observation", "r"});
  CHECK(rule_of(policy::check_request(config(), defs, scoped, req, &named)) == "policy-SCOPE");  // needs 's'
  scoped.scopes.push_back({policy::Scope::Context::User, "*", "s"});
  CHECK(policy::check_request(config(), defs, scoped, req, &named));

  interactions::FhirRequest audit;
  audit.interaction = interactions::Interaction::Create;
  audit.type = "AuditEvent";
  fhir::Status s = policy::check_request(config(), defs, patient_caller("p1"), audit, &named);
  CHECK(s.category() == fhir::ErrorCategory::NotAllowed);
  audit.interaction = interactions::Interaction::SearchType;
  CHECK(policy::check_request(config(), defs, patient_caller("p1"), audit, &named));
  CHECK(rule_of(policy::check_request(config(), defs, doctor, audit, &named)) == "policy-AUDIT_PATIENT_ONLY");

  Caller admin;
  admin.authenticated = true;
  admin.role = Role::Administrator;
  interactions::FhirRequest meta;
  meta.interaction = interactions::Interaction::Capabilities;
  CHECK(policy::check_request(config(), defs, admin, meta, &named));
  interactions::FhirRequest expand;
  expand.interaction = interactions::Interaction::Operation;
  expand.operation = "expand";
  expand.type = "ValueSet";
  CHECK(policy::check_request(config(), defs, admin, expand, &named));
  CHECK(rule_of(policy::check_request(config(), defs, admin, req, &named)) == "policy-ADMIN_NO_CLINICAL");

  interactions::FhirRequest history;
  history.interaction = interactions::Interaction::HistorySystem;
  CHECK(rule_of(policy::check_request(config(), defs, doctor, history, &named)) == "policy-PATIENT_CONTEXT_REQUIRED");

  Caller nobody;
  CHECK(rule_of(policy::check_request(config(), defs, nobody, meta, &named)) == "policy-AUTHENTICATION_REQUIRED");
}

TEST_CASE("rules: patient-level decisions over a stored record", "[policy][rules]") {
  Space space;
  space.put(practitioner("gp", "810000000001"));
  space.put(practitioner("granted", "810000000002"));
  space.put(practitioner("team-nurse", "810000000003"));
  space.put(practitioner("blocked-gp", "810000000004"));
  space.put(practitioner("stranger", "810000000005"));
  space.put(R"({"resourceType":"Patient","id":"p1","birthDate":"1980-01-01",
    "generalPractitioner":[{"reference":"Practitioner/gp"},{"reference":"Practitioner/blocked-gp"}]})");
  space.put(R"({"resourceType":"Patient","id":"p2","birthDate":"1980-01-01","extension":[
    {"url":"https://espace.example/fhir/StructureDefinition/dmp-break-glass-opposition","valueBoolean":true}]})");
  space.put(R"({"resourceType":"CareTeam","id":"t1","status":"active","subject":{"reference":"Patient/p1"},
    "participant":[{"member":{"identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810000000003"}}}]})");
  space.put(consent("c-granted", "p1", "permit", "Practitioner/granted", R"({"end":"2026-12-31"})"));
  space.put(consent("c-team", "p1", "permit", "CareTeam/t1"));
  space.put(consent("c-block", "p1", "deny", "Practitioner/blocked-gp"));
  const int64_t now = at("2026-06-01");
  const auto& defs = test_definitions();
  auto decide = [&](const Caller& c, const std::string& patient, int64_t when = 0) {
    policy::DmpRules rules(config(), defs, *space.store, c, when ? when : now);
    return std::string(rules.patient_access(patient).rule);
  };
  CHECK(decide(professional("gp", "810000000001"), "p1") == "GP");
  CHECK(decide(professional("granted", "810000000002"), "p1") == "GRANT");
  CHECK(decide(professional("granted", "810000000002"), "p1", at("2027-01-01")) == "NO_GRANT");  // period over
  // The team member is named by RPPS only: matched through the CareTeam.
  CHECK(decide(professional("team-nurse", "810000000003"), "p1") == "GRANT");
  CHECK(decide(professional("blocked-gp", "810000000004"), "p1") == "BLOCKED");  // a block beats being the GP
  CHECK(decide(professional("stranger", "810000000005"), "p1") == "NO_GRANT");
  CHECK(decide(professional("stranger", "810000000005"), "never-written") == "NO_GRANT");
  Caller emergency = professional("stranger", "810000000005");
  emergency.purpose_of_use = "ETREAT";
  CHECK(decide(emergency, "p1") == "BREAK_GLASS");
  CHECK(decide(emergency, "p2") == "BREAK_GLASS_OPPOSED");
  CHECK(decide(patient_caller("p1"), "p1") == "OWN");
  CHECK(decide(patient_caller("p1"), "p2") == "OTHER_PATIENT");

  // Break-glass is flagged on the access record of what it opened.
  space.put(R"({"resourceType":"Observation","id":"o1","status":"final","code":{"text":"w"},"subject":{"reference":"Patient/p1"}})");
  policy::DmpRules rules(config(), defs, *space.store, emergency, now);
  policy::AccessRecord record;
  policy::Verdict v = rules.may_see(space.get("Observation", "o1"), &record);
  CHECK(v.visible);
  CHECK(record.break_glass);
  CHECK(record.patients == std::vector<std::string>{"p1"});
}

TEST_CASE("rules: documents — labels, authors, Binary, masking by the patient", "[policy][rules]") {
  Space space;
  space.put(practitioner("gp", "810000000001"));
  space.put(practitioner("author", "810000000002"));
  space.put(practitioner("other", "810000000003"));
  space.put(R"({"resourceType":"Patient","id":"p1","birthDate":"1980-01-01","generalPractitioner":[{"reference":"Practitioner/gp"}]})");
  space.put(consent("c1", "p1", "permit", "Practitioner/author"));
  space.put(consent("c2", "p1", "permit", "Practitioner/other"));
  const std::string masked = R"({"resourceType":"DocumentReference","id":"d1","status":"current",
    "type":{"coding":[{"system":"http://loinc.org","code":"11502-2"}]},"subject":{"reference":"Patient/p1"},
    "author":[{"reference":"Practitioner/author"}],
    "securityLabel":[{"coding":[{"system":"urn:oid:1.2.250.1.213.1.1.4.13","code":"MASQUE_PS"}]}],
    "content":[{"attachment":{"url":"Binary/b1"}}]})";
  space.put(masked);
  space.put(R"({"resourceType":"Binary","id":"b1","contentType":"text/plain","securityContext":{"reference":"DocumentReference/d1"}})");
  space.put(R"({"resourceType":"Binary","id":"b2","contentType":"text/plain"})");
  const auto& defs = test_definitions();
  const int64_t now = at("2026-06-01");
  auto sees = [&](const Caller& c, const std::string& type, const std::string& id) {
    policy::DmpRules rules(config(), defs, *space.store, c, now);
    policy::AccessRecord record;
    return std::string(rules.may_see(space.get(type, id), &record).rule) +
           (rules.may_see(space.get(type, id), &record).visible ? "" : "-hidden");
  };
  CHECK(sees(professional("author", "810000000002"), "DocumentReference", "d1") == "AUTHOR");
  CHECK(sees(professional("gp", "810000000001"), "DocumentReference", "d1") == "GP");
  CHECK(sees(professional("other", "810000000003"), "DocumentReference", "d1") == "MASKED-hidden");
  CHECK(sees(professional("other", "810000000003"), "Binary", "b1") == "MASKED-hidden");
  CHECK(sees(professional("author", "810000000002"), "Binary", "b1") == "AUTHOR");
  CHECK(sees(professional("other", "810000000003", "21"), "DocumentReference", "d1") == "HABILITATION-hidden");
  CHECK(sees(patient_caller("p1"), "DocumentReference", "d1") == "OWN");
  CHECK(sees(patient_caller("p1"), "Binary", "b2") == "BINARY_UNBOUND-hidden");

  // The patient unmasks: only the label changes.
  policy::DmpRules rules(config(), defs, *space.store, patient_caller("p1"), now);
  storage::ResourceVersion before = space.get("DocumentReference", "d1");
  storage::ResourceVersion after = before;
  after.version = before.version + 1;
  after.method = "PUT";
  size_t label = after.json.find("\"securityLabel\"");
  REQUIRE(label != std::string::npos);
  after.json = R"({"resourceType":"DocumentReference","id":"d1","status":"current",
    "type":{"coding":[{"system":"http://loinc.org","code":"11502-2"}]},"subject":{"reference":"Patient/p1"},
    "author":[{"reference":"Practitioner/author"}],"content":[{"attachment":{"url":"Binary/b1"}}]})";
  policy::AccessRecord record;
  CHECK(rules.may_write(&before, after, &record));
  // ... but not the content, and a professional not at all on a Consent.
  storage::ResourceVersion edited = after;
  edited.json.replace(edited.json.find("current"), 7, "superseded");
  CHECK(rule_of(rules.may_write(&before, edited, &record)) == "policy-LABEL_EDIT_ONLY");
  storage::ResourceVersion grant = space.get("Consent", "c1");
  policy::DmpRules doctor(config(), defs, *space.store, professional("gp", "810000000001"), now);
  storage::ResourceVersion grant_after = grant;
  grant_after.version++;
  grant_after.method = "PUT";
  CHECK(rule_of(doctor.may_write(&grant, grant_after, &record)) == "policy-CONSENT_PATIENT_ONLY");
  // Update-as-create is for systems only.
  storage::ResourceVersion fresh;
  fresh.type = "Observation";
  fresh.id = "new";
  fresh.version = 1;
  fresh.method = "PUT";
  fresh.json = R"({"resourceType":"Observation","id":"new","status":"final","code":{"text":"w"},"subject":{"reference":"Patient/p1"}})";
  CHECK(rule_of(doctor.may_write(nullptr, fresh, &record)) == "policy-UPDATE_AS_CREATE");
  fresh.method = "POST";
  CHECK(doctor.may_write(nullptr, fresh, &record));
}

TEST_CASE("rules: what is read from a stored version is reused for that very content only", "[policy][rules]") {
  Space space;
  space.put(practitioner("gp", "810000000001"));
  space.put(R"({"resourceType":"Patient","id":"p1","birthDate":"1980-01-01","generalPractitioner":[{"reference":"Practitioner/gp"}]})");
  space.put(R"({"resourceType":"Patient","id":"p2","birthDate":"1980-01-01"})");
  space.put(R"({"resourceType":"DocumentReference","id":"d1","status":"current",
    "type":{"coding":[{"system":"http://loinc.org","code":"11502-2"}]},"subject":{"reference":"Patient/p1"},
    "content":[{"attachment":{"url":"Binary/b1"}}]})");
  const auto& defs = test_definitions();
  const int64_t now = at("2026-06-01");
  const Caller gp = professional("gp", "810000000001");
  auto sees = [&](const storage::ResourceVersion& v) {
    policy::DmpRules rules(config(), defs, *space.store, gp, now);
    policy::AccessRecord record;
    policy::Verdict verdict = rules.may_see(v, &record);
    return std::string(verdict.rule) + (verdict.visible ? "" : "-hidden");
  };
  storage::ResourceVersion mine = space.get("DocumentReference", "d1");
  // The same type, id, version and time (as from another store, or a version
  // erased and written again) with other content: another patient's record.
  storage::ResourceVersion other = mine;
  size_t subject = other.json.find("Patient/p1");
  REQUIRE(subject != std::string::npos);
  other.json.replace(subject, 10, "Patient/p2");
  // Twice each, in both orders: the second decision of each may come from
  // what the first one read.
  CHECK(sees(mine) == "GP");
  CHECK(sees(mine) == "GP");
  CHECK(sees(other) == "NO_GRANT-hidden");
  CHECK(sees(other) == "NO_GRANT-hidden");
  CHECK(sees(mine) == "GP");
  // A new version of the same resource is read for itself: here masked, and
  // its LOINC type excluded for a pharmacist.
  storage::ResourceVersion masked = mine;
  masked.version = mine.version + 1;
  masked.last_updated_us = mine.last_updated_us + 1;
  masked.json.insert(masked.json.size() - 1,
                     R"(,"securityLabel":[{"coding":[{"system":"urn:oid:1.2.250.1.213.1.1.4.13","code":"MASQUE_PS"}]}])");
  CHECK(sees(masked) == "GP");  // the GP sees masked documents
  policy::DmpRules pharmacist(config(), defs, *space.store, professional("gp", "810000000001", "21"), now);
  policy::AccessRecord record;
  CHECK_FALSE(pharmacist.may_see(mine, &record).visible);
}

TEST_CASE("rules: searches are narrowed and chains into hideable types refused", "[policy][rules]") {
  Space space;
  const auto& defs = test_definitions();
  const int64_t now = at("2026-06-01");
  policy::DmpRules patient(config(), defs, *space.store, patient_caller("p1"), now);
  storage::SearchQuery q;
  q.type = "Observation";
  REQUIRE(patient.restrict_search(&q));
  REQUIRE(q.all_of.size() == 1);
  bool names_p1 = false;
  for (const auto& t : q.all_of[0].any_of) names_p1 = names_p1 || (t.system == "Patient" && t.value == "p1");
  CHECK(names_p1);

  storage::SearchQuery system_wide;
  REQUIRE(patient.restrict_search(&system_wide));
  CHECK_FALSE(system_wide.types.empty());
  CHECK(std::find(system_wide.types.begin(), system_wide.types.end(), "Practitioner") == system_wide.types.end());

  storage::SearchQuery chained;
  chained.type = "Observation";
  auto target = std::make_shared<storage::SearchQuery>();
  target->type = "DocumentReference";
  storage::Condition c;
  storage::IndexTest t;
  t.param = "derived-from";
  t.target = target;
  c.any_of.push_back(t);
  chained.all_of.push_back(c);
  CHECK(rule_of(patient.restrict_search(&chained)) == "policy-CHAIN_ON_HIDEABLE");

  policy::DmpRules doctor(config(), defs, *space.store, professional("d", "1"), now, {"p1"});
  storage::SearchQuery has;
  has.type = "Patient";
  storage::Condition h;
  h.kind = storage::Condition::Kind::Has;
  h.has_type = "Composition";
  has.all_of.push_back(h);
  CHECK(rule_of(doctor.restrict_search(&has)) == "policy-CHAIN_ON_HIDEABLE");
  policy::DmpRules unnamed(config(), defs, *space.store, professional("d", "1"), now);
  storage::SearchQuery plain;
  plain.type = "Condition";
  CHECK(rule_of(unnamed.restrict_search(&plain)) == "policy-PATIENT_CONTEXT_REQUIRED");
}

TEST_CASE("rules: refusals tell professionals nothing about the record", "[policy][rules]") {
  Caller doctor = professional("d", "1");
  for (const char* r : {"BLOCKED", "BREAK_GLASS_OPPOSED", "ACCOUNT_OPPOSED", "ACCOUNT_CLOSED", "ACCOUNT_DESTROYED"})
    CHECK(std::string(policy::public_rule(doctor, r)) == "NO_GRANT");
  CHECK(std::string(policy::public_rule(doctor, "HABILITATION")) == "HABILITATION");
  Caller representative;
  representative.authenticated = true;
  representative.role = Role::LegalRepresentative;
  CHECK(std::string(policy::public_rule(representative, "BLOCKED")) == "NO_GRANT");
  CHECK(std::string(policy::public_rule(representative, "REPRESENTATION_ENDED")) == "REPRESENTATION_ENDED");
  CHECK(std::string(policy::public_rule(patient_caller("p"), "ACCOUNT_DESTROYED")) == "ACCOUNT_DESTROYED");
}

TEST_CASE("rules: a patient's access history never names a resource hidden from them", "[policy][rules][audit]") {
  Space space;
  space.put(practitioner("gp", "810000000001"));
  space.put(R"({"resourceType":"Patient","id":"p1","birthDate":"1980-01-01","generalPractitioner":[{"reference":"Practitioner/gp"}]})");
  space.put(R"({"resourceType":"DocumentReference","id":"pending","status":"current",
    "type":{"coding":[{"system":"http://loinc.org","code":"11502-2"}]},"subject":{"reference":"Patient/p1"},
    "securityLabel":[{"coding":[{"system":"urn:oid:1.2.250.1.213.1.1.4.13","code":"INVISIBLE_PATIENT"}]}],
    "content":[{"attachment":{"url":"Binary/b1"}}]})");
  space.put(R"({"resourceType":"DocumentReference","id":"shown","status":"current",
    "type":{"coding":[{"system":"http://loinc.org","code":"11502-2"}]},"subject":{"reference":"Patient/p1"},
    "content":[{"attachment":{"url":"Binary/b2"}}]})");
  auto event = [](const std::string& what) {
    storage::ResourceVersion v;
    v.type = "AuditEvent";
    v.id = "e-" + what.substr(what.find('/') + 1);
    v.version = 1;
    v.json = R"({"resourceType":"AuditEvent","id":")" + v.id +
             R"(","type":{"code":"rest"},"recorded":"2026-06-01T10:00:00Z","agent":[{"requestor":true}],
      "source":{"observer":{"display":"espace"}},"entity":[{"what":{"reference":"Patient/p1"}},
      {"what":{"reference":")" + what + R"(/_history/1"}}]})";
    return v;
  };
  const auto& defs = test_definitions();
  const int64_t now = at("2026-06-01");
  policy::DmpRules patient(config(), defs, *space.store, patient_caller("p1"), now);
  policy::AccessRecord record;
  policy::Verdict hidden = patient.may_see(event("DocumentReference/pending"), &record);
  CHECK_FALSE(hidden.visible);
  CHECK(std::string(hidden.rule) == "AUDIT_HIDDEN_ENTITY");
  policy::Verdict shown = patient.may_see(event("DocumentReference/shown"), &record);
  CHECK(shown.visible);
  CHECK(std::string(shown.rule) == "AUDIT_OWN");
  // Professionals never read access events through the API.
  policy::DmpRules doctor(config(), defs, *space.store, professional("gp", "810000000001"), now);
  CHECK_FALSE(doctor.may_see(event("DocumentReference/shown"), &record).visible);
}
