// The profile engine on small profiles written here: snapshot generation
// from a differential, cardinality tightening, fixed/pattern, min/max values,
// type restriction, slicing (open/closed, value and pattern discriminators),
// bad profile definitions refused with a clear status.
#include <catch2/catch.hpp>

#include "profiles_support.h"

using namespace espace;

namespace {

constexpr const char* kObservationProfile = R"({
  "resourceType": "StructureDefinition", "url": "https://espace.example/fhir/StructureDefinition/test-obs",
  "name": "TestObs", "status": "draft", "kind": "resource", "abstract": false, "type": "Observation",
  "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation", "derivation": "constraint",
  "differential": {"element": [
    {"id": "Observation.status", "path": "Observation.status", "fixedCode": "final"},
    {"id": "Observation.category", "path": "Observation.category", "min": 1,
     "slicing": {"discriminator": [{"type": "pattern", "path": "$this"}], "rules": "closed"}},
    {"id": "Observation.category:vital", "path": "Observation.category", "sliceName": "vital", "min": 1, "max": "1",
     "patternCodeableConcept": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}},
    {"id": "Observation.category:survey", "path": "Observation.category", "sliceName": "survey", "max": "1",
     "patternCodeableConcept": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}]}},
    {"id": "Observation.code", "path": "Observation.code",
     "patternCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}},
    {"id": "Observation.value[x]", "path": "Observation.value[x]", "min": 1, "type": [{"code": "Quantity"}]},
    {"id": "Observation.value[x].value", "path": "Observation.value[x].value", "min": 1,
     "minValueDecimal": 20, "maxValueDecimal": 250},
    {"id": "Observation.effective[x]", "path": "Observation.effective[x]", "min": 1, "type": [{"code": "dateTime"}],
     "minValueDateTime": "2000-01-01"},
    {"id": "Observation.note", "path": "Observation.note", "max": "0"}
  ]}})";

std::string observation(const std::string& status, const std::string& categories, const std::string& value,
                        const std::string& extra = "") {
  std::string category = categories.empty() ? "" : R"("category":[)" + categories + "],";
  return R"({"resourceType":"Observation","status":")" + status + R"(",)" + category +
         R"("code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},"subject":{"reference":"Patient/p"},)" +
         R"("effectiveDateTime":"2024-01-02",)" + value + extra + "}";
}

const char* kVital =
    R"({"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]})";
const char* kSurvey =
    R"({"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"survey"}]})";
const char* kExam = R"({"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"exam"}]})";
const char* kValue = R"("valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"})";

const profiles::Validator& engine() {
  static std::unique_ptr<profiles::Validator> v = [] {
    auto made = std::make_unique<profiles::Validator>(profiles_test::definitions(), &profiles_test::terminology());
    fhir::Status st = made->add_profile_json(kObservationProfile);
    if (!st) throw std::runtime_error(st.message());
    return made;
  }();
  return *v;
}

std::vector<std::string> profile_errors(const std::string& json) {
  profiles::ValidationOptions opts;
  opts.profiles = {"https://espace.example/fhir/StructureDefinition/test-obs"};
  std::vector<std::string> out;
  for (const fhir::Issue& i : engine().validate(profiles_test::parse(json), opts))
    if (i.severity == fhir::Severity::Error) out.push_back(i.message_id + " @ " + i.expression);
  std::sort(out.begin(), out.end());
  return out;
}

using Errors = std::vector<std::string>;

}  // namespace

TEST_CASE("snapshot: differential merged over the base", "[profiles][engine]") {
  std::vector<profiles::SnapshotElement> snap = engine().snapshot("https://espace.example/fhir/StructureDefinition/test-obs");
  REQUIRE(!snap.empty());
  auto find = [&](const std::string& id) -> const profiles::SnapshotElement* {
    for (const auto& e : snap)
      if (e.id == id) return &e;
    return nullptr;
  };
  const auto* category = find("Observation.category");
  REQUIRE(category);
  CHECK(category->min == 1);
  CHECK(category->max == UINT32_MAX);  // inherited from the base
  const auto* vital = find("Observation.category:vital");
  REQUIRE(vital);
  CHECK(vital->slice_name == "vital");
  CHECK(vital->has_pattern);
  CHECK(vital->max == 1);
  const auto* value = find("Observation.value[x]");
  REQUIRE(value);
  CHECK(value->types == std::vector<std::string>{"Quantity"});
  const auto* quantity_value = find("Observation.value[x].value");
  REQUIRE(quantity_value);
  CHECK(quantity_value->path == "Observation.value[x].value");
  CHECK(quantity_value->types == std::vector<std::string>{"decimal"});
  const auto* status = find("Observation.status");
  REQUIRE(status);
  CHECK(status->has_fixed);
  CHECK(status->binding_strength == "required");  // the base binding carried over
  CHECK(status->min == 1);
  CHECK(engine().snapshot("https://espace.example/fhir/StructureDefinition/none").empty());
}

