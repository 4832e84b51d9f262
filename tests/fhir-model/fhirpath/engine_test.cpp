// Engine behaviour beyond the official suite: error positions, limits,
// thread safety, the environment (variables, resolve(), memberOf(), trace,
// conformsTo()), decimal precision, calendar arithmetic, UCUM and output.
#include <catch2/catch.hpp>
#include <thread>

#include "test_support.h"

using namespace espace;
using namespace espace::fhirpath;
using fhirpath_test::eval_display;
using fhirpath_test::parse_resource;
using fhir::Status;

namespace {

const char* kPatient = R"({
  "resourceType": "Patient", "id": "p1",
  "contained": [{"resourceType": "Organization", "id": "org1", "name": "Clinique du Lac"}],
  "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "1234567890"}],
  "name": [{"use": "official", "family": "Durand", "given": ["Anne", "Marie"]},
           {"use": "usual", "given": ["Annie"]}],
  "gender": "female",
  "birthDate": "1980-05-17",
  "managingOrganization": {"reference": "#org1"},
  "generalPractitioner": [{"reference": "Practitioner/dr1"}]
})";

const char* kObservation = R"({
  "resourceType": "Observation", "id": "o1", "status": "final",
  "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
  "subject": {"reference": "Patient/p1"},
  "effectiveDateTime": "2024-03-01T10:00:00+01:00",
  "valueQuantity": {"value": 72.50, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
})";

Status compile_expr(const std::string& text, std::shared_ptr<const Expression>* out, bool strict = false,
                    const std::string& root = "") {
  CompileOptions opts;
  opts.definitions = &fhirpath_test::definitions();
  opts.strict = strict;
  opts.root_type = root;
  return compile(text, opts, out);
}

}  // namespace

TEST_CASE("syntax errors name the position", "[fhirpath][parser]") {
  std::shared_ptr<const Expression> e;
  Status st = compile_expr("name.where(use = )", &e);
  REQUIRE_FALSE(st);
  REQUIRE(st.issues().size() == 1);
  CHECK(st.issues()[0].column == 18);
  CHECK_THAT(st.message(), Catch::Contains("column 18"));

  st = compile_expr("name.frobnicate()", &e);
  REQUIRE_FALSE(st);
  CHECK(st.issues()[0].column == 6);
  CHECK_THAT(st.message(), Catch::Contains("unknown function 'frobnicate'"));

  st = compile_expr("substring()", &e);
  REQUIRE_FALSE(st);
  CHECK_THAT(st.message(), Catch::Contains("substring() takes 1 to 2 argument(s), not 0"));

  st = compile_expr("'unterminated", &e);
  REQUIRE_FALSE(st);
  CHECK(st.issues()[0].column == 1);

  st = compile_expr("name.given ]", &e);
  REQUIRE_FALSE(st);
  CHECK(st.issues()[0].column == 12);

  st = compile_expr("", &e);
  CHECK_FALSE(st);
  st = compile_expr("@2014-13-01", &e);
  CHECK_FALSE(st);
  st = compile_expr("Patient.gender.as(NoSuchType)", &e);
  REQUIRE_FALSE(st);
  CHECK_THAT(st.message(), Catch::Contains("unknown type 'NoSuchType'"));
}

TEST_CASE("hostile expressions are refused, not crashed on", "[fhirpath][limits]") {
  std::shared_ptr<const Expression> e;
  std::string deep(5000, '(');
  deep += "1";
  deep += std::string(5000, ')');
  CHECK_FALSE(compile_expr(deep, &e));
  std::string minus(5000, '-');
  CHECK_FALSE(compile_expr(minus + "1", &e));
  CompileOptions small;
  small.max_length = 10;
  CHECK_FALSE(compile("name.given.first()", small, &e));
  // A runaway repeat() over a growing computed collection stops with an error.
  CHECK_THAT(eval_display("(1).repeat($this + 1)"), Catch::StartsWith("ERROR"));
}

