// Our ANS-style profiles (profiles/data) on the fixtures of
// test-data/profiles/fr: valid ones give no error, each invalid one gives
// exactly the expected errors (message id @ location).
#include <catch2/catch.hpp>

#include <rapidjson/document.h>

#include <filesystem>
#include <set>
#include <thread>
#include <atomic>

#include "profiles_support.h"

using namespace espace;

namespace {

std::vector<fhir::Issue> validate_fr(const std::string& name, bool required = true) {
  fhir::Node n = profiles_test::parse(
      profiles_test::read_text(std::string(ESPACE_SOURCE_DIR) + "/test-data/profiles/fr/" + name));
  profiles::ValidationOptions opts;
  opts.apply_required_profiles = required;
  return profiles_test::french_validator().validate(n, opts);
}

using profiles_test::dump;
using profiles_test::errors;
using profiles_test::of_severity;

}  // namespace

TEST_CASE("French fixtures that meet our profiles", "[profiles][fr]") {
  for (const char* name :
       {"valid-patient-ins.json", "valid-patient-ins-corsica.json", "valid-patient-ins-test-oid-bad-key.json",
        "valid-practitioner.json", "valid-practitioner-adeli.json", "valid-organization.json",
        "valid-documentreference-dmp.json", "valid-submissionset.json", "valid-consent.json",
        "valid-immunization.json", "warning-immunization-vaccine.json"}) {
    auto issues = validate_fr(name);
    INFO(name << "\n" << dump(issues));
    CHECK(errors(issues).empty());
  }
}

TEST_CASE("French fixtures that break our profiles: exact errors", "[profiles][fr]") {
  struct Case {
    const char* file;
    std::vector<std::string> errors;  // sorted
  };
  const Case cases[] = {
      {"invalid-patient-ins-key.json", {"identifier-key-invalid @ Patient.identifier[0].value"}},
      {"invalid-patient-ins-corsica-key.json", {"identifier-key-invalid @ Patient.identifier[0].value"}},
      {"invalid-patient-ins-format.json", {"identifier-format-invalid @ Patient.identifier[0].value"}},
      {"invalid-patient-ins-missing.json", {"card-min @ Patient.identifier", "inv-espace-ins-1 @ Patient"}},
      {"invalid-patient-ins-status.json", {"inv-espace-ins-2 @ Patient"}},
      {"invalid-patient-ins-status-code.json",
       {"binding-required @ Patient.extension[0].extension[0].value.ofType(Coding)", "inv-espace-ins-2 @ Patient"}},
      {"invalid-patient-ins-two-nir.json", {"slice-max @ Patient.identifier"}},
      {"invalid-patient-ins-no-reliability.json", {"inv-espace-ins-2 @ Patient", "slice-min @ Patient.extension"}},
      {"invalid-patient-ins-gender.json", {"ins-traits-mismatch @ Patient.gender", "inv-espace-ins-3 @ Patient"}},
      {"invalid-patient-ins-traits.json",
       {"ins-traits-mismatch @ Patient.birthDate", "ins-traits-mismatch @ Patient.gender"}},
      {"invalid-practitioner-no-rpps.json", {"slice-min @ Practitioner.identifier"}},
      {"invalid-practitioner-rpps-key.json", {"identifier-key-invalid @ Practitioner.identifier[0].value"}},
      {"invalid-organization-finess-key.json", {"identifier-key-invalid @ Organization.identifier[0].value"}},
      {"invalid-organization-siret-key.json", {"identifier-key-invalid @ Organization.identifier[0].value"}},
      {"invalid-organization-no-id.json", {"inv-espace-org-1 @ Organization"}},
      {"invalid-documentreference-type.json", {"binding-required @ DocumentReference.type"}},
      {"invalid-documentreference-label.json", {"binding-required @ DocumentReference.securityLabel[1]"}},
      {"invalid-documentreference-two-confidentiality.json", {"slice-max @ DocumentReference.securityLabel"}},
      {"invalid-documentreference-no-confidentiality.json", {"slice-min @ DocumentReference.securityLabel"}},
      {"invalid-documentreference-subject.json", {"ref-wrong-type @ DocumentReference.subject.reference"}},
      {"invalid-documentreference-hash-missing.json", {"card-min @ DocumentReference.content[0].attachment.hash"}},
      {"invalid-submissionset-status.json", {"fixed-mismatch @ List.status"}},
      {"invalid-submissionset-sourceid.json", {"slice-min @ List.extension"}},
      {"invalid-submissionset-sourceid-type.json", {"type-not-allowed @ List.extension[0].value.ofType(string)"}},
      {"invalid-consent-scope.json", {"pattern-mismatch @ Consent.scope"}},
      {"invalid-consent-actor.json", {"ref-wrong-type @ Consent.provision.actor[0].reference.reference"}},
      {"invalid-immunization-lot.json", {"card-min @ Immunization.lotNumber"}},
      {"invalid-immunization-occurrence.json", {"type-not-allowed @ Immunization.occurrence.ofType(string)"}},
  };
  for (const Case& c : cases) {
    auto issues = validate_fr(c.file);
    INFO(c.file << "\n" << dump(issues));
    CHECK(errors(issues) == c.errors);
  }
}

TEST_CASE("test and demonstration INS OIDs: a wrong key is a warning", "[profiles][fr]") {
  auto issues = validate_fr("valid-patient-ins-test-oid-bad-key.json");
  INFO(dump(issues));
  CHECK(of_severity(issues, {fhir::Severity::Warning}) ==
        std::vector<std::string>{"identifier-key-invalid @ Patient.identifier[0].value"});
  bool names_key = false;
  for (const fhir::Issue& i : issues)
    if (i.message_id == "identifier-key-invalid") names_key = i.diagnostics.find("expected 55") != std::string::npos;
  CHECK(names_key);
}

