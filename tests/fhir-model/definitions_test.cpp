// Facts about the R4 type system as loaded from the official package.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>

#include "model_fixture.h"

using namespace espace::fhir;

TEST_CASE("Patient.contact is a backbone with its own elements", "[definitions]") {
  const Definitions& defs = test_definitions();
  const TypeDef* patient = defs.resource_type("Patient");
  REQUIRE(patient);
  const ElementDef* contact = patient->find("contact");
  REQUIRE(contact);
  CHECK(contact->is_array());
  REQUIRE(contact->types.size() == 1);
  const TypeDef* backbone = contact->types[0];
  CHECK(backbone->name == "Patient.contact");
  CHECK(backbone->kind == TypeKind::Backbone);
  CHECK(backbone->find("name"));
  CHECK(backbone->find("telecom"));
  CHECK(backbone->find("id"));
  CHECK(backbone->find("modifierExtension"));
  CHECK(backbone->find("name")->types[0]->name == "HumanName");
  CHECK(defs.type("Patient.contact") == backbone);
}

TEST_CASE("Observation.value[x] is a choice that allows Quantity", "[definitions]") {
  const TypeDef* obs = test_definitions().resource_type("Observation");
  REQUIRE(obs);
  const ElementDef* value = obs->find("value");
  REQUIRE(value);
  CHECK(value->is_choice);
  CHECK(value->types.size() == value->choice_names.size());
  const TypeDef* chosen = nullptr;
  CHECK(obs->find_json("valueQuantity", &chosen) == value);
  REQUIRE(chosen);
  CHECK(chosen->name == "Quantity");
  CHECK(obs->find_json("valueString", &chosen) == value);
  CHECK(chosen->name == "string");
  CHECK(obs->find_json("value", &chosen) == nullptr);
  CHECK(obs->find_json("valueFoo", &chosen) == nullptr);
}

TEST_CASE("Questionnaire.item.item refers back to Questionnaire.item", "[definitions]") {
  const Definitions& defs = test_definitions();
  const TypeDef* item = defs.type("Questionnaire.item");
  REQUIRE(item);
  const ElementDef* nested = item->find("item");
  REQUIRE(nested);
  REQUIRE(nested->types.size() == 1);
  CHECK(nested->types[0] == item);
}

TEST_CASE("type hierarchy and primitive kinds", "[definitions]") {
  const Definitions& defs = test_definitions();
  const TypeDef* patient = defs.type("Patient");
  const TypeDef* domain = defs.type("DomainResource");
  const TypeDef* resource = defs.type("Resource");
  REQUIRE(patient);
  REQUIRE(domain);
  REQUIRE(resource);
  CHECK(patient->is_a(domain));
  CHECK(patient->is_a(resource));
  CHECK_FALSE(domain->is_a(patient));
  CHECK(domain->is_abstract);
  CHECK(defs.resource_type("DomainResource") == nullptr);
  CHECK(defs.resource_type("HumanName") == nullptr);
  CHECK(defs.type("Bundle")->is_a(resource));
  CHECK_FALSE(defs.type("Bundle")->is_a(domain));

  CHECK(defs.type("decimal")->json_value == JsonValueKind::Number);
  CHECK(defs.type("positiveInt")->json_value == JsonValueKind::Number);
  CHECK(defs.type("boolean")->json_value == JsonValueKind::Boolean);
  CHECK(defs.type("dateTime")->json_value == JsonValueKind::String);
  CHECK(defs.type("code")->is_primitive());
  CHECK(defs.type("code")->base == defs.type("string"));
  CHECK_FALSE(defs.type("date")->regex.empty());
  // A primitive's value is not a child element; id and extension are.
  CHECK(defs.type("string")->find("value") == nullptr);
  CHECK(defs.type("string")->find("extension"));
}