TEST_CASE("one compiled expression evaluates concurrently", "[fhirpath][threads]") {
  fhir::Node patient = parse_resource(kPatient);
  std::shared_ptr<const Expression> e;
  REQUIRE(compile_expr(
      "name.where(use = 'official' and family.matches('^[A-Z][a-z]+$')).given.join(' ') & ' ' & name.family.first()",
      &e));
  std::vector<std::string> results(8);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] {
      Environment env;
      for (int i = 0; i < 2000; ++i) {
        Collection out;
        if (!e->evaluate(&patient, env, &out) || out.size() != 1) { results[t] = "bad"; return; }
        results[t] = display(out[0]);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& r : results) CHECK(r == "Anne Marie Durand");
}

TEST_CASE("navigation: type steps, choice elements, contained resources", "[fhirpath][navigation]") {
  fhir::Node patient = parse_resource(kPatient);
  fhir::Node obs = parse_resource(kObservation);
  CHECK(eval_display("Patient.name.given", &patient) == "Anne | Marie | Annie");
  CHECK(eval_display("DomainResource.id", &patient) == "p1");
  CHECK(eval_display("Observation.name", &patient).empty());
  CHECK(eval_display("Observation.value.value", &obs) == "72.50");
  CHECK(eval_display("Observation.valueQuantity.unit", &obs) == "kg");  // allowed outside strict mode
  CHECK(eval_display("value.ofType(Quantity).code", &obs) == "kg");
  CHECK(eval_display("value.ofType(string).exists()", &obs) == "false");
  CHECK(eval_display("(effective as dateTime) > @2024-01-01T00:00:00Z", &obs) == "true");
  CHECK(eval_display("contained.ofType(Organization).name", &patient) == "Clinique du Lac");
  fhir::Node with_contact = parse_resource(R"({"resourceType":"Patient","contact":[{"gender":"male"}]})");
  CHECK(eval_display("contact.type().name", &with_contact) == "BackboneElement");
  CHECK(eval_display("contact.is(BackboneElement)", &with_contact) == "true");
  CHECK(eval_display("value > 70 'kg'", &obs) == "true");
  CHECK(eval_display("value = 72500 'g'", &obs) == "true");
}

TEST_CASE("strict mode rejects paths that cannot exist", "[fhirpath][strict]") {
  std::shared_ptr<const Expression> e;
  CHECK(compile_expr("name.where(use = 'official').given", &e, true, "Patient"));
  CHECK(compile_expr("Observation.value.ofType(Quantity).unit", &e, true, "Observation"));
  Status st = compile_expr("name.given1", &e, true, "Patient");
  REQUIRE_FALSE(st);
  CHECK_THAT(st.message(), Catch::Contains("no element 'given1' on HumanName"));
  st = compile_expr("Observation.valueQuantity", &e, true, "Observation");
  REQUIRE_FALSE(st);
  CHECK_THAT(st.message(), Catch::Contains("use 'value'"));
  CHECK_FALSE(compile_expr("Encounter.status", &e, true, "Patient"));
  CHECK_FALSE(compile_expr("descendants().first()", &e, true, "Patient"));
  // Unknown territory (resolve()) is not checked.
  CHECK(compile_expr("managingOrganization.resolve().whatever", &e, true, "Patient"));
}

TEST_CASE("environment variables", "[fhirpath][environment]") {
  fhir::Node patient = parse_resource(kPatient);
  Environment env;
  env.variables["limit"] = {Value::of_int(2)};
  CHECK(eval_display("name.given.take(%limit)", &patient, env) == "Anne | Marie");
  CHECK(eval_display("%resource.id", &patient, env) == "p1");
  CHECK(eval_display("name.given.where(%context.gender = 'female').count()", &patient, env) == "3");
  CHECK(eval_display("%ucum & '|' & %loinc", &patient, env) == "http://unitsofmeasure.org|http://loinc.org");
  CHECK(eval_display("%`ext-patient-birthTime`") == "http://hl7.org/fhir/StructureDefinition/patient-birthTime");
  CHECK_THAT(eval_display("%missing", &patient, env), Catch::Contains("undefined environment variable %missing"));
}