TEST_CASE("a conforming Observation has no profile error", "[profiles][engine]") {
  CHECK(profile_errors(observation("final", kVital, kValue)).empty());
  CHECK(profile_errors(observation("final", std::string(kVital) + "," + kSurvey, kValue)).empty());
}

TEST_CASE("fixed, pattern, min/max value, types, cardinality", "[profiles][engine]") {
  CHECK(profile_errors(observation("amended", kVital, kValue)) == Errors{"fixed-mismatch @ Observation.status"});
  std::string other_code = observation("final", kVital, kValue);
  other_code.replace(other_code.find("8867-4"), 6, "8480-6");
  CHECK(profile_errors(other_code) == Errors{"pattern-mismatch @ Observation.code"});
  CHECK(profile_errors(observation("final", kVital, R"("valueQuantity":{"value":300})")) ==
        Errors{"max-value @ Observation.value.ofType(Quantity).value"});
  CHECK(profile_errors(observation("final", kVital, R"("valueQuantity":{"value":19.5})")) ==
        Errors{"min-value @ Observation.value.ofType(Quantity).value"});
  CHECK(profile_errors(observation("final", kVital, R"("valueString":"72")")) ==
        Errors{"type-not-allowed @ Observation.value.ofType(string)"});
  CHECK(profile_errors(observation("final", kVital, R"("valueQuantity":{"unit":"/min"})")) ==
        Errors{"card-min @ Observation.value.ofType(Quantity).value"});
  CHECK(profile_errors(observation("final", kVital, kValue, R"(,"note":[{"text":"x"}])")) ==
        Errors{"card-max @ Observation.note"});
  std::string early = observation("final", kVital, kValue);
  early.replace(early.find("2024-01-02"), 10, "1999-12-31");
  CHECK(profile_errors(early) == Errors{"min-value @ Observation.effective.ofType(dateTime)"});
}

TEST_CASE("slicing: minimum, maximum, closed", "[profiles][engine]") {
  CHECK(profile_errors(observation("final", kSurvey, kValue)) == Errors{"slice-min @ Observation.category"});
  CHECK(profile_errors(observation("final", std::string(kVital) + "," + kVital, kValue)) ==
        Errors{"slice-max @ Observation.category"});
  CHECK(profile_errors(observation("final", std::string(kVital) + "," + kExam, kValue)) ==
        Errors{"slice-unmatched @ Observation.category[1]"});
  CHECK(profile_errors(observation("final", "", kValue)) ==
        Errors{"card-min @ Observation.category", "slice-min @ Observation.category"});
}

TEST_CASE("bad profiles are refused with the element named", "[profiles][engine]") {
  profiles::Validator v(profiles_test::definitions(), nullptr);
  auto add = [&](const std::string& elements) {
    return v.add_profile_json(R"({"resourceType":"StructureDefinition","url":"https://espace.example/x","name":"X",
      "type":"Patient","baseDefinition":"http://hl7.org/fhir/StructureDefinition/Patient","derivation":"constraint",
      "differential":{"element":[)" + elements + "]}}");
  };
  CHECK(add(R"({"id":"Patient.name","path":"Patient.name","min":1})"));
  fhir::Status unknown = add(R"({"id":"Patient.nickname","path":"Patient.nickname","min":1})");
  CHECK_FALSE(unknown);
  CHECK(unknown.message().find("Patient.nickname") != std::string::npos);
  fhir::Status widened = add(R"({"id":"Patient.gender","path":"Patient.gender","max":"*"})");
  CHECK_FALSE(widened);
  CHECK(widened.message().find("widens") != std::string::npos);
  CHECK_FALSE(add(R"({"id":"Patient.deceased[x]","path":"Patient.deceased[x]","type":[{"code":"string"}]})"));
  CHECK_FALSE(add(R"({"id":"Patient","path":"Patient","constraint":[{"key":"x-1","severity":"error","human":"h","expression":"name.where("}]})"));
  CHECK_FALSE(v.add_profile_json("{not json"));
  CHECK_FALSE(v.add_profile_json(R"({"resourceType":"Patient"})"));
  CHECK_FALSE(v.require_profile("Patient", "https://espace.example/unknown"));
  CHECK_FALSE(v.require_profile("Observation", "https://espace.example/x"));  // constrains Patient
  CHECK(v.require_profile("Patient", "https://espace.example/x"));
  CHECK(v.required_profiles("Patient") == std::vector<std::string>{"https://espace.example/x"});
  v.clear_required_profiles();
  CHECK(v.required_profiles("Patient").empty());
}