TEST_CASE("element details from the snapshots", "[definitions]") {
  const Definitions& defs = test_definitions();
  const TypeDef* patient = defs.type("Patient");
  // Inherited elements come first, in snapshot order.
  REQUIRE(patient->elements.size() > 4);
  CHECK(patient->elements[0].name == "id");
  CHECK(patient->elements[1].name == "meta");
  for (size_t i = 0; i < patient->elements.size(); ++i) {
    CHECK(patient->elements[i].order == static_cast<int>(i));
    CHECK(patient->elements[i].owner == patient);
  }
  const ElementDef* gender = patient->find("gender");
  REQUIRE(gender);
  CHECK(gender->binding_strength == "required");
  CHECK(gender->binding_value_set == "http://hl7.org/fhir/ValueSet/administrative-gender");
  CHECK(gender->is_summary);
  CHECK(patient->find("active")->is_modifier);
  CHECK(patient->find("deceased")->is_choice);

  const TypeDef* extension = defs.type("Extension");
  CHECK(extension->find("url")->xml_attribute);
  CHECK(extension->find("url")->types[0]->name == "uri");
  CHECK(extension->find("url")->min == 1);
  CHECK(extension->find("id")->xml_attribute);
  CHECK_FALSE(patient->find("id")->xml_attribute);
  // Extension.value[x] lists every allowed type explicitly.
  const TypeDef* chosen = nullptr;
  CHECK(extension->find_json("valueCodeableConcept", &chosen));
  CHECK(extension->find_json("valueBoolean", &chosen));
  CHECK(extension->find_json("valueReference", &chosen));
  CHECK(extension->find("value")->types.size() > 40);

  CHECK(defs.type("Bundle.entry")->find("resource")->types[0] == defs.type("Resource"));
  CHECK(defs.type("Narrative")->find("div")->types[0]->name == "xhtml");
}

TEST_CASE("resource type names and search parameters", "[definitions]") {
  const Definitions& defs = test_definitions();
  auto names = test_definitions().resource_type_names();
  // R4 4.0.1 defines 146 concrete resource types (abstract Resource and DomainResource excluded).
  CHECK(names.size() == 146);
  CHECK(std::is_sorted(names.begin(), names.end()));
  CHECK(std::find(names.begin(), names.end(), "Patient") != names.end());
  CHECK(std::find(names.begin(), names.end(), "DomainResource") == names.end());
  CHECK(defs.search_parameters_json().size() > 1000);
  CHECK(defs.search_parameters_json().front().find("\"SearchParameter\"") != std::string::npos);
  CHECK_FALSE(defs.structure_definition_file("http://hl7.org/fhir/StructureDefinition/vitalsigns").empty());
  CHECK_FALSE(defs.structure_definition_file("http://hl7.org/fhir/StructureDefinition/Patient|4.0.1").empty());
  auto profiles = defs.profile_urls();
  CHECK(std::find(profiles.begin(), profiles.end(), "http://hl7.org/fhir/StructureDefinition/vitalsigns") !=
        profiles.end());
  CHECK(std::find(profiles.begin(), profiles.end(), "http://hl7.org/fhir/StructureDefinition/Patient") ==
        profiles.end());
}

TEST_CASE("loading from a directory without a package fails with a clear error", "[definitions]") {
  std::unique_ptr<Definitions> defs;
  Status s = Definitions::load("/nonexistent/espace-package", &defs);
  CHECK_FALSE(s);
  CHECK(defs == nullptr);
  CHECK(s.message().find("/nonexistent/espace-package") != std::string::npos);
  s = Definitions::load(ESPACE_SOURCE_DIR "/tests/fhir-model", &defs);
  CHECK_FALSE(s);
  CHECK(s.message().find("StructureDefinition") != std::string::npos);
}

TEST_CASE("default_package_dir honours ESPACE_FHIR_PACKAGE, then XDG_CACHE_HOME, then HOME", "[definitions]") {
  // Save and restore the environment this test changes.
  auto saved = [](const char* name) {
    const char* v = std::getenv(name);
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
  auto restore = [](const char* name, const std::optional<std::string>& v) {
    if (v)
      setenv(name, v->c_str(), 1);
    else
      unsetenv(name);
  };
  auto package = saved("ESPACE_FHIR_PACKAGE"), xdg = saved("XDG_CACHE_HOME"), home = saved("HOME");

  setenv("ESPACE_FHIR_PACKAGE", "/opt/fhir/package", 1);
  setenv("XDG_CACHE_HOME", "/xdg", 1);
  CHECK(Definitions::default_package_dir() == "/opt/fhir/package");
  unsetenv("ESPACE_FHIR_PACKAGE");
  CHECK(Definitions::default_package_dir() == "/xdg/espace/hl7.fhir.r4.examples-4.0.1/package");
  unsetenv("XDG_CACHE_HOME");
  setenv("HOME", "/home/someone", 1);
  CHECK(Definitions::default_package_dir() == "/home/someone/.cache/espace/hl7.fhir.r4.examples-4.0.1/package");

  restore("ESPACE_FHIR_PACKAGE", package);
  restore("XDG_CACHE_HOME", xdg);
  restore("HOME", home);
}