namespace {

struct MapResolver : ReferenceResolver {
  const fhir::Node* target = nullptr;
  mutable std::vector<std::string> asked;
  const fhir::Node* resolve(std::string_view reference) const override {
    asked.emplace_back(reference);
    return reference == "Practitioner/dr1" ? target : nullptr;
  }
};

struct FakeTerminology : TerminologyService {
  std::optional<bool> member_of(const std::vector<Coded>& codes, std::string_view vs) const override {
    if (vs != "http://hl7.org/fhir/ValueSet/administrative-gender") return std::nullopt;
    for (const Coded& c : codes)
      if (c.code == "female" || c.code == "male" || c.code == "other" || c.code == "unknown") return true;
    return false;
  }
};

struct OnlyPatients : ProfileChecker {
  std::optional<bool> conforms_to(const fhir::Node& node, std::string_view url) const override {
    if (url != "http://example.org/StructureDefinition/my-patient") return std::nullopt;
    return node.type && node.type->name == "Patient";
  }
};

}  // namespace

TEST_CASE("resolve(), memberOf(), conformsTo() and trace go through the interfaces", "[fhirpath][environment]") {
  fhir::Node patient = parse_resource(kPatient);
  fhir::Node practitioner = parse_resource(R"({"resourceType":"Practitioner","id":"dr1","name":[{"family":"Lenoir"}]})");
  Environment env;
  // Contained references resolve without help; others are not found by default.
  CHECK(eval_display("managingOrganization.resolve().name", &patient, env) == "Clinique du Lac");
  CHECK(eval_display("generalPractitioner.resolve()", &patient, env).empty());
  MapResolver resolver;
  resolver.target = &practitioner;
  env.resolver = &resolver;
  CHECK(eval_display("generalPractitioner.resolve().name.family", &patient, env) == "Lenoir");
  CHECK(resolver.asked == std::vector<std::string>{"Practitioner/dr1"});

  CHECK(eval_display("gender.memberOf(%`vs-administrative-gender`)", &patient, env).empty());
  FakeTerminology terminology;
  env.terminology = &terminology;
  CHECK(eval_display("gender.memberOf(%`vs-administrative-gender`)", &patient, env) == "true");
  CHECK(eval_display("'martian'.memberOf('http://hl7.org/fhir/ValueSet/administrative-gender')", &patient, env) ==
        "false");
  CHECK(eval_display("gender.memberOf('http://example.org/unknown')", &patient, env).empty());

  CHECK(eval_display("conformsTo('http://hl7.org/fhir/StructureDefinition/Patient')", &patient, env) == "true");
  CHECK(eval_display("conformsTo('http://hl7.org/fhir/StructureDefinition/DomainResource')", &patient, env) == "true");
  CHECK_THAT(eval_display("conformsTo('http://example.org/StructureDefinition/my-patient')", &patient, env),
             Catch::StartsWith("ERROR"));
  OnlyPatients profiles;
  env.profiles = &profiles;
  CHECK(eval_display("conformsTo('http://example.org/StructureDefinition/my-patient')", &patient, env) == "true");

  std::vector<std::string> traced;
  env.trace = [&](std::string_view name, const Collection& values) {
    traced.push_back(std::string(name) + ":" + std::to_string(values.size()));
  };
  CHECK(eval_display("name.trace('names', given).count()", &patient, env) == "2");
  CHECK(traced == std::vector<std::string>{"names:3"});
}

TEST_CASE("resolve() inside a Bundle finds entries by fullUrl and by type/id", "[fhirpath][environment]") {
  fhir::Node bundle = parse_resource(R"({"resourceType":"Bundle","type":"collection","entry":[
    {"fullUrl":"http://example.org/fhir/Patient/p9","resource":{"resourceType":"Patient","id":"p9","gender":"male"}},
    {"fullUrl":"urn:uuid:0b5c3a7e-1111-4c1e-9f00-000000000001",
     "resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
                 "subject":{"reference":"Patient/p9"}}},
    {"fullUrl":"urn:uuid:0b5c3a7e-1111-4c1e-9f00-000000000002",
     "resource":{"resourceType":"Observation","status":"final","code":{"text":"y"},
                 "subject":{"reference":"http://example.org/fhir/Patient/p9"}}}]})");
  CHECK(eval_display("entry.resource.ofType(Observation).subject.resolve().gender", &bundle) == "male | male");
}

