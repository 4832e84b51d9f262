// Focused tests of the FHIR JSON reader and writer.
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <catch2/catch.hpp>
#include <string>

#include "espace/fhir/json.h"
#include "model_fixture.h"

using namespace espace::fhir;

namespace {

Node parse_ok(std::string_view text) {
  Node n;
  Status s = parse_json(test_definitions(), text, &n);
  INFO(s.message());
  REQUIRE(s);
  return n;
}

// Parses text that must fail and returns its single issue.
Issue parse_error(std::string_view text, const ParseLimits& limits = {}) {
  Node n;
  Status s = parse_json(test_definitions(), text, &n, limits);
  REQUIRE_FALSE(s);
  REQUIRE(s.issues().size() == 1);
  return s.issues().front();
}

std::vector<const Node*> children_named(const Node& n, std::string_view name) {
  std::vector<const Node*> out;
  n.for_each_child(name, [&](const Node& c) { out.push_back(&c); });
  return out;
}

}  // namespace

TEST_CASE("decimals keep their exact text", "[json]") {
  const char* text =
      R"({"resourceType":"Observation","status":"final","code":{"text":"x"},)"
      R"("valueQuantity":{"value":1.50,"unit":"mg"},"component":[)"
      R"({"code":{"text":"a"},"valueQuantity":{"value":1e2}},)"
      R"({"code":{"text":"b"},"valueQuantity":{"value":-0.000100}},)"
      R"({"code":{"text":"c"},"valueQuantity":{"value":12345678901234567890.123456789}}]})";
  Node obs = parse_ok(text);
  const Node* quantity = obs.child("value");
  REQUIRE(quantity);
  CHECK(quantity->name == "valueQuantity");
  CHECK(quantity->child_value("value") == "1.50");
  auto components = children_named(obs, "component");
  REQUIRE(components.size() == 3);
  CHECK(components[0]->child("value")->child_value("value") == "1e2");
  CHECK(components[1]->child("value")->child_value("value") == "-0.000100");
  CHECK(components[2]->child("value")->child_value("value") == "12345678901234567890.123456789");
  std::string written = write_json(obs);
  CHECK(written.find(R"("value":1.50)") != std::string::npos);
  CHECK(written.find(R"("value":1e2)") != std::string::npos);
  CHECK(written.find(R"("value":-0.000100)") != std::string::npos);
  CHECK(written.find(R"("value":12345678901234567890.123456789)") != std::string::npos);
}

TEST_CASE("integers are whole numbers in the 32-bit range", "[json]") {
  auto with_count = [](const std::string& n) {
    return R"({"resourceType":"Observation","status":"final","code":{"text":"x"},"valueInteger":)" + n + "}";
  };
  CHECK(parse_ok(with_count("2147483647")).child_value("value") == "2147483647");
  CHECK(parse_ok(with_count("-2147483648")).child_value("value") == "-2147483648");
  for (const char* bad : {"2147483648", "-2147483649", "1.0", "1e3", "99999999999999"}) {
    INFO(bad);
    Issue i = parse_error(with_count(bad));
    CHECK(i.message_id == "json-invalid-integer");
    CHECK(i.code == "value");
    CHECK(i.expression == "Observation.valueInteger");
  }
  // positiveInt and unsignedInt ranges.
  const char* zero_positive =
      R"({"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"text":"m"},)"
      R"("subject":{"reference":"Patient/1"},"dosageInstruction":[{"timing":{"repeat":{"frequency":0}}}]})";
  Issue zero = parse_error(zero_positive);
  CHECK(zero.message_id == "json-invalid-integer");
  CHECK(zero.expression == "MedicationRequest.dosageInstruction[0].timing.repeat.frequency");
  CHECK(parse_ok(R"({"resourceType":"Bundle","type":"searchset","total":0})").child_value("total") == "0");
  const char* attachment_size =
      R"({"resourceType":"DocumentReference","status":"current","content":[{"attachment":{"size":-1}}]})";
  Issue i = parse_error(attachment_size);
  CHECK(i.message_id == "json-invalid-integer");
  CHECK(i.expression == "DocumentReference.content[0].attachment.size");
}

