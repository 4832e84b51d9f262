// Our profiles in compiled form: the snapshot generated from a differential
// against the R4 base type, as a tree of elements (children by element name,
// slices under their sliced element). Built once by Validator::add_profile_json,
// read-only afterwards.
#pragma once

#include <rapidjson/document.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "espace/fhir/definitions.h"
#include "espace/fhir/status.h"
#include "espace/fhirpath/fhirpath.h"
#include "espace/profiles/validator.h"
#include "invariant_guards.h"

namespace espace::profiles {

struct ProfileConstraint {
  std::string key;
  fhir::Severity severity = fhir::Severity::Error;
  std::string human;
  std::string expression;
  std::shared_ptr<const fhirpath::Expression> compiled;  // null for a named (C++) check
  InvariantGuard guard;  // when it holds without evaluation (absent elements)
};

struct Discriminator {
  std::string type;  // value | pattern | type | exists | profile
  std::string path;  // relative to the sliced element; "$this" for the element itself;
                     // profile: may end in resolve() (the profile then applies to the target)
};

struct ProfileElement {
  std::string id, path, name, slice_name;  // name: last path segment without "[x]"
  bool is_choice = false;
  bool from_differential = false;
  uint32_t min = 0, max = 1;            // snapshot values
  uint32_t base_min = 0, base_max = 1;  // of the base (a tightening is checked here; the rest by the base walk)
  std::vector<std::string> types;       // allowed type codes (snapshot)
  bool types_restricted = false;        // narrower than the base
  std::vector<std::string> type_profiles;  // Extension definitions (extension slices)
  std::vector<std::string> target_types;   // Reference targets, restricted by the profile
  std::vector<std::string> target_profiles;  // every targetProfile URL (profile discriminators)
  const rapidjson::Value* fixed = nullptr;
  const rapidjson::Value* pattern = nullptr;
  const rapidjson::Value* min_value = nullptr;
  const rapidjson::Value* max_value = nullptr;
  std::string binding_strength, binding_value_set;
  bool binding_from_profile = false;
  std::vector<ProfileConstraint> constraints;
  bool sliced = false;
  std::string slicing_rules = "open";
  std::vector<Discriminator> discriminators;
  std::vector<ProfileElement*> children;
  std::vector<ProfileElement*> slices;
  const fhir::TypeDef* type_def = nullptr;  // for descending into children
  const rapidjson::Value* source = nullptr;  // the differential element, when there is one
};

struct Profile {
  std::string url, name, type;
  std::string text;       // the JSON source (parsed in place into doc)
  rapidjson::Document doc;  // owns the fixed/pattern/min/max values
  std::deque<ProfileElement> elements;
  ProfileElement* root = nullptr;
};

// A profile the server requires for a type, with an optional condition.
struct Validator::Requirement {
  std::string type, url, when;
  std::shared_ptr<const fhirpath::Expression> condition;  // null: always
};

}  // namespace espace::profiles
