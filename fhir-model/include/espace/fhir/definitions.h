// The R4 type system, built once from the official StructureDefinitions.
//
// A Definitions object is immutable after load() and is shared by every thread
// without locking. TypeDef and ElementDef pointers stay valid for its lifetime.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "espace/fhir/status.h"

namespace espace::fhir {

struct TypeDef;

// Hash usable with string_view keys (heterogeneous lookup without allocating).
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

enum class TypeKind : uint8_t {
  Primitive,      // boolean, string, decimal, date, ... (lexical value + id/extension)
  Complex,        // HumanName, Quantity, Extension, ...
  Resource,       // Patient, Bundle, ... including the abstract Resource and DomainResource
  Backbone,       // anonymous nested structure, e.g. "Patient.contact"
};

// How a primitive's value is written in JSON.
enum class JsonValueKind : uint8_t { String, Number, Boolean };

struct ElementDef {
  std::string path;              // "Patient.contact.name" (as in the snapshot)
  std::string name;              // last path segment without "[x]": "contact", "value", "deceased"
  bool is_choice = false;        // path ended in "[x]"
  uint32_t min = 0;
  uint32_t max = 1;              // UINT32_MAX for "*"
  bool is_array() const { return max > 1; }
  bool is_summary = false;       // isSummary in the base definition (for _summary=true)
  bool is_modifier = false;
  int order = 0;                 // position among the owner's elements: JSON/XML output order
  const TypeDef* owner = nullptr;
  // Allowed types. For a choice element, one per allowed type; otherwise one.
  // For a backbone element, the single entry is its anonymous Backbone TypeDef;
  // for a contentReference the referenced element's type.
  std::vector<const TypeDef*> types;
  // For a choice element, the JSON names in the same order as types:
  // "valueQuantity", "valueString", ...
  std::vector<std::string> choice_names;
  // Binding (strength empty when unbound); used by the validator.
  std::string binding_strength;  // "required", "extensible", "preferred", "example"
  std::string binding_value_set; // canonical URL (without |version)
  // True for elements rendered as XML attributes (Element.id, Extension.url).
  bool xml_attribute = false;
};

struct TypeDef {
  std::string name;                // "Patient", "HumanName", "string", "Patient.contact"
  std::string url;                 // canonical URL of the StructureDefinition ("" for Backbone)
  TypeKind kind = TypeKind::Complex;
  bool is_abstract = false;
  const TypeDef* base = nullptr;   // DomainResource for Patient, Element for HumanName, ...
  JsonValueKind json_value = JsonValueKind::String;  // primitives only
  std::string regex;               // primitives only: the value regex from the spec, if any
  // Elements in snapshot order, inherited ones included (id, meta, ... first).
  std::vector<ElementDef> elements;

  // Looks up an element by the name that appears in JSON ("valueQuantity",
  // "birthDate", "_birthDate" is NOT accepted here). On a choice element sets
  // *chosen to the chosen type; otherwise *chosen is the element's only type.
  // Returns nullptr when the type has no such element.
  const ElementDef* find_json(std::string_view json_name, const TypeDef** chosen) const;
  // Looks up by element name ("value" for value[x]), for FHIRPath navigation.
  const ElementDef* find(std::string_view name) const;

  bool is_primitive() const { return kind == TypeKind::Primitive; }
  bool is_resource() const { return kind == TypeKind::Resource; }
  // True when this type is `other` or derives from it (Patient is DomainResource).
  bool is_a(const TypeDef* other) const;

  // Filled by Definitions::load(); maps JSON names to (element index, type).
  std::unordered_map<std::string, std::pair<uint32_t, const TypeDef*>, StringHash,
                     std::equal_to<>> json_index;
};

class Definitions {
 public:
  // Loads every StructureDefinition of kind primitive-type, complex-type and
  // resource (derivation = specialization) from an unpacked FHIR npm package
  // directory ("package/" of hl7.fhir.r4.examples). Profiles (constraints) are
  // kept by URL for the validator but do not define types.
  static Status load(const std::string& package_dir, std::unique_ptr<Definitions>* out);

  // The directory of the package cache: $ESPACE_FHIR_PACKAGE if set, else
  // the path that tools/setup writes ($XDG_CACHE_HOME or ~/.cache)/espace/hl7.fhir.r4.examples-4.0.1/package.
  static std::string default_package_dir();

  const TypeDef* type(std::string_view name) const;          // "Patient", "string", "Patient.contact"
  const TypeDef* resource_type(std::string_view name) const; // only concrete resource types
  std::vector<std::string> resource_type_names() const;      // concrete ones, sorted

  // All SearchParameter resources of the package, as JSON texts.
  const std::vector<std::string>& search_parameters_json() const { return search_parameters_; }

  // File path of the StructureDefinition with this canonical URL (type
  // definitions and profiles alike; "|version" suffix ignored), or "" when
  // the package has none. The validator reads profiles and invariants from it.
  std::string structure_definition_file(std::string_view url) const;
  // Canonical URLs of the constraint StructureDefinitions (profiles and
  // extension definitions) of the package, sorted.
  std::vector<std::string> profile_urls() const;

  // The package directory this was loaded from.
  const std::string& package_dir() const { return package_dir_; }

 private:
  std::unordered_map<std::string, std::unique_ptr<TypeDef>, StringHash, std::equal_to<>> types_;
  std::vector<std::string> search_parameters_;
  // canonical URL -> (file path, is a constraint/profile)
  std::unordered_map<std::string, std::pair<std::string, bool>, StringHash, std::equal_to<>> sd_files_;
  std::string package_dir_;
  friend class DefinitionsLoader;
};

}  // namespace espace::fhir
