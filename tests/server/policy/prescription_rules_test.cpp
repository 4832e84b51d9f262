// The write rules of prescriptions, dispensations and the medical profile
// without HTTP: WRITER_PROFESSION, ENTERED_BY and DISPENSE_PRESCRIPTION of
// DmpRules::may_write over a real SQLite store, and their data in roles.json.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "espace/fhir/json.h"
#include "espace/interactions/api.h"
#include "espace/policy/rules.h"
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

// A store in a temporary folder holding a GP's patient p1 (GP Practitioner/gp),
// a second patient p2, a prescription of each and the pharmacy's Organization.
struct Record : policy_test::RulesSpace {
  Record() {
    put(R"({"resourceType":"Practitioner","id":"gp","identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810000000001"}]})");
    put(R"({"resourceType":"Organization","id":"pharmacy","identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.2","value":"1930008453"}]})");
    for (const char* p : {"p1", "p2"})
      put(std::string(R"({"resourceType":"Patient","id":")") + p +
          R"(","birthDate":"1979-01-30","generalPractitioner":[{"reference":"Practitioner/gp"}]})");
    // The pharmacy is granted p1 and p2.
    for (const char* p : {"p1", "p2"})
      put(std::string(R"({"resourceType":"Consent","id":"grant-)") + p + R"(","status":"active",
        "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
        "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"reference":"Patient/)" +
          p + R"("},"provision":{"type":"permit","actor":[{"role":{"coding":[{"code":"PRCP"}]},
        "reference":{"reference":"Organization/pharmacy"}}]}})");
    put(prescription("rx-p1", "p1"));
    put(prescription("rx-p2", "p2"));
  }
  static std::string prescription(const std::string& id, const std::string& patient,
                                  const std::string& requester = "Practitioner/gp") {
    return R"({"resourceType":"MedicationRequest","id":")" + id + R"(","status":"active","intent":"order",
      "medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Patient/)" + patient + R"("},
      "requester":{"reference":")" + requester + R"("}})";
  }
};

storage::ResourceVersion created(const std::string& type, const std::string& id, const std::string& json) {
  storage::ResourceVersion v;
  v.type = type;
  v.id = id;
  v.version = 1;
  v.method = "POST";
  v.json = json;
  return v;
}

Caller professional(const std::string& profession, const std::string& rpps, const std::string& fhir_user = "",
                    const std::string& organization = "") {
  Caller c;
  c.authenticated = true;
  c.role = Role::Professional;
  c.profession_code = profession;
  c.national_id = rpps;
  c.fhir_user = fhir_user;
  c.organization_id = organization;
  return c;
}

std::string dispense(const std::string& patient, const std::string& prescription,
                     const std::string& performer = "Organization/pharmacy") {
  return R"({"resourceType":"MedicationDispense","id":"d","status":"completed","subject":{"reference":"Patient/)" +
         patient + R"("},"performer":[{"actor":{"reference":")" + performer + R"("}}],"medicationCodeableConcept":{"text":"x"})" +
         (prescription.empty() ? "" : R"(,"authorizingPrescription":[{"reference":")" + prescription + R"("}])") + "}";
}

}  // namespace

TEST_CASE("prescription rules: roles.json names prescribers, pharmacists and provenance elements",
          "[policy][rules][prescriptions]") {
  const auto& writers = config().restricted_writers;
  REQUIRE(writers.count("MedicationRequest"));
  CHECK(writers.at("MedicationRequest") == std::set<std::string>{"10", "40", "50", "system"});
  CHECK(writers.at("MedicationDispense") == std::set<std::string>{"21", "system"});
  CHECK(config().entered_by.at("AllergyIntolerance") == std::vector<std::string>{"recorder"});
  CHECK(config().entered_by.at("MedicationDispense") == std::vector<std::string>{"performer.actor"});
  CHECK_FALSE(config().patient_writable_types.count("MedicationRequest"));
  CHECK_FALSE(config().patient_writable_types.count("MedicationDispense"));
}