TEST_CASE("an unknown vaccine code is a warning (extensible binding)", "[profiles][fr]") {
  auto issues = validate_fr("warning-immunization-vaccine.json");
  INFO(dump(issues));
  CHECK(of_severity(issues, {fhir::Severity::Warning}) ==
        std::vector<std::string>{"binding-extensible @ Immunization.vaccineCode"});
}

TEST_CASE("required profiles apply only when asked; meta.profile always", "[profiles][fr]") {
  // No meta.profile: without the server's requirement the Practitioner is
  // only checked against the base specification.
  CHECK(errors(validate_fr("invalid-practitioner-rpps-key.json", false)).empty());
  CHECK(!errors(validate_fr("invalid-practitioner-rpps-key.json", true)).empty());
  // meta.profile names fr-patient-ins: checked even without the requirement.
  CHECK(errors(validate_fr("invalid-patient-ins-key.json", false)) ==
        std::vector<std::string>{"identifier-key-invalid @ Patient.identifier[0].value"});
}

TEST_CASE("a List that is not a SubmissionSet needs no profile", "[profiles][fr]") {
  fhir::Node list = profiles_test::parse(R"({"resourceType":"List","status":"current","mode":"snapshot"})");
  profiles::ValidationOptions opts;
  opts.apply_required_profiles = true;
  CHECK(errors(profiles_test::french_validator().validate(list, opts)).empty());
  fhir::Node ss = profiles_test::parse(
      R"({"resourceType":"List","status":"current","mode":"working","code":{"coding":[{"system":"https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes","code":"submissionset"}]}})");
  CHECK(!errors(profiles_test::french_validator().validate(ss, opts)).empty());
}

TEST_CASE("profile-unknown: warning in meta.profile, error when asked", "[profiles][fr]") {
  fhir::Node p = profiles_test::parse(
      R"({"resourceType":"Patient","meta":{"profile":["https://espace.example/fhir/StructureDefinition/no-such"]}})");
  auto issues = profiles_test::french_validator().validate(p);
  CHECK(of_severity(issues, {fhir::Severity::Warning}) == std::vector<std::string>{"profile-unknown @ Patient"});
  CHECK(errors(issues).empty());
  profiles::ValidationOptions opts;
  opts.profiles = {"https://espace.example/fhir/StructureDefinition/other"};
  CHECK(errors(profiles_test::french_validator().validate(p, opts)) ==
        std::vector<std::string>{"profile-unknown @ Patient"});
  opts.profiles = {"https://espace.example/fhir/StructureDefinition/fr-practitioner"};
  CHECK(errors(profiles_test::french_validator().validate(p, opts)) ==
        std::vector<std::string>{"profile-wrong-type @ Patient"});
}

TEST_CASE("Bundle entries meet the profiles required for their type", "[profiles][fr]") {
  std::string patient =
      profiles_test::read_text(std::string(ESPACE_SOURCE_DIR) + "/test-data/profiles/fr/invalid-patient-ins-key.json");
  std::string bundle = R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"fullUrl":"urn:uuid:0b0a6c52-3f0a-4b8e-9a44-5f3c2c8d9e01","resource":{"resourceType":"Basic","code":{"text":"x"}},
     "request":{"method":"POST","url":"Basic"}},
    {"fullUrl":"urn:uuid:0b0a6c52-3f0a-4b8e-9a44-5f3c2c8d9e02","resource":)" +
                       patient + R"(,"request":{"method":"POST","url":"Patient"}}]})";
  fhir::Node b = profiles_test::parse(bundle);
  profiles::ValidationOptions opts;
  opts.apply_required_profiles = true;
  CHECK(errors(profiles_test::french_validator().validate(b, opts)) ==
        std::vector<std::string>{"identifier-key-invalid @ Bundle.entry[1].resource.identifier[0].value"});
}

TEST_CASE("the snapshots stored in profiles/data are the generated ones", "[profiles][fr]") {
  // Regenerate with: espace validate --snapshot URL > profiles/data/<file>.json
  const profiles::Validator& v = profiles_test::french_validator();
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(ESPACE_SOURCE_DIR) + "/profiles/data")) {
    if (entry.path().filename() == "required-profiles.json") continue;
    rapidjson::Document stored;
    stored.Parse(profiles_test::read_text(entry.path().string()).c_str());
    REQUIRE(stored.IsObject());
    INFO(entry.path().filename().string());
    REQUIRE(stored.HasMember("snapshot"));
    rapidjson::Document generated;
    generated.Parse(v.snapshot_json(stored["url"].GetString()).c_str());
    REQUIRE(generated.IsObject());
    CHECK(stored == generated);
    CHECK(stored["snapshot"]["element"].Size() > stored["differential"]["element"].Size());
    ++checked;
  }
  CHECK(checked == 18);
}

TEST_CASE("profile validation gives the same answers on several threads", "[profiles][fr]") {
  const char* files[] = {"valid-patient-ins.json", "invalid-patient-ins-key.json", "invalid-documentreference-label.json",
                         "invalid-submissionset-sourceid.json", "invalid-consent-scope.json"};
  std::vector<std::vector<std::string>> serial;
  for (const char* f : files) serial.push_back(errors(validate_fr(f)));
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int round = 0; round < 20; ++round)
        for (size_t i = 0; i < std::size(files); ++i)
          if (errors(validate_fr(files[i])) != serial[i]) ++mismatches;
    });
  for (auto& t : threads) t.join();
  CHECK(mismatches == 0);
}
