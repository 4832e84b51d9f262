// Profiles of prescriptions, dispensations and the medical profile
// (fr-medicationrequest, fr-medicationdispense, fr-allergyintolerance,
// fr-condition, fr-familymemberhistory, fr-trusted-person,
// fr-advance-directive, fr-organ-donation-wish) on the fixtures of
// test-data/profiles/fr: exact errors (message id @ location), and which of
// them the server requires on which resources.
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

#include "profiles_support.h"

using namespace espace;

namespace {

const std::string kBase = "https://espace.example/fhir/StructureDefinition/";

fhir::Node fixture(const std::string& name) {
  return profiles_test::parse(
      profiles_test::read_text(std::string(ESPACE_SOURCE_DIR) + "/test-data/profiles/fr/" + name));
}

// Against the profile named, as `$validate?profile=` does (nothing required).
std::vector<fhir::Issue> against(const std::string& profile, const std::string& name) {
  profiles::ValidationOptions opts;
  opts.profiles = {kBase + profile};
  return profiles_test::french_validator().validate(fixture(name), opts);
}

// As the strict server does on a write: the required profiles only.
std::vector<fhir::Issue> as_written(const fhir::Node& resource) {
  profiles::ValidationOptions opts;
  opts.apply_required_profiles = true;
  return profiles_test::french_validator().validate(resource, opts);
}

using profiles_test::dump;
using profiles_test::errors;
using profiles_test::of_severity;

}  // namespace

TEST_CASE("medical profile fixtures that meet their profile", "[profiles][fr][medical]") {
  const std::pair<const char*, const char*> cases[] = {
      {"fr-medicationrequest", "valid-medicationrequest-eprescription.json"},
      {"fr-medicationdispense", "valid-medicationdispense.json"},
      {"fr-allergyintolerance", "valid-allergyintolerance-patient.json"},
      {"fr-condition", "valid-condition-history.json"},
      {"fr-familymemberhistory", "valid-familymemberhistory.json"},
      {"fr-trusted-person", "valid-trusted-person.json"},
      {"fr-advance-directive", "valid-advance-directive.json"},
      {"fr-organ-donation-wish", "valid-organ-donation-wish.json"},
  };
  for (const auto& [profile, file] : cases) {
    auto issues = against(profile, file);
    INFO(file << "\n" << dump(issues));
    CHECK(errors(issues).empty());
    // The required profiles of the server accept them too.
    CHECK(errors(as_written(fixture(file))).empty());
  }
}

TEST_CASE("medical profile fixtures that break their profile: exact errors", "[profiles][fr][medical]") {
  struct Case {
    const char* profile;
    const char* file;
    std::vector<std::string> errors;  // sorted
  };
  const Case cases[] = {
      {"fr-medicationrequest", "invalid-medicationrequest-uncoded.json",
       {"inv-espace-med-1 @ MedicationRequest.medication.ofType(CodeableConcept)"}},
      {"fr-medicationrequest", "invalid-medicationrequest-cip13.json",
       {"inv-espace-cip13 @ MedicationRequest.medication.ofType(CodeableConcept).coding[0].code"}},
      {"fr-medicationrequest", "invalid-medicationrequest-two-numbers.json", {"slice-max @ MedicationRequest.identifier"}},
      {"fr-medicationrequest", "invalid-medicationrequest-requester.json",
       {"inv-espace-rx-rpps @ MedicationRequest.requester"}},
      {"fr-medicationrequest", "invalid-medicationrequest-no-dosage.json",
       {"card-min @ MedicationRequest.authoredOn", "card-min @ MedicationRequest.dosageInstruction"}},
      {"fr-medicationdispense", "invalid-medicationdispense-no-prescription.json",
       {"card-min @ MedicationDispense.authorizingPrescription"}},
      {"fr-medicationdispense", "invalid-medicationdispense-completed.json",
       {"inv-espace-md-1 @ MedicationDispense", "inv-espace-md-performer @ MedicationDispense.performer[0].actor"}},
      {"fr-allergyintolerance", "invalid-allergyintolerance-recorder.json",
       {"card-min @ AllergyIntolerance.recorder", "ref-wrong-type @ AllergyIntolerance.asserter.reference",
        "ref-wrong-type @ AllergyIntolerance.asserter.reference"}},
      {"fr-condition", "invalid-condition-history.json",
       {"card-min @ Condition.category", "ref-wrong-type @ Condition.subject.reference"}},
      {"fr-familymemberhistory", "invalid-familymemberhistory.json",
       {"card-min @ FamilyMemberHistory.condition", "card-min @ FamilyMemberHistory.date"}},
      {"fr-trusted-person", "invalid-trusted-person.json",
       {"card-min @ RelatedPerson.telecom", "slice-min @ RelatedPerson.relationship"}},
      {"fr-advance-directive", "invalid-advance-directive.json",
       {"card-max @ Consent.provision.actor", "card-min @ Consent.source"}},
      {"fr-organ-donation-wish", "invalid-organ-donation-wish.json",
       {"binding-required @ Observation.value.ofType(CodeableConcept)", "ref-wrong-type @ Observation.performer[0].reference"}},
  };
  for (const Case& c : cases) {
    auto issues = against(c.profile, c.file);
    INFO(c.file << "\n" << dump(issues));
    CHECK(errors(issues) == c.errors);
  }
}

