// Focused fixtures (test-data/profiles): the valid ones give no error; each
// invalid one gives exactly the expected error(s), by message id and location.
#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <atomic>
#include <iostream>
#include <thread>

#include "profiles_support.h"

using namespace espace;

namespace {

std::string fixture(const std::string& name) {
  return profiles_test::read_text(std::string(ESPACE_SOURCE_DIR) + "/test-data/profiles/" + name);
}

std::vector<fhir::Issue> validate_file(const std::string& name, const profiles::ValidationOptions& opts = {}) {
  fhir::Node n = profiles_test::parse(fixture(name));
  return profiles_test::validator().validate(n, opts);
}

std::vector<std::string> with_severity(const std::vector<fhir::Issue>& issues, fhir::Severity s) {
  std::vector<std::string> out;
  for (const fhir::Issue& i : issues)
    if (i.severity == s) out.push_back(i.message_id + " @ " + i.expression);
  return out;
}

std::vector<std::string> errors(const std::vector<fhir::Issue>& issues) {
  std::vector<std::string> out = with_severity(issues, fhir::Severity::Error);
  for (const std::string& f : with_severity(issues, fhir::Severity::Fatal)) out.push_back(f);
  return out;
}

}  // namespace

TEST_CASE("valid fixtures have no errors", "[profiles][fixtures]") {
  for (const char* name : {"valid-patient.json", "valid-observation.json", "valid-bundle-transaction.json",
                           "valid-documentreference.json", "valid-patient-extensions.json"}) {
    INFO(name);
    auto issues = validate_file(name);
    CHECK(errors(issues).empty());
    for (const auto& i : issues) INFO(i.message_id + " @ " + i.expression + ": " + i.diagnostics);
  }
}

TEST_CASE("invalid fixtures: exact errors and locations", "[profiles][fixtures]") {
  struct Case {
    const char* file;
    std::vector<std::string> errors;
  };
  const Case cases[] = {
      {"invalid-patient-gender.json", {"binding-required @ Patient.gender"}},
      {"invalid-patient-birthdate.json", {"format-invalid @ Patient.birthDate"}},
      {"invalid-patient-id.json", {"format-invalid @ Patient.id"}},
      {"invalid-patient-name-use.json", {"binding-required @ Patient.name[0].use"}},
      {"invalid-patient-contact.json", {"inv-pat-1 @ Patient.contact[0]"}},
      {"invalid-patient-gp-type.json", {"ref-wrong-type @ Patient.generalPractitioner[1].reference"}},
      {"invalid-patient-contained-missing.json", {"inv-ref-1 @ Patient.managingOrganization", "ref-contained-missing @ Patient.managingOrganization.reference"}},
      {"invalid-patient-unreferenced-contained.json", {"inv-dom-3 @ Patient"}},
      {"invalid-patient-extension.json", {"ext-1 @ Patient.extension[0]"}},
      {"invalid-patient-div.json", {"xhtml-invalid @ Patient.text.div"}},
      {"invalid-patient-extension-type.json",
       {"ext-value-type @ Patient.extension[0].value.ofType(string)"}},
      {"invalid-patient-extension-complex.json",
       {"ext-no-value @ Patient.extension[0].value.ofType(code)"}},
      {"invalid-patient-div-script.json", {"txt-1 @ Patient.text.div"}},
      {"invalid-patient-div-onclick.json", {"txt-1 @ Patient.text.div"}},
      {"invalid-patient-div-javascript.json", {"txt-1 @ Patient.text.div"}},
      {"invalid-patient-div-empty.json", {"txt-2 @ Patient.text.div"}},
      {"invalid-patient-telecom-system.json", {"binding-required @ Patient.telecom[0].system"}},
      {"invalid-observation-status-missing.json", {"card-min @ Observation.status"}},
      {"invalid-observation-issued.json", {"format-invalid @ Observation.issued"}},
      {"invalid-observation-effective.json", {"format-invalid @ Observation.effective.ofType(dateTime)"}},
      {"invalid-observation-quantity.json", {"inv-qty-3 @ Observation.value.ofType(Quantity)"}},
      {"invalid-observation-subject-type.json", {"ref-wrong-type @ Observation.subject.reference"}},
      {"invalid-bundle-entry-status.json", {"binding-required @ Bundle.entry[1].resource.status"}},
      {"invalid-bundle-subject-type.json", {}},  // Group is an allowed subject: see below
      {"invalid-documentreference-hash.json", {"format-invalid @ DocumentReference.content[0].attachment.hash"}},
      {"invalid-documentreference-period.json", {"format-invalid @ DocumentReference.context.period.end"}},
      {"invalid-documentreference-contenttype.json",
       {"binding-required @ DocumentReference.content[0].attachment.contentType"}},
      {"invalid-documentreference-attachment.json", {"inv-att-1 @ DocumentReference.content[0].attachment"}},
  };
  for (const Case& c : cases) {
    INFO(c.file);
    auto issues = validate_file(c.file);
    for (const auto& i : issues) INFO(i.message_id + " @ " + i.expression + ": " + i.diagnostics);
    CHECK(errors(issues) == c.errors);
    // Every issue explains itself.
    for (const auto& i : issues) CHECK_FALSE(i.diagnostics.empty());
  }
}