TEST_CASE("booleans, numbers and strings must have the JSON kind of their type", "[json]") {
  Issue i = parse_error(R"({"resourceType":"Patient","active":"true"})");
  CHECK(i.message_id == "json-wrong-kind");
  CHECK(i.expression == "Patient.active");
  CHECK(i.column == 36);
  i = parse_error(R"({"resourceType":"Patient","birthDate":19700101})");
  CHECK(i.message_id == "json-wrong-kind");
  i = parse_error(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":"1.5"}})");
  CHECK(i.message_id == "json-wrong-kind");
  CHECK(i.expression == "Observation.valueQuantity.value");
  i = parse_error(R"({"resourceType":"Patient","name":{"family":"x"}})");
  CHECK(i.message_id == "json-wrong-kind");
  CHECK(i.expression == "Patient.name");
  i = parse_error(R"({"resourceType":"Patient","gender":["male"]})");
  CHECK(i.message_id == "json-wrong-kind");
  i = parse_error(R"({"resourceType":"Patient","maritalStatus":"M"})");
  CHECK(i.message_id == "json-wrong-kind");
  i = parse_error(R"({"resourceType":"Patient","active":true,"name":[{"given":"Peter"}]})");
  CHECK(i.message_id == "json-wrong-kind");
  CHECK(i.expression == "Patient.name[0].given");
  i = parse_error(R"(["resourceType","Patient"])");
  CHECK(i.message_id == "json-wrong-kind");

  Node p = parse_ok(R"({"resourceType":"Patient","active":false,"multipleBirthInteger":2})");
  CHECK(p.child_value("active") == "false");
  CHECK(write_json(p) == R"({"resourceType":"Patient","active":false,"multipleBirthInteger":2})");
}

TEST_CASE("primitive extensions, including arrays with nulls", "[json]") {
  const char* text =
      R"({"resourceType":"Patient","birthDate":"1970-03-30","_birthDate":{"id":"b1","extension":[)"
      R"({"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1970-03-30T14:15:00+01:00"}]},)"
      R"("name":[{"_given":[null,{"extension":[{"url":"http://example.org/x","valueCode":"MD"}]},)"
      R"({"id":"g3"}],"given":["Peter",null,"James"]}]})";
  Node p = parse_ok(text);
  const Node* birth = p.child("birthDate");
  REQUIRE(birth);
  CHECK(birth->has_value);
  CHECK(birth->value == "1970-03-30");
  REQUIRE(birth->children.size() == 2);
  CHECK(birth->children[0].name == "id");
  CHECK(birth->children[0].value == "b1");
  CHECK(birth->children[1].name == "extension");
  CHECK(birth->children[1].child("value")->name == "valueDateTime");

  auto given = children_named(*p.child("name"), "given");
  REQUIRE(given.size() == 3);
  CHECK(given[0]->value == "Peter");
  CHECK(given[0]->children.empty());
  CHECK_FALSE(given[1]->has_value);
  REQUIRE(given[1]->children.size() == 1);
  CHECK(given[1]->children[0].child_value("value") == "MD");
  CHECK(given[2]->value == "James");
  CHECK(given[2]->child_value("id") == "g3");

  // Written back with the null placeholders lined up, `x` before `_x`.
  std::string written = write_json(p);
  CHECK(written.find(R"("given":["Peter",null,"James"],"_given":[null,{"extension":[)") != std::string::npos);
  CHECK(written.find(R"("birthDate":"1970-03-30","_birthDate":{"id":"b1",)") != std::string::npos);
  Node again = parse_ok(written);
  CHECK(write_json(again) == written);
}