TEST_CASE("medication codes of external systems are reported as not checked, never as errors", "[profiles][fr][medical]") {
  auto issues = against("fr-medicationrequest", "valid-medicationrequest-eprescription.json");
  auto info = of_severity(issues, {fhir::Severity::Information});
  CHECK(std::count(info.begin(), info.end(),
                   "binding-not-checked @ MedicationRequest.medication.ofType(CodeableConcept)") == 1);
  // A code of none of the three systems is only a warning of the extensible binding
  // (the error is espace-med-1's).
  auto uncoded = against("fr-medicationrequest", "invalid-medicationrequest-uncoded.json");
  auto warnings = of_severity(uncoded, {fhir::Severity::Warning});
  CHECK(std::count(warnings.begin(), warnings.end(),
                   "binding-extensible @ MedicationRequest.medication.ofType(CodeableConcept)") == 1);
}

TEST_CASE("which medical profile the server requires on which resource", "[profiles][fr][medical]") {
  auto required = [](std::string_view type) { return profiles_test::french_validator().required_profiles(type); };
  for (const char* type : {"MedicationRequest", "MedicationDispense", "AllergyIntolerance", "Condition",
                           "FamilyMemberHistory", "RelatedPerson", "Observation", "Consent"}) {
    INFO(type);
    CHECK_FALSE(required(type).empty());
  }

  // Conditional ones: a RelatedPerson without the NOK role (a legal
  // representative) is not a trusted person; an Observation without the
  // organ-donation code is any observation.
  fhir::Node mother = fixture("invalid-trusted-person.json");  // no NOK, no telecom
  CHECK(errors(as_written(mother)).empty());
  fhir::Node plain = profiles_test::parse(
      R"({"resourceType":"Observation","status":"final","code":{"text":"weight"},"valueString":"70 kg"})");
  CHECK(errors(as_written(plain)).empty());
  fhir::Node wish = fixture("invalid-organ-donation-wish.json");
  CHECK(errors(as_written(wish)) ==
        std::vector<std::string>{"binding-required @ Observation.value.ofType(CodeableConcept)",
                                 "ref-wrong-type @ Observation.performer[0].reference"});

  // Consents: scope adr takes fr-advance-directive and escapes dmp-consent;
  // every other Consent keeps dmp-consent (grants and blocks).
  CHECK(errors(as_written(fixture("invalid-advance-directive.json"))) ==
        std::vector<std::string>{"card-max @ Consent.provision.actor", "card-min @ Consent.source"});
  CHECK(errors(as_written(fixture("valid-consent.json"))).empty());
  CHECK_FALSE(errors(as_written(fixture("invalid-consent-scope.json"))).empty());

  // Always required: a MedicationRequest without dosage is refused on write.
  CHECK(errors(as_written(fixture("invalid-medicationrequest-no-dosage.json"))) ==
        std::vector<std::string>{"card-min @ MedicationRequest.authoredOn", "card-min @ MedicationRequest.dosageInstruction"});
}

TEST_CASE("the family data meets the medical profiles it is written under", "[profiles][fr][medical]") {
  std::string text = profiles_test::read_text(std::string(ESPACE_SOURCE_DIR) + "/test-data/family/family-bundle.json");
  fhir::Node n = profiles_test::parse(text);
  auto issues = as_written(n);
  INFO(dump(issues));
  CHECK(errors(issues).empty());
  // The family exercises every one of the profiles.
  std::set<std::string> types;
  for (const char* t : {"MedicationRequest", "MedicationDispense", "AllergyIntolerance", "Condition",
                        "FamilyMemberHistory", "RelatedPerson", "Consent", "Observation"})
    if (text.find(std::string("\"resourceType\": \"") + t + "\"") != std::string::npos) types.insert(t);
  CHECK(types.size() == 8);
  CHECK(text.find("\"code\": \"NOK\"") != std::string::npos);
  CHECK(text.find("\"code\": \"adr\"") != std::string::npos);
  CHECK(text.find("\"code\": \"organ-donation\"") != std::string::npos);
  CHECK(text.find("https://espace.example/fhir/sid/eprescription-id") != std::string::npos);
}