TEST_CASE("decimals keep their precision; arithmetic is exact", "[fhirpath][decimal]") {
  CHECK(eval_display("1.50 + 1.0") == "2.50");
  CHECK(eval_display("0.1 + 0.2 = 0.3") == "true");
  CHECK(eval_display("1.10 * 2") == "2.20");
  CHECK(eval_display("10 / 4") == "2.5");
  CHECK(eval_display("1.0 / 3 * 3 ~ 1.0") == "true");
  CHECK(eval_display("12345678901234567890.123 + 0.877") == "12345678901234567891.000");
  CHECK(eval_display("(-7) div 2") == "-3");
  CHECK(eval_display("(-7) mod 2") == "-1");
  CHECK(eval_display("9223372036854775807 + 1").empty());  // overflow: empty, not wrapped
}

TEST_CASE("date/time arithmetic and partial precision", "[fhirpath][temporal]") {
  CHECK(eval_display("@2024-01-31 + 1 month") == "@2024-02-29");
  CHECK(eval_display("@2023-01-31 + 1 month") == "@2023-02-28");
  CHECK(eval_display("@2014-01 + 1 month") == "@2014-02");
  CHECK(eval_display("@2014 + 2 years") == "@2016");
  CHECK(eval_display("@2024-03-01T00:30:00+01:00 - 45 minutes") == "@2024-02-29T23:45:00+01:00");
  CHECK(eval_display("@T23:30 + 1 hour") == "@T00:30");
  CHECK(eval_display("@2024-03-01T10:00:00+01:00 = @2024-03-01T09:00:00Z") == "true");
  CHECK(eval_display("@2024-03 < @2024-04-01") == "true");
  CHECK(eval_display("@2024-03 < @2024-03-15").empty());
  CHECK(eval_display("@2024-03-15 ~ @2024-03") == "false");
  CHECK(eval_display("'2024-02-30'.convertsToDate()") == "false");
}

TEST_CASE("UCUM quantities convert by dimension", "[fhirpath][quantity]") {
  CHECK(eval_display("1 'kg' = 1000 'g'") == "true");
  CHECK(eval_display("1 '[in_i]' = 2.54 'cm'") == "true");
  CHECK(eval_display("120 'mm[Hg]' > 15 'kPa'") == "true");
  CHECK(eval_display("1 'L' = 1000 'mL'") == "true");
  CHECK(eval_display("1 'kg' = 1 'm'") == "false");
  CHECK(eval_display("1 'kg' < 1 'm'").empty());
  CHECK(eval_display("(1 'kg' + 500 'g').toString()") == "1.500 'kg'");  // 500 g is 0.500 kg
  CHECK(eval_display("2 'mg/dL' = 20 'mg/L'") == "true");
  CHECK(eval_display("'5 \\'mg\\''.toQuantity('g')") == "0.005 'g'");
}

TEST_CASE("output types and JSON values for the command line", "[fhirpath][output]") {
  fhir::Node obs = parse_resource(kObservation);
  CompileOptions opts;
  opts.definitions = &fhirpath_test::definitions();
  std::shared_ptr<const Expression> e;
  REQUIRE(compile("value | status | effective | 1.50 | 2 | 'x' | @2024-01 | @T10:00 | 4 'mg' | true", opts, &e));
  Collection out;
  REQUIRE(e->evaluate(&obs, Environment{}, &out));
  std::vector<std::string> got;
  for (const Value& v : out) got.push_back(output_type(v) + " " + output_json(v));
  std::vector<std::string> want = {
      R"(Quantity {"value":72.50,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"})",
      R"(code "final")",
      R"(dateTime "2024-03-01T10:00:00+01:00")",
      "decimal 1.50",
      "integer 2",
      R"(string "x")",
      R"(date "2024-01")",
      R"(time "10:00")",
      R"(Quantity {"value":4,"unit":"mg","system":"http://unitsofmeasure.org","code":"mg"})",
      "boolean true",
  };
  CHECK(got == want);
}

