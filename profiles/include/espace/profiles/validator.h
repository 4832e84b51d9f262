// Validation of resources against StructureDefinitions (this slice: the R4
// base definitions of the resource and data types).
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
  // Profiles to check in addition to the base definition (and to the
  // resource's meta.profile). This slice validates against the base spec
  // only: each such profile yields an information issue "profile-not-checked".
  std::vector<std::string> profiles;
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
};

// True when any issue is an error or fatal.
bool has_errors(const std::vector<fhir::Issue>& issues);

// Format of a primitive value per its type (the spec's regex and calendar
// rules). Returns "" when valid, else a short reason ("month 13 does not
// exist"). Unknown type names accept everything. Exposed for tests.
std::string check_primitive(std::string_view type_name, std::string_view value);

}  // namespace espace::profiles