TEST_CASE("Bundle-internal references are checked against the entry's type", "[profiles][fixtures]") {
  // The Observation's subject is the urn:uuid of entry 0; make entry 0 a
  // Medication, which Observation.subject does not allow.
  std::string text = fixture("valid-bundle-transaction.json");
  fhir::Node b = profiles_test::parse(text);
  auto ok = profiles_test::validator().validate(b);
  CHECK(errors(ok).empty());
  std::string bad = text;
  size_t at = bad.find("\"resourceType\": \"Patient\"");
  REQUIRE(at != std::string::npos);
  bad.replace(at, std::string("\"resourceType\": \"Patient\"").size(), "\"resourceType\": \"Medication\"");
  bad.replace(bad.find("\"gender\": \"male\""), std::string("\"gender\": \"male\"").size(), "\"status\": \"active\"");
  auto issues = profiles_test::validator().validate(profiles_test::parse(bad));
  CHECK(errors(issues) == std::vector<std::string>{"ref-wrong-type @ Bundle.entry[1].resource.subject.reference"});
}

TEST_CASE("extensible bindings warn, unknown systems are reported as not checked", "[profiles][fixtures]") {
  auto issues = validate_file("invalid-patient-marital-status.json");
  CHECK(errors(issues).empty());
  CHECK(with_severity(issues, fhir::Severity::Warning) ==
        std::vector<std::string>{"binding-extensible @ Patient.maritalStatus"});
  // LOINC is not in the package: Observation.code (example binding) says
  // nothing; DocumentReference.content.attachment.contentType (required,
  // BCP-13 not in the store) is reported as not checked, never as valid.
  auto dr = validate_file("valid-documentreference.json");
  auto info = with_severity(dr, fhir::Severity::Information);
  CHECK(std::find(info.begin(), info.end(), "binding-not-checked @ DocumentReference.content[0].attachment.contentType") !=
        info.end());
}

TEST_CASE("location prefix and declared profiles", "[profiles]") {
  profiles::ValidationOptions opts;
  opts.location_prefix = "Bundle.entry[4].resource";
  // A profile of the R4 package: reported, not enforced (only ours are).
  opts.profiles = {"http://hl7.org/fhir/StructureDefinition/vitalsigns"};
  auto issues = validate_file("invalid-patient-gender.json", opts);
  CHECK(errors(issues) == std::vector<std::string>{"binding-required @ Bundle.entry[4].resource.gender"});
  auto info = with_severity(issues, fhir::Severity::Information);
  CHECK(std::find(info.begin(), info.end(), "profile-not-checked @ Bundle.entry[4].resource") != info.end());
  // A profile nobody knows, asked for explicitly: an error.
  opts.profiles = {"http://example.org/StructureDefinition/my-patient"};
  CHECK(errors(validate_file("invalid-patient-gender.json", opts)) ==
        std::vector<std::string>{"binding-required @ Bundle.entry[4].resource.gender",
                                 "profile-unknown @ Bundle.entry[4].resource"});
}

