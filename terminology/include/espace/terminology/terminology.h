// CodeSystems and ValueSets of the R4 package: value set expansion,
// code validation against a value set, and concept lookup.
//
// The store is loaded once (all CodeSystem-*.json and ValueSet-*.json of the
// package, then our French sets of terminology/data/*.json, kept as a
// compact index) and is then read-only, except for the
// expansion cache, which is guarded. Every method may be called from any
// number of threads.
//
// Honesty rule: a code is reported Valid only when the store holds the data
// to say so. Systems the package does not define (SNOMED CT, LOINC, UCUM,
// BCP-47, ...) and filters the store cannot evaluate give NotChecked.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "espace/fhir/definitions.h"
#include "espace/fhir/status.h"

namespace espace::terminology {

struct Concept {
  std::string code;
  std::string display;
  std::vector<uint32_t> parents;   // indexes into CodeSystem::concepts
  std::vector<uint32_t> children;
};

struct CodeSystem {
  std::string url;
  std::string version;
  std::string name;
  // complete, fragment, example, not-present, supplement: only "complete"
  // systems can say that a code does not exist.
  std::string content;
  bool case_sensitive = true;
  std::vector<Concept> concepts;
  std::unordered_map<std::string, uint32_t, fhir::StringHash, std::equal_to<>> index;

  bool is_complete() const { return content == "complete"; }
  // Index of the concept, or -1.
  int64_t find(std::string_view code) const;
};

struct ConceptFilter {
  std::string property;
  std::string op;
  std::string value;
};

// One ValueSet.compose.include or .exclude entry.
struct ConceptSet {
  std::string system;
  std::vector<std::string> value_sets;
  std::vector<std::pair<std::string, std::string>> concepts;  // code, display
  std::vector<ConceptFilter> filters;
};

struct ValueSetDef {
  std::string url;
  std::string name;
  std::vector<ConceptSet> include;
  std::vector<ConceptSet> exclude;
  // A ValueSet published with an expansion but no compose.
  std::vector<std::pair<std::string, std::string>> expansion;  // system, code
};

struct ExpandedCode {
  std::string system;
  std::string code;
  std::string display;
};

struct Expansion {
  std::vector<ExpandedCode> codes;
  // Systems with members the store cannot enumerate (external systems,
  // unsupported filters): membership of their codes is NotChecked.
  std::vector<std::string> unchecked_systems;
  // Why the expansion is partial, one line per reason (for messages).
  std::vector<std::string> notes;
  bool is_complete() const { return unchecked_systems.empty(); }
  bool contains(std::string_view system, std::string_view code) const;  // system "" = any
  bool is_unchecked(std::string_view system) const;                     // system "" = any

  // "system|code" and "|code" keys for membership tests, each with the index
  // in `codes` of its (first) code, for the display.
  std::unordered_map<std::string, uint32_t, fhir::StringHash, std::equal_to<>> keys;
  // Index in `codes` of (system, code), system "" = any; -1 when absent.
  int64_t find(std::string_view system, std::string_view code) const;
};

// The form of a code in a system whose content the store lacks: BCP-13 MIME
// types, BCP-47 language tags, LOINC codes, SNOMED CT identifiers (Verhoeff
// check digit). "" when well-formed or the system is not one of these; a
// well-formed code is still not claimed to exist.
std::string external_code_syntax(std::string_view system, std::string_view code);

enum class Validity { Valid, Invalid, NotChecked };
const char* validity_name(Validity v);  // "valid", "invalid", "not-checked"

struct CodeResult {
  Validity validity = Validity::NotChecked;
  std::string display;  // when found
  std::string message;  // why invalid / not checked; no patient data
};

struct LoadStats {
  size_t code_systems = 0;
  size_t value_sets = 0;
  size_t concepts = 0;
  double seconds = 0;
};

class Store {
 public:
  // Reads every CodeSystem-*.json and ValueSet-*.json of an unpacked package.
  static fhir::Status load(const std::string& package_dir, std::unique_ptr<Store>* out, LoadStats* stats = nullptr);

  // Adds one CodeSystem or ValueSet resource given as FHIR JSON (later
  // national sets, tests). Not thread-safe: call before sharing the store.
  fhir::Status add_json(std::string_view json);

  const CodeSystem* code_system(std::string_view url) const;  // "|version" ignored
  const ValueSetDef* value_set(std::string_view url) const;

  // The expansion of a value set, computed once and cached. NotFound error
  // for an unknown URL; Unprocessable for a definition that cannot be
  // expanded (cycles, too large).
  fhir::Status expand(std::string_view url, std::shared_ptr<const Expansion>* out) const;

  // Is (system, code) in the value set? `system` may be empty for a bare
  // `code` element: the code then matches in any system of the value set.
  CodeResult validate_code(std::string_view value_set_url, std::string_view system, std::string_view code) const;

  // $lookup: is the code defined in the code system, and its display.
  CodeResult lookup(std::string_view system, std::string_view code) const;

  // Does `ancestor` subsume `descendant` (is-a, or equal) in the system?
  // NotChecked when the system is unknown.
  Validity subsumes(std::string_view system, std::string_view ancestor, std::string_view descendant) const;

  size_t code_system_count() const { return code_systems_.size(); }
  size_t value_set_count() const { return value_sets_.size(); }

  // Most codes an expansion may hold.
  static constexpr size_t kMaxExpansion = 200000;

 private:
  fhir::Status add_json_in_place(std::string* json);  // parses in place (NUL-terminated buffer)
  fhir::Status compute_expansion(const ValueSetDef& vs, int depth, std::shared_ptr<const Expansion>* out) const;
  fhir::Status expand_at_depth(std::string_view url, int depth, std::shared_ptr<const Expansion>* out) const;

  std::unordered_map<std::string, std::unique_ptr<CodeSystem>, fhir::StringHash, std::equal_to<>> code_systems_;
  std::unordered_map<std::string, std::unique_ptr<ValueSetDef>, fhir::StringHash, std::equal_to<>> value_sets_;
  mutable std::shared_mutex cache_mutex_;  // readers share it: every validated code reads the cache
  mutable std::unordered_map<std::string, std::shared_ptr<const Expansion>, fhir::StringHash, std::equal_to<>> cache_;
};

}  // namespace espace::terminology
