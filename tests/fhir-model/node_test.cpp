// Node navigation and editing helpers, and the OperationOutcome renderer.
#include <catch2/catch.hpp>

#include <optional>

#include "espace/fhir/json.h"
#include "espace/fhir/node.h"
#include "espace/fhir/status.h"
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

// A node for element `element` of `owner`; primitive when `value` is given.
Node element_node(const TypeDef* owner, std::string_view element, std::optional<std::string> value) {
  Node n;
  n.def = owner->find(element);
  REQUIRE(n.def);
  n.type = n.def->types[0];
  n.name = n.def->name;
  if (value) {
    n.value = std::move(*value);
    n.has_value = true;
  }
  return n;
}

}  // namespace

TEST_CASE("child and child_value", "[node]") {
  Node p = parse_ok(
      R"({"resourceType":"Patient","id":"p1","active":true,"name":[{"family":"A"},{"family":"B"}],)"
      R"("deceasedBoolean":false})");
  CHECK(resource_type(p) == "Patient");
  CHECK(resource_id(p) == "p1");
  CHECK(p.child("name")->child_value("family") == "A");
  CHECK(p.child_value("active") == "true");
  CHECK(p.child_value("deceased") == "false");
  CHECK(p.child_value("deceasedBoolean") == "false");
  CHECK(p.child("deceasedDateTime") == nullptr);
  CHECK(p.child("gender") == nullptr);
  CHECK(p.child_value("gender").empty());
  // child_value of a non-primitive is empty.
  CHECK(p.child_value("name").empty());
  Node empty;
  CHECK(resource_type(empty).empty());
  CHECK(resource_id(empty).empty());
}

TEST_CASE("set_primitive creates meta in definition order and replaces values", "[node]") {
  Node p = parse_ok(R"({"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},"active":true})");
  REQUIRE(set_primitive(p, "meta.lastUpdated", "2024-01-02T03:04:05Z"));
  REQUIRE(set_primitive(p, "meta.versionId", "1"));
  REQUIRE(set_primitive(p, "id", "abc"));
  CHECK(write_json(p) ==
        R"({"resourceType":"Patient","id":"abc","meta":{"versionId":"1","lastUpdated":"2024-01-02T03:04:05Z"},)"
        R"("text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},"active":true})");
  REQUIRE(set_primitive(p, "meta.versionId", "2"));
  REQUIRE(set_primitive(p, "id", "def"));
  CHECK(resource_id(p) == "def");
  CHECK(p.child("meta")->child_value("versionId") == "2");
  CHECK(p.children.size() == 4);
  CHECK(p.child("meta")->children.size() == 2);
  // The result is a valid resource again.
  Node back = parse_ok(write_json(p));
  CHECK(write_json(back) == write_json(p));
}

TEST_CASE("set_primitive keeps extensions and collapses repeating elements", "[node]") {
  Node p = parse_ok(
      R"({"resourceType":"Patient","id":"x","_id":{"extension":[{"url":"http://e","valueString":"s"}]},)"
      R"("meta":{"profile":["http://a","http://b"]}})");
  REQUIRE(set_primitive(p, "id", "y"));
  CHECK(resource_id(p) == "y");
  CHECK(p.child("id")->children.size() == 1);
  REQUIRE(set_primitive(p, "meta.profile", "http://c"));
  CHECK(write_json(*p.child("meta")) == R"({"profile":["http://c"]})");
}

TEST_CASE("set_primitive rejects paths that are not primitive elements", "[node]") {
  Node p = parse_ok(R"({"resourceType":"Patient","id":"x"})");
  for (const char* bad : {"foo", "meta", "meta.foo", "id.value", "deceased", "meta.versionId.x", ""}) {
    INFO(bad);
    Status s = set_primitive(p, bad, "1");
    CHECK_FALSE(s);
    CHECK(s.category() == ErrorCategory::Internal);
  }
  // Nothing was half-created by the failures except intermediate nodes of valid prefixes.
  CHECK(p.child("deceased") == nullptr);
  Node untyped;
  CHECK_FALSE(set_primitive(untyped, "id", "x"));
}

TEST_CASE("remove_element and insert_ordered", "[node]") {
  Node p = parse_ok(
      R"({"resourceType":"Patient","id":"x","meta":{"versionId":"3"},"name":[{"family":"A"},{"family":"B"}],"gender":"male","deceasedBoolean":true})");
  remove_element(p, "meta");
  remove_element(p, "name");
  remove_element(p, "deceased");
  remove_element(p, "nothing");
  CHECK(write_json(p) == R"({"resourceType":"Patient","id":"x","gender":"male"})");

  const TypeDef* patient = test_definitions().type("Patient");
  insert_ordered(p, element_node(patient, "active", "false"));
  Node name = element_node(patient, "name", {});
  insert_ordered(name, element_node(name.type, "family", "C"));
  insert_ordered(p, name);
  name.children[0] = element_node(name.type, "family", "D");
  insert_ordered(p, name);  // after the existing item of the same element
  CHECK(write_json(p) ==
        R"({"resourceType":"Patient","id":"x","active":false,"name":[{"family":"C"},{"family":"D"}],"gender":"male"})");
}

TEST_CASE("a Node built by code is written with the element names", "[node]") {
  const TypeDef* oo = test_definitions().resource_type("OperationOutcome");
  Node root;
  root.type = oo;
  Node issue;
  issue.def = oo->find("issue");
  issue.type = issue.def->types[0];
  REQUIRE(set_primitive(issue, "code", "invalid"));
  REQUIRE(set_primitive(issue, "severity", "error"));
  insert_ordered(root, issue);
  CHECK(write_json(root) == R"({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid"}]})");
}