TEST_CASE("regular expressions: ECMAScript-style patterns, long inputs, no backtracking blow-up",
          "[fhirpath][regex]") {
  CHECK(eval_display("'2024-03-01'.matches('^\\\\d{4}-\\\\d{2}-\\\\d{2}$')") == "true");
  CHECK(eval_display("'a1 b2'.replaceMatches('([a-z])(\\\\d)', '$2$1')") == "1a 2b");
  CHECK(eval_display("'x-y]z'.matches('[\\\\]\\\\-]')") == "true");
  CHECK(eval_display("'abc'.matches('(?:a|z)b')") == "true");
  CHECK(eval_display("'aaa'.replaceMatches('a*', '-')") == "--");  // as JavaScript: the empty match at the end too
  CHECK(eval_display("'<a><b>'.matches('^<.+?>')") == "true");       // lazy quantifiers are accepted
  CHECK(eval_display("'Line1\\nLine2'.matchesFull('Line1.Line2')") == "true");
  CHECK_THAT(eval_display("'aa'.matches('(a)\\\\1')"), Catch::Contains("back-references are not supported"));
  CHECK_THAT(eval_display("'aa'.matches('a(?=a)')"), Catch::Contains("look-around"));
  CHECK_THAT(eval_display("'aa'.matches('[a')"), Catch::StartsWith("ERROR"));
  // A literal pattern is checked when compiling; a computed one when evaluating.
  std::shared_ptr<const Expression> e;
  CompileOptions opts;
  CHECK_FALSE(compile("'aa'.matches('(a)\\\\1')", opts, &e));
  REQUIRE(compile("'aa'.matches('(a)' + '\\\\1')", opts, &e));
  Collection out;
  CHECK_FALSE(e->evaluate(nullptr, Environment{}, &out));

  // 300,000 characters: a recursive matcher would overflow the stack here, and
  // the nested repetition below (R4's own string regex) would never finish.
  std::string long_text(300000, 'a');
  fhir::Node patient =
      parse_resource(R"({"resourceType":"Patient","name":[{"family":")" + long_text + R"( "}]})");
  CHECK(eval_display("name.family.matches('^.*$')", &patient) == "true");
  CHECK(eval_display("name.family.matches('^[^\\\\s]+(\\\\s[^\\\\s]+)*$')", &patient) == "false");
  CHECK(eval_display("name.family.replaceMatches('a+', 'b')", &patient) == "b ");
}

TEST_CASE("values stay compact", "[fhirpath][value]") {
  // A payload union plus the string: results are copied a lot.
  CHECK(sizeof(Value) <= 80);
  Value q = Value::of_quantity(Quantity{Decimal{15, 1}, "mg", false});
  CHECK(q.as_quantity().to_string() == "1.5 'mg'");
  Value w = Value::of_quantity(Quantity{Decimal{2, 0}, "weeks", true});
  CHECK(w.as_quantity().to_string() == "2 weeks");
}

TEST_CASE("string positions count characters, not bytes", "[fhirpath][string]") {
  CHECK(eval_display("'Hélène'.length()") == "6");
  CHECK(eval_display("'Hélène'.substring(1, 3)") == "élè");
  CHECK(eval_display("'Hélène'.indexOf('n')") == "4");
  CHECK(eval_display("'Hélène'.substring(5)") == "e");
  CHECK(eval_display("'Hélène'.substring(6)").empty());
  CHECK(eval_display("'Hélène'.toChars().count()") == "6");
}

TEST_CASE("long operator and path chains are bounded", "[fhirpath][limits]") {
  std::shared_ptr<const Expression> e;
  std::string sum = "1";
  for (int i = 0; i < 20000; ++i) sum += "+1";
  Status st = compile_expr(sum, &e);
  REQUIRE_FALSE(st);
  CHECK_THAT(st.message(), Catch::Contains("nested too deeply"));
  std::string path = "name";
  for (int i = 0; i < 20000; ++i) path += ".given";
  CHECK_FALSE(compile_expr(path, &e));
  std::string ok = "1";
  for (int i = 0; i < 150; ++i) ok += "+1";
  CHECK(eval_display(ok) == "151");
}