TEST_CASE("an extension without a value and mismatched pairs", "[json]") {
  Node p = parse_ok(
      R"({"resourceType":"Patient","_gender":{"extension":[{"url":"http://example.org/why","valueString":"asked"}]}})");
  const Node* gender = p.child("gender");
  REQUIRE(gender);
  CHECK_FALSE(gender->has_value);
  CHECK(write_json(p).find(R"("_gender":{"extension")") != std::string::npos);
  CHECK(write_json(p).find(R"("gender":)") == std::string::npos);

  Issue i = parse_error(R"({"resourceType":"Patient","name":[{"given":["a","b"],"_given":[null]}]})");
  CHECK(i.message_id == "json-array-mismatch");
  CHECK(i.expression == "Patient.name[0].given");
  i = parse_error(R"({"resourceType":"Patient","name":[{"given":["a",null],"_given":[null,null]}]})");
  CHECK(i.message_id == "json-null");
  CHECK(i.expression == "Patient.name[0].given[1]");
  i = parse_error(R"({"resourceType":"Patient","name":[{"given":["a",null]}]})");
  CHECK(i.message_id == "json-null");
  i = parse_error(R"({"resourceType":"Patient","_foo":{"id":"x"}})");
  CHECK(i.message_id == "json-unknown-element");
  CHECK(i.expression == "Patient._foo");
  // `_x` only exists for primitives.
  i = parse_error(R"({"resourceType":"Patient","_maritalStatus":{"id":"x"}})");
  CHECK(i.message_id == "json-unknown-element");
  i = parse_error(R"({"resourceType":"Patient","_birthDate":"x"})");
  CHECK(i.message_id == "json-wrong-kind");
  i = parse_error(R"({"resourceType":"Patient","_birthDate":{"value":"1970"}})");
  CHECK(i.message_id == "json-unknown-element");
  CHECK(i.expression == "Patient.birthDate.value");
  i = parse_error(R"({"resourceType":"Patient","birthDate":null})");
  CHECK(i.message_id == "json-null");
}

TEST_CASE("choice types", "[json]") {
  Node p = parse_ok(R"({"resourceType":"Patient","deceasedDateTime":"2015-02-14T13:42:00+10:00"})");
  const Node* deceased = p.child("deceased");
  REQUIRE(deceased);
  CHECK(deceased == p.child("deceasedDateTime"));
  CHECK(p.child("deceasedBoolean") == nullptr);
  CHECK(deceased->type->name == "dateTime");
  CHECK(deceased->def->is_choice);

  Issue i = parse_error(R"({"resourceType":"Patient","deceasedBoolean":true,"deceasedDateTime":"2015"})");
  CHECK(i.message_id == "json-multiple-choice");
  CHECK(i.expression == "Patient.deceasedDateTime");
  i = parse_error(R"({"resourceType":"Patient","deceased":true})");
  CHECK(i.message_id == "json-unknown-element");
  i = parse_error(R"({"resourceType":"Patient","deceasedQuantity":{"value":1}})");
  CHECK(i.message_id == "json-unknown-element");
}

TEST_CASE("contained resources and Bundles take their type from resourceType", "[json]") {
  const char* text =
      R"({"resourceType":"Bundle","type":"collection","entry":[)"
      R"({"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","id":"p1",)"
      R"("contained":[{"resourceType":"Organization","id":"o1","name":"Acme"}],)"
      R"("managingOrganization":{"reference":"#o1"}}},)"
      R"({"resource":{"id":"x","resourceType":"Observation","status":"final","code":{"text":"t"}}}]})";
  Node bundle = parse_ok(text);
  CHECK(resource_type(bundle) == "Bundle");
  auto entries = children_named(bundle, "entry");
  REQUIRE(entries.size() == 2);
  const Node* patient = entries[0]->child("resource");
  REQUIRE(patient);
  CHECK(patient->is_resource());
  CHECK(resource_type(*patient) == "Patient");
  CHECK(resource_id(*patient) == "p1");
  CHECK(patient->def == test_definitions().type("Bundle.entry")->find("resource"));
  const Node* org = patient->child("contained");
  REQUIRE(org);
  CHECK(resource_type(*org) == "Organization");
  CHECK(org->child_value("name") == "Acme");
  // resourceType may come after other properties.
  CHECK(resource_type(*entries[1]->child("resource")) == "Observation");
  // Written with resourceType first.
  std::string written = write_json(bundle);
  CHECK(written.find(R"("resource":{"resourceType":"Observation","id":"x",)") != std::string::npos);

  Issue i = parse_error(R"({"resourceType":"Bundle","type":"collection","entry":[{"resource":{"id":"x"}}]})");
  CHECK(i.message_id == "json-missing-resource-type");
  CHECK(i.expression == "Bundle.entry[0].resource");
  i = parse_error(R"({"resourceType":"Patient","contained":[{"resourceType":"HumanName","family":"x"}]})");
  CHECK(i.message_id == "json-unknown-resource-type");
  i = parse_error(R"({"resourceType":"Patient","contained":[{"resourceType":"DomainResource"}]})");
  CHECK(i.message_id == "json-abstract-resource-type");
  i = parse_error(R"({"resourceType":"Patient","contained":[{"resourceType":"Organization","foo":1}]})");
  CHECK(i.message_id == "json-unknown-element");
  CHECK(i.expression == "Patient.contained[0].foo");
}

TEST_CASE("resourceType is required, known and concrete", "[json]") {
  Issue i = parse_error(R"({"id":"x"})");
  CHECK(i.message_id == "json-missing-resource-type");
  CHECK(i.line == 1);
  CHECK(i.column == 1);
  i = parse_error(R"({"resourceType":"Pateint"})");
  CHECK(i.message_id == "json-unknown-resource-type");
  CHECK(i.column == 17);
  CHECK(i.diagnostics.find("Pateint") != std::string::npos);
  CHECK(parse_error(R"({"resourceType":"Resource"})").message_id == "json-abstract-resource-type");
  CHECK(parse_error(R"({"resourceType":"DomainResource"})").message_id == "json-abstract-resource-type");
  CHECK(parse_error(R"({"resourceType":"Patient.contact"})").message_id == "json-unknown-resource-type");
  CHECK(parse_error(R"({"resourceType":7})").message_id == "json-wrong-kind");
  CHECK(parse_error(R"({"resourceType":"Patient","resourceType":"Patient"})").message_id == "json-duplicate-key");
  // A resource with nothing but its type is well-formed JSON for this reader.
  CHECK(resource_type(parse_ok(R"({"resourceType":"Patient"})")) == "Patient");
}

TEST_CASE("errors give the FHIRPath location and the line/column of the offending text", "[json]") {
  const std::string text =
      "{\n"
      "  \"resourceType\": \"Patient\",\n"
      "  \"name\": [\n"
      "    {\"family\": \"Chalmers\"},\n"
      "    {\"given\": [\"Jim\", \"Bob\"], \"nickname\": \"JB\"}\n"
      "  ]\n"
      "}\n";
  Issue i = parse_error(text);
  CHECK(i.message_id == "json-unknown-element");
  CHECK(i.expression == "Patient.name[1].nickname");
  CHECK(i.line == 5);
  CHECK(i.column == 31);
  CHECK(i.code == "structure");
  CHECK(i.diagnostics.find("nickname") != std::string::npos);

  const std::string duplicate =
      "{\"resourceType\": \"Patient\",\n"
      " \"name\": [{\"family\": \"A\",\n"
      "           \"family\": \"B\"}]}";
  i = parse_error(duplicate);
  CHECK(i.message_id == "json-duplicate-key");
  CHECK(i.expression == "Patient.name[0].family");
  CHECK(i.line == 3);
  CHECK(i.column == 12);

  // Columns count characters, not bytes, and escaped strings are located by their opening quote.
  i = parse_error("{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"M\u00fcller\\\"\",\"x\":1}]}");
  CHECK(i.expression == "Patient.name[0].x");
  CHECK(i.column == 56);
  i = parse_error("{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"M\u00fcller\"}],\"active\":\"y\\\"es\"}");
  CHECK(i.expression == "Patient.active");
  CHECK(i.message_id == "json-wrong-kind");
  CHECK(i.column == 65);

  i = parse_error("{\"resourceType\":\"Patient\",\n\"active\":tru}");
  CHECK(i.message_id == "json-syntax");
  CHECK(i.line == 2);
  CHECK(i.column >= 10);
  CHECK(i.expression.empty());
}

TEST_CASE("malformed JSON and empty values are rejected", "[json]") {
  CHECK(parse_error("").message_id == "json-syntax");
  CHECK(parse_error("{").message_id == "json-syntax");
  CHECK(parse_error(R"({"resourceType":"Patient"} x)").message_id == "json-syntax");
  CHECK(parse_error(R"({"resourceType":"Patient",})").message_id == "json-syntax");
  CHECK(parse_error(R"({'resourceType':'Patient'})").message_id == "json-syntax");
  CHECK(parse_error(R"({"resourceType":"Patient","active":NaN})").message_id == "json-syntax");
  CHECK(parse_error(std::string("{\"resourceType\":\"Patient\",\"id\":\"a\xff\"}")).message_id == "json-syntax");
  CHECK(parse_error(std::string("{\"resourceType\":\"Patient\"}\0", 27)).message_id == "json-syntax");

  Issue i = parse_error(R"({"resourceType":"Patient","id":""})");
  CHECK(i.message_id == "json-empty-string");
  CHECK(i.expression == "Patient.id");
  i = parse_error(R"({"resourceType":"Patient","name":[]})");
  CHECK(i.message_id == "json-empty-array");
  i = parse_error(R"({"resourceType":"Patient","name":[{}]})");
  CHECK(i.message_id == "json-empty-object");
  CHECK(i.expression == "Patient.name[0]");
  i = parse_error(R"({"resourceType":"Patient","maritalStatus":{}})");
  CHECK(i.message_id == "json-empty-object");
  i = parse_error(R"({"resourceType":"Patient","name":[null]})");
  CHECK(i.message_id == "json-null");
  i = parse_error(R"({"resourceType":"Patient","name":[{"family":"x"}],"name":[{"family":"y"}]})");
  CHECK(i.message_id == "json-duplicate-key");
  // resourceType is not an element of a datatype.
  i = parse_error(R"({"resourceType":"Patient","name":[{"resourceType":"HumanName"}]})");
  CHECK(i.message_id == "json-unknown-element");
  // Comments are not JSON.
  CHECK(parse_error("{\"resourceType\":\"Patient\" /* c */}").message_id == "json-syntax");
}

TEST_CASE("depth and size limits", "[json]") {
  ParseLimits limits;
  limits.max_depth = 5;
  // Patient{ name[ {extension[ {extension[ ... : depth grows by two per extension level.
  std::string ok = R"({"resourceType":"Patient","name":[{"family":"x"}]})";
  Node n;
  CHECK(parse_json(test_definitions(), ok, &n, limits));
  std::string deep =
      R"({"resourceType":"Patient","extension":[{"url":"http://e","extension":[{"url":"http://f","valueString":"x"}]}]})";
  CHECK(parse_json(test_definitions(), deep, &n, limits));  // depth 5
  std::string deeper =
      R"({"resourceType":"Patient","extension":[{"url":"http://e","extension":[{"url":"http://f","extension":[{"url":"g","valueString":"x"}]}]}]})";
  Issue i = parse_error(deeper, limits);
  CHECK(i.message_id == "json-too-deep");
  CHECK(i.line == 1);
  CHECK(i.column == 101);

  // The default limit stops hostile nesting without exhausting the stack.
  std::string hostile = R"({"resourceType":"Patient","x":)" + std::string(1000000, '[') + std::string(1000000, ']') + "}";
  CHECK(parse_error(hostile).message_id == "json-too-deep");

  ParseLimits small;
  small.max_bytes = 40;
  Node m;
  Status s = parse_json(test_definitions(), ok, &m, small);
  REQUIRE_FALSE(s);
  CHECK(s.issues().front().message_id == "json-too-large");
  CHECK(s.category() == ErrorCategory::TooLarge);
  small.max_bytes = ok.size();
  CHECK(parse_json(test_definitions(), ok, &m, small));
}

TEST_CASE("errors are Invalid with an issue code", "[json]") {
  Node n;
  Status s = parse_json(test_definitions(), R"({"resourceType":"Patient","foo":1})", &n);
  CHECK(s.category() == ErrorCategory::Invalid);
  REQUIRE(s.issues().size() == 1);
  CHECK(s.issues()[0].severity == Severity::Error);
  CHECK(s.issues()[0].code == "structure");
}

TEST_CASE("xhtml and non-ASCII text are kept verbatim", "[json]") {
  const std::string div =
      "<div xmlns=\"http://www.w3.org/1999/xhtml\">\n  <p>Gr\xC3\xBC\xC3\x9F" "e &amp; <b>bold</b> \xE6\x97\xA5\xE6\x9C\xAC</p>\n</div>";
  std::string text = R"({"resourceType":"Patient","text":{"status":"generated","div":")";
  for (char c : div) {
    if (c == '"') text += "\\\"";
    else if (c == '\n') text += "\\n";
    else text += c;
  }
  text += R"("},"name":[{"family":"\u00c5ngstr\u00f6m","given":["\ud83d\ude00 Zo\u00eb"]}]})";
  Node p = parse_ok(text);
  const Node* narrative = p.child("text");
  REQUIRE(narrative);
  CHECK(narrative->child_value("div") == div);
  CHECK(narrative->child("div")->type->name == "xhtml");
  const Node* name = p.child("name");
  CHECK(name->child_value("family") == "\xC3\x85ngstr\xC3\xB6m");
  CHECK(name->child_value("given") == "\xF0\x9F\x98\x80 Zo\xC3\xAB");
  std::string written = write_json(p);
  // Non-ASCII goes out as UTF-8, not \u escapes; quotes and newlines are escaped.
  CHECK(written.find("\"family\":\"\xC3\x85ngstr\xC3\xB6m\"") != std::string::npos);
  CHECK(written.find("\\u") == std::string::npos);
  CHECK(written.find("xmlns=\\\"http://www.w3.org/1999/xhtml\\\">\\n  <p>") != std::string::npos);
  Node again = parse_ok(written);
  CHECK(again.child("text")->child_value("div") == div);
}