TEST_CASE("cardinality maximum on non-repeating elements built in code", "[profiles]") {
  // The parsers refuse arrays where the element does not repeat, so build
  // the over-full tree directly.
  fhir::Node p = profiles_test::parse(R"({"resourceType":"Patient","gender":"male"})");
  fhir::Node extra = *p.child("gender");
  extra.value = "female";
  fhir::insert_ordered(p, extra);
  auto issues = profiles_test::validator().validate(p);
  CHECK(errors(issues) == std::vector<std::string>{"card-max @ Patient.gender"});
}

TEST_CASE("validation from several threads gives the same answers", "[profiles]") {
  fhir::Node p = profiles_test::parse(fixture("invalid-patient-contact.json"));
  std::vector<std::thread> threads;
  std::atomic<int> right{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i)
        if (errors(profiles_test::validator().validate(p)) == std::vector<std::string>{"inv-pat-1 @ Patient.contact[0]"})
          ++right;
    });
  for (auto& th : threads) th.join();
  CHECK(right == 400);
}

TEST_CASE("every invariant of every R4 type compiles", "[profiles]") {
  profiles::Validator v(profiles_test::definitions(), &profiles_test::terminology());
  v.precompile_all();
  auto stats = v.stats();
  for (const std::string& s : stats.not_compiled) INFO(s);
  CHECK(stats.not_compiled.empty());
  // Count the distinct constraints of the type-defining StructureDefinitions independently.
  std::set<std::pair<std::string, std::string>> expected;
  std::string dir = fhir::Definitions::default_package_dir();
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (!name.starts_with("StructureDefinition-")) continue;
    rapidjson::Document d;
    std::string text = profiles_test::read_text(entry.path().string());
    d.Parse(text.c_str(), text.size());
    REQUIRE_FALSE(d.HasParseError());
    std::string kind = d["kind"].GetString();
    if (!d.HasMember("derivation") || std::string(d["derivation"].GetString()) != "specialization" ||
        (kind != "resource" && kind != "complex-type" && kind != "primitive-type"))
      continue;
    for (const auto& e : d["snapshot"]["element"].GetArray()) {
      if (!e.HasMember("constraint")) continue;
      for (const auto& c : e["constraint"].GetArray())
        expected.emplace(c["key"].GetString(), c.HasMember("expression") ? c["expression"].GetString() : "");
    }
  }
  CHECK(expected.size() > 200);
  CHECK(stats.invariants == expected.size());
  CHECK(stats.invariants_native == 4);  // ele-1, ext-1, txt-1, txt-2
}

TEST_CASE("contained references inside Bundle entries resolve against the entry, not the Bundle", "[profiles]") {
  // ref-1 reads %rootResource.contained: inside a Bundle %rootResource is the
  // entry's resource (the container), not the Bundle.
  std::string patient = fixture("valid-patient.json");
  std::string bundle = R"({"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"http://example.org/fhir/Patient/p1","resource":)" +
                       patient + "}]}";
  auto issues = profiles_test::validator().validate(profiles_test::parse(bundle));
  CHECK(errors(issues).empty());
  for (const auto& i : issues) INFO(i.message_id + " @ " + i.expression + ": " + i.diagnostics);
  // And a dangling one is still caught at the right place.
  std::string dangling = bundle;
  dangling.replace(dangling.find("\"#gp\""), 5, "\"#zz\"");
  auto bad = profiles_test::validator().validate(profiles_test::parse(dangling));
  CHECK(errors(bad) == std::vector<std::string>{"inv-ref-1 @ Bundle.entry[0].resource.generalPractitioner[0]",
                                                "ref-contained-missing @ Bundle.entry[0].resource.generalPractitioner[0].reference",
                                                "inv-dom-3 @ Bundle.entry[0].resource"});
}
