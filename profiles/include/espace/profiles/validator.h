// Validation of resources against StructureDefinitions: the R4 base
// definitions of the resource and data types, and our profiles (snapshot
// generated from their differential; see profile_rules.cpp and README.md).
//
// Checks, each with a stable message id (see docs in validator.cpp):
//   cardinality (min/max of every element), primitive formats (the spec's
//   regexes, calendar validity of date/dateTime/instant/time), XHTML
//   well-formedness of narratives, bindings to code/Coding/CodeableConcept
//   (required -> error, extensible -> warning, codes the store cannot check ->
//   information), invariants (every constraint of the element definitions and
//   of the data types' root elements, compiled once with the FHIRPath engine;
//   ele-1, ext-1 and the narrative rules txt-1/txt-2 are evaluated natively),
//   reference target types, value types of the extensions the package defines
//   (relative, absolute, contained "#id" and Bundle-internal references).
//
// A Validator is immutable after construction apart from internal caches that are
// filled once per type behind a lock; validate() may run on any number of
// threads at once.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "espace/fhir/definitions.h"
#include "espace/fhir/node.h"
#include "espace/fhir/status.h"
#include "espace/terminology/terminology.h"

namespace espace::profiles {

struct ValidationOptions {
  // Profiles to check in addition to the base definition and to the
  // resource's meta.profile. Our profiles (add_profile_json, profiles/data)
  // are checked; profiles of the R4 package are reported "profile-not-checked";
  // unknown URLs give "profile-unknown" (error here, warning in meta.profile).
  std::vector<std::string> profiles;
  // Also check the profiles the server requires for the resource's type
  // (require_profile); set by the write path, not by $validate or the CLI.
  bool apply_required_profiles = false;
  bool check_invariants = true;
  bool check_bindings = true;
  // Prefix for issue locations, e.g. "Bundle.entry[3].resource" when a server
  // validates one entry of a transaction; default: the resource type.
  std::string location_prefix;
};

struct ValidatorStats {
  size_t invariants = 0;           // distinct invariants compiled so far
  size_t invariants_native = 0;    // evaluated by the validator itself (ele-1, ext-1, txt-1, txt-2)
  // "key (type): reason" of every invariant that could not be compiled;
  // validations meeting one report it as information "invariant-not-run".
  std::vector<std::string> not_compiled;
};

struct TypeRules;  // compiled per type (validator.cpp)
struct Profile;    // one of our profiles with its generated snapshot (profile_rules.h)

// What a named check (an invariant implemented in C++, e.g. the INS key)
// found on one element. Empty message_id: nothing to report.
struct CheckFinding {
  fhir::Severity severity = fhir::Severity::Error;
  std::string message_id;       // "identifier-key-invalid"
  std::string message;          // names the identifier and the expected key
  std::string location_suffix;  // appended to the element's location (".value")
};
using CheckFunction = std::function<void(const fhir::Node& element, std::vector<CheckFinding>* out)>;

// One element of a generated snapshot (for tests and tools).
struct SnapshotElement {
  std::string id, path, slice_name;
  uint32_t min = 0, max = 1;  // max UINT32_MAX for "*"
  std::vector<std::string> types;
  bool from_differential = false;  // false: inherited from the base unchanged
  bool has_fixed = false, has_pattern = false;
  std::string binding_strength, binding_value_set;
};

class Validator {
 public:
  // `terminology` may be null (bindings are then reported as not checked).
  // Definitions and terminology must outlive the validator.
  Validator(const fhir::Definitions& defs, const terminology::Store* terminology);
  ~Validator();
  Validator(const Validator&) = delete;
  Validator& operator=(const Validator&) = delete;

  // Issues found in `resource` (a parsed resource; Bundles are validated
  // entry by entry, contained resources too). Empty when valid.
  std::vector<fhir::Issue> validate(const fhir::Node& resource, const ValidationOptions& options = {}) const;