TEST_CASE("control characters are escaped on output", "[json]") {
  Node p = parse_ok(R"({"resourceType":"Patient","name":[{"family":"a\tb\u0001c\\d\/e"}]})");
  CHECK(p.child("name")->child_value("family") == std::string("a\tb\x01" "c\\d/e"));
  std::string written = write_json(p);
  CHECK(written.find(R"("family":"a\tb\u0001c\\d/e")") != std::string::npos);
}

TEST_CASE("output follows definition order whatever the input order", "[json]") {
  Node p = parse_ok(
      R"({"gender":"male","name":[{"given":["A"],"family":"B"}],"id":"x","resourceType":"Patient","active":true,)"
      R"("meta":{"versionId":"2"}})");
  CHECK(write_json(p) ==
        R"({"resourceType":"Patient","id":"x","meta":{"versionId":"2"},"active":true,)"
        R"("name":[{"family":"B","given":["A"]}],"gender":"male"})");
  // Node children are in definition order too.
  REQUIRE(p.children.size() == 5);
  for (size_t i = 1; i < p.children.size(); ++i) CHECK(p.children[i - 1].def->order < p.children[i].def->order);
}

TEST_CASE("pretty printing indents by two spaces and reads back the same", "[json]") {
  Node p = parse_ok(R"({"resourceType":"Patient","id":"x","name":[{"family":"B","given":["A","C"]}]})");
  JsonWriteOptions pretty;
  pretty.pretty = true;
  std::string text = write_json(p, pretty);
  CHECK(text.find("{\n  \"resourceType\": \"Patient\",\n  \"id\": \"x\",\n  \"name\": [\n    {\n      \"family\"") == 0);
  CHECK(write_json(parse_ok(text)) == write_json(p));
}