TEST_CASE("outcome_json writes a valid OperationOutcome", "[status]") {
  CHECK(std::string(severity_code(Severity::Fatal)) == "fatal");
  CHECK(std::string(severity_code(Severity::Error)) == "error");
  CHECK(std::string(severity_code(Severity::Warning)) == "warning");
  CHECK(std::string(severity_code(Severity::Information)) == "information");

  Issue a;
  a.severity = Severity::Error;
  a.code = "structure";
  a.diagnostics = "Patient.foo: unknown property \"foo\"";
  a.expression = "Patient.foo";
  a.line = 3;
  a.column = 7;
  Issue b;
  b.severity = Severity::Warning;
  b.code = "not-found";
  b.diagnostics = "Gr\xC3\xBC\xC3\x9F" "e";
  std::string text = outcome_json({a, b});
  Node oo = parse_ok(text);
  CHECK(resource_type(oo) == "OperationOutcome");
  std::vector<const Node*> issues;
  oo.for_each_child("issue", [&](const Node& n) { issues.push_back(&n); });
  REQUIRE(issues.size() == 2);
  CHECK(issues[0]->child_value("severity") == "error");
  CHECK(issues[0]->child_value("code") == "structure");
  CHECK(issues[0]->child_value("diagnostics") == "Patient.foo: unknown property \"foo\" (at line 3, column 7)");
  CHECK(issues[0]->child_value("expression") == "Patient.foo");
  CHECK(issues[0]->child_value("location") == "Line[3] Col[7]");
  CHECK(issues[1]->child_value("severity") == "warning");
  CHECK(issues[1]->child_value("code") == "not-found");
  CHECK(issues[1]->child_value("diagnostics") == "Gr\xC3\xBC\xC3\x9F" "e");
  CHECK(issues[1]->child("expression") == nullptr);
  CHECK(issues[1]->child("location") == nullptr);
  // Our writer puts the elements in the same (definition) order.
  CHECK(write_json(oo) == text);

  Node ok = parse_ok(outcome_json({}));
  REQUIRE(ok.child("issue"));
  CHECK(ok.child("issue")->child_value("severity") == "information");
}

TEST_CASE("a parse error renders as an OperationOutcome", "[status]") {
  Node n;
  Status s = parse_json(test_definitions(), "{\"resourceType\":\"Patient\",\n \"nmae\":[]}", &n);
  REQUIRE_FALSE(s);
  Node oo = parse_ok(outcome_json(s.issues()));
  const Node* issue = oo.child("issue");
  REQUIRE(issue);
  CHECK(issue->child_value("expression") == "Patient.nmae");
  CHECK(issue->child_value("location") == "Line[2] Col[2]");
  CHECK(issue->child_value("diagnostics").find("nmae") != std::string_view::npos);
}

TEST_CASE("children added out of order are still written grouped and in definition order", "[node]") {
  Node p = parse_ok(R"({"resourceType":"Patient","name":[{"family":"A"}],"gender":"male"})");
  const TypeDef* patient = test_definitions().type("Patient");
  // Appended directly, bypassing insert_ordered: after gender, and split from the first name.
  Node name = element_node(patient, "name", {});
  insert_ordered(name, element_node(name.type, "family", "B"));
  p.children.push_back(name);
  p.children.push_back(element_node(patient, "id", "x"));
  CHECK(write_json(p) ==
        R"({"resourceType":"Patient","id":"x","name":[{"family":"A"},{"family":"B"}],"gender":"male"})");
}

TEST_CASE("outcome_json carries message ids in details and XPaths in location", "[status]") {
  Issue cda;
  cda.code = "processing";
  cda.message_id = "cda-patient-ins-key";
  cda.diagnostics = "the INS key does not match";
  cda.location = "/ClinicalDocument/recordTarget/patientRole/id[1]/@extension";
  Issue plain;
  plain.diagnostics = "no id";
  std::string text = outcome_json({cda, plain});
  Node oo = parse_ok(text);
  std::vector<const Node*> issues;
  oo.for_each_child("issue", [&](const Node& n) { issues.push_back(&n); });
  REQUIRE(issues.size() == 2);
  const Node* details = issues[0]->child("details");
  REQUIRE(details);
  REQUIRE(details->child("coding"));
  CHECK(details->child("coding")->child_value("system") == kMessageIdSystem);
  CHECK(details->child("coding")->child_value("code") == "cda-patient-ins-key");
  CHECK(issues[0]->child_value("location") == "/ClinicalDocument/recordTarget/patientRole/id[1]/@extension");
  CHECK(issues[0]->child_value("diagnostics") == "the INS key does not match");
  CHECK(issues[1]->child("details") == nullptr);
  CHECK(issues[1]->child("location") == nullptr);
  // Definition order: what we write is what the model writes back.
  CHECK(write_json(oo) == text);
}