  // Compiles the rules of every resource and data type now instead of on
  // first use (a server may do it on a background thread at start-up; the
  // tests do it to check that every invariant of the spec compiles).
  void precompile_all() const;

  ValidatorStats stats() const;

  // ----- profiles (our StructureDefinitions; set up before sharing the validator)

  // Adds a constraint StructureDefinition (JSON) whose base is an R4 type or
  // one added before; its snapshot is generated from the differential.
  // Invalid -> Invalid status naming the element.
  fhir::Status add_profile_json(std::string_view json);
  // Adds every profiles/data/*.json StructureDefinition (data_files.h root).
  fhir::Status load_data_profiles();
  // Profiles the server requires for a resource type; `when` is an optional
  // FHIRPath condition on the resource (List: only SubmissionSets).
  fhir::Status require_profile(std::string type, std::string url, std::string when = {});
  // Reads profiles/data/required-profiles.json (type -> profile [, when]).
  fhir::Status load_required_profiles();
  void clear_required_profiles();
  // URLs required for this type (conditions not evaluated).
  std::vector<std::string> required_profiles(std::string_view type) const;
  bool has_profile(std::string_view url) const;
  std::vector<SnapshotElement> snapshot(std::string_view url) const;  // empty when unknown
  // The profile as StructureDefinition JSON with its generated snapshot
  // (every base element, backbones expanded); "" when unknown.
  std::string snapshot_json(std::string_view url) const;
  // Registers a check usable as a constraint key without expression in our
  // profiles ("espace-ins-key"); the French identifier checks are built in.
  void register_check(std::string key, CheckFunction check);
  const CheckFunction* check(std::string_view key) const;

  const fhir::Definitions& definitions() const { return defs_; }
  const terminology::Store* terminology() const { return terminology_; }

  // Internal: the rules of a type, compiled on first use.
  const TypeRules& rules(const fhir::TypeDef* type) const;

  // Internal: what an extension definition of the package allows as value
  // (nullptr when `url` is not an extension definition of the package).
  struct ExtensionRule {
    std::vector<std::string> value_types;  // allowed value[x] types; empty with no_value
    bool no_value = false;                 // complex extension: value[x] max 0
  };
  const ExtensionRule* extension_rule(std::string_view url) const;

 private:
  const TypeRules* build_rules(const fhir::TypeDef* type) const;

  const fhir::Definitions& defs_;
  const terminology::Store* terminology_;
  // One slot per TypeDef, filled once; reads are lock-free.
  std::unordered_map<const fhir::TypeDef*, std::unique_ptr<std::atomic<const TypeRules*>>> slots_;
  mutable std::mutex build_mutex_;
  mutable std::vector<std::unique_ptr<TypeRules>> owned_;
  mutable std::unordered_map<const fhir::TypeDef*, const TypeRules*> unslotted_;  // under build_mutex_
  mutable std::shared_mutex extensions_mutex_;
  mutable std::unordered_map<std::string, std::unique_ptr<ExtensionRule>, fhir::StringHash, std::equal_to<>>
      extensions_;  // by URL; null entries for URLs that are not extension definitions
  struct Loaded;  // StructureDefinition snapshots read so far, by root type name
  std::unique_ptr<Loaded> loaded_;
  std::unordered_map<std::string, std::unique_ptr<Profile>, fhir::StringHash, std::equal_to<>> profiles_;
  struct Requirement;
  std::vector<std::unique_ptr<Requirement>> required_;
  std::unordered_map<std::string, CheckFunction, fhir::StringHash, std::equal_to<>> checks_;
  void apply_profiles(const fhir::Node& resource, const ValidationOptions& options, std::vector<fhir::Issue>* out) const;
};

// True when any issue is an error or fatal.
bool has_errors(const std::vector<fhir::Issue>& issues);

// Format of a primitive value per its type (the spec's regex and calendar
// rules). Returns "" when valid, else a short reason ("month 13 does not
// exist"). Unknown type names accept everything. Exposed for tests.
std::string check_primitive(std::string_view type_name, std::string_view value);

}  // namespace espace::profiles