TEST_CASE("a leading UTF-8 byte order mark is skipped", "[json]") {
  Node p = parse_ok("\xEF\xBB\xBF{\"resourceType\":\"Patient\",\"id\":\"a\"}");
  CHECK(resource_id(p) == "a");
  Issue i = parse_error("\xEF\xBB\xBF{\"resourceType\":\"Patient\",\"foo\":1}");
  CHECK(i.message_id == "json-unknown-element");
  CHECK(i.line == 1);
  CHECK(i.column == 27);
  // Only at the start.
  CHECK(parse_error("{\"resourceType\":\"Patient\"}\xEF\xBB\xBF").message_id == "json-syntax");
}

TEST_CASE("long strings: escapes, non-ASCII and errors at every position of the fast scan", "[json]") {
  // The reader scans plain characters eight at a time; put the special
  // character at each offset within and around one such word.
  for (size_t at = 0; at < 20; ++at) {
    INFO("at " << at);
    const std::string before(at, 'a'), after(11, 'b');
    auto patient_with_family = [&](const std::string& json_value) {
      return R"({"resourceType":"Patient","name":[{"family":")" + json_value + R"("}]})";
    };
    CHECK(parse_ok(patient_with_family(before + "\\\"" + after)).child("name")->child_value("family") ==
          before + "\"" + after);
    CHECK(parse_ok(patient_with_family(before + "\\u00e9" + after)).child("name")->child_value("family") ==
          before + "\xC3\xA9" + after);
    CHECK(parse_ok(patient_with_family(before + "\xC3\xA9" + after)).child("name")->child_value("family") ==
          before + "\xC3\xA9" + after);
    // Invalid UTF-8, a raw control character, an unterminated string.
    Issue i = parse_error(patient_with_family(before + "\xFF" + after));
    CHECK(i.message_id == "json-syntax");
    i = parse_error(patient_with_family(before + "\x01" + after));
    CHECK(i.message_id == "json-syntax");
    CHECK(i.column == static_cast<int>(46 + at));
    CHECK(parse_error(R"({"resourceType":"Patient","id":")" + before).message_id == "json-syntax");
  }
  // A megabyte-long value and the location of an error after it.
  const std::string data(1 << 20, 'Q');
  std::string text = R"({"resourceType":"Binary","contentType":"text/plain","data":")" + data + "\",\n\"x\":1}";
  Issue i = parse_error(text);
  CHECK(i.message_id == "json-unknown-element");
  CHECK(i.line == 2);
  CHECK(i.column == 1);
  text = R"({"resourceType":"Binary","contentType":"text/plain","data":")" + data + "\"}";
  CHECK(parse_ok(text).child_value("data") == data);
  // Keys go through the same path.
  CHECK(parse_ok(R"({"resourceType":"Patient","na\u006de":[{"family":"x"}]})").child("name"));
}