TEST_CASE("prescription rules: who writes prescriptions and dispensations", "[policy][rules][prescriptions]") {
  Record record;
  const auto& defs = test_definitions();
  const int64_t now = at("2026-11-23");
  policy::AccessRecord access;

  policy::DmpRules gp(config(), defs, *record.store, professional("10", "810000000001", "Practitioner/gp"), now);
  CHECK(gp.may_write(nullptr, created("MedicationRequest", "new", Record::prescription("new", "p1")), &access));
  // A prescription signed by someone else.
  CHECK(rule_of(gp.may_write(nullptr, created("MedicationRequest", "new", Record::prescription("new", "p1", "Practitioner/other")),
                             &access)) == "policy-ENTERED_BY");
  // A pharmacist (granted) does not prescribe; the GP does not dispense.
  policy::DmpRules pharmacist(config(), defs, *record.store, professional("21", "820001112224", "", "1930008453"), now);
  CHECK(rule_of(pharmacist.may_write(nullptr, created("MedicationRequest", "new", Record::prescription("new", "p1")),
                                     &access)) == "policy-WRITER_PROFESSION");
  CHECK(rule_of(gp.may_write(nullptr, created("MedicationDispense", "d", dispense("p1", "MedicationRequest/rx-p1", "Practitioner/gp")),
                             &access)) == "policy-WRITER_PROFESSION");

  // The pharmacy dispenses p1's prescription for p1, not p2's, not a missing one.
  CHECK(pharmacist.may_write(nullptr, created("MedicationDispense", "d", dispense("p1", "MedicationRequest/rx-p1")), &access));
  CHECK(pharmacist.may_write(nullptr, created("MedicationDispense", "d", dispense("p1", "MedicationRequest/rx-p1/_history/1")),
                             &access));
  fhir::Status other = pharmacist.may_write(nullptr, created("MedicationDispense", "d", dispense("p1", "MedicationRequest/rx-p2")), &access);
  fhir::Status absent = pharmacist.may_write(nullptr, created("MedicationDispense", "d", dispense("p1", "MedicationRequest/nope")), &access);
  CHECK(rule_of(other) == "policy-DISPENSE_PRESCRIPTION");
  CHECK(other.category() == fhir::ErrorCategory::Unprocessable);
  CHECK(other.message() == absent.message());
  CHECK(rule_of(pharmacist.may_write(nullptr, created("MedicationDispense", "d", dispense("p1", "")), &access)) ==
        "policy-DISPENSE_PRESCRIPTION");
  CHECK(rule_of(pharmacist.may_write(nullptr, created("MedicationDispense", "d", dispense("p1", "Observation/x")), &access)) ==
        "policy-DISPENSE_PRESCRIPTION");
  // performer.actor names the caller: the pharmacy by FINESS, or the pharmacist by RPPS identifier.
  CHECK(rule_of(pharmacist.may_write(nullptr, created("MedicationDispense", "d", dispense("p1", "MedicationRequest/rx-p1", "Organization/elsewhere")),
                                     &access)) == "policy-ENTERED_BY");
  std::string by_identifier = dispense("p1", "MedicationRequest/rx-p1", "x");
  by_identifier.replace(by_identifier.find(R"({"reference":"x"})"), std::string(R"({"reference":"x"})").size(),
                        R"({"identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"820001112224"}})");
  CHECK(pharmacist.may_write(nullptr, created("MedicationDispense", "d", by_identifier), &access));

  // A system relays prescriptions and dispensations of named professionals: no ENTERED_BY.
  Caller system;
  system.authenticated = true;
  system.role = Role::System;
  system.organization_id = "1930008453";
  policy::DmpRules his(config(), defs, *record.store, system, now);
  CHECK(his.may_write(nullptr, created("MedicationRequest", "new", Record::prescription("new", "p1", "Practitioner/other")),
                      &access));
  // ... but the dispensation link holds for systems too.
  CHECK(rule_of(his.may_write(nullptr, created("MedicationDispense", "d", dispense("p1", "MedicationRequest/rx-p2")), &access)) ==
        "policy-DISPENSE_PRESCRIPTION");
}

TEST_CASE("prescription rules: patient-declared entries name the patient", "[policy][rules][prescriptions]") {
  Record record;
  const auto& defs = test_definitions();
  const int64_t now = at("2026-11-23");
  policy::AccessRecord access;
  Caller patient;
  patient.authenticated = true;
  patient.role = Role::Patient;
  patient.patient_id = "p1";  // no fhirUser in the token: the launch patient is who they are
  policy::DmpRules rules(config(), defs, *record.store, patient, now);
  auto allergy = [](const std::string& recorder) {
    return R"({"resourceType":"AllergyIntolerance","id":"a","patient":{"reference":"Patient/p1"},"code":{"text":"x"},)"
           R"("recorder":{"reference":")" + recorder + R"("}})";
  };
  CHECK(rules.may_write(nullptr, created("AllergyIntolerance", "a", allergy("Patient/p1")), &access));
  fhir::Status forged = rules.may_write(nullptr, created("AllergyIntolerance", "a", allergy("Practitioner/gp")), &access);
  CHECK(rule_of(forged) == "policy-ENTERED_BY");
  CHECK(forged.category() == fhir::ErrorCategory::Unprocessable);
  CHECK(forged.issues().front().expression == "AllergyIntolerance.recorder");
  // Naming another patient as recorder puts the entry in their compartment too: out of reach.
  CHECK(rule_of(rules.may_write(nullptr, created("AllergyIntolerance", "a", allergy("Patient/p2")), &access)) ==
        "policy-OTHER_PATIENT");
  CHECK(rule_of(rules.may_write(nullptr, created("MedicationRequest", "m", Record::prescription("m", "p1")), &access)) ==
        "policy-PATIENT_WRITE");
  // Types without a provenance element in entered_by are not checked by it.
  CHECK(rules.may_write(nullptr,
                        created("FamilyMemberHistory", "f",
                                R"({"resourceType":"FamilyMemberHistory","id":"f","status":"completed","patient":{"reference":"Patient/p1"},"relationship":{"text":"father"}})"),
                        &access));
}