TEST_CASE("compact output is byte for byte what RapidJSON's writer produces", "[json]") {
  // Every character class at every offset of an eight-byte word.
  std::string family;
  for (size_t at = 0; at < 20; ++at)
    family += std::string(at, 'x') + "\"" + std::string(at, 'y') + "\\" + std::string(at, 'z') + "\x1f\t\n\r\b\f" +
              "\x7f/\xC3\xA9\xE6\x97\xA5";
  std::string family_json;
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> reference_writer(buffer);
  reference_writer.String(family.data(), static_cast<rapidjson::SizeType>(family.size()));
  family_json = buffer.GetString();
  Node p = parse_ok(R"({"resourceType":"Patient","id":"x","active":true,"name":[{"family":)" + family_json +
                    R"(,"given":["A","B"]},{"text":"C"}],"multipleBirthInteger":3,)"
                    R"("extension":[{"url":"http://e.org/a","valueDecimal":1.50}]})");
  CHECK(p.child("name")->child_value("family") == family);
  const std::string compact = write_json(p);
  // RapidJSON's writer fed from the pretty output (also RapidJSON's).
  JsonWriteOptions pretty;
  pretty.pretty = true;
  const std::string pretty_text = write_json(p, pretty);
  rapidjson::StringBuffer expected;
  rapidjson::Writer<rapidjson::StringBuffer> writer(expected);
  rapidjson::Reader reader;
  rapidjson::StringStream in(pretty_text.c_str());
  REQUIRE_FALSE(reader.Parse<rapidjson::kParseNumbersAsStringsFlag>(in, writer).IsError());
  // With numbers as strings the writer quotes them; put the numbers back.
  std::string reference = expected.GetString();
  for (const char* number : {"3", "1.50"}) {
    const std::string quoted = std::string("\"") + number + "\"";
    size_t at = reference.find(":" + quoted);
    REQUIRE(at != std::string::npos);
    reference.replace(at + 1, quoted.size(), number);
  }
  CHECK(compact == reference);
}
