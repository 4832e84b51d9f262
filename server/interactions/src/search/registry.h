// The SearchParameter registry: every SearchParameter of the loaded R4
// package, per resource type, with its FHIRPath expression compiled once;
// and the index rows a resource gets at write time.
//
// Index row layout (storage::IndexEntry), by kind:
//   string        system = the text as written (for :exact), value = normalized
//                 (lower case, accents removed); HumanName/Address give one row per part
//   token         system|value = coding system|code, identifier system|value,
//                 "" | true/false/code/string for primitives
//   text          value = normalized display/text of codings, CodeableConcepts
//                 and identifier types (for :text)
//   of-type       system = identifier type "system|code", value = identifier value
//   reference     system = target type, value = target id (relative or absolute
//                 "…/Type/id" references); for other absolute URLs and canonicals
//                 system = "" and value = the URL
//   ref-identifier system|value of Reference.identifier (for :identifier)
//   date          low/high = first/last microsecond of the value's implicit range
//   number        low = high = the value
//   quantity      low = high = the value (Range: low/high), system = unit system,
//                 value = unit code (a second row with system "" and the unit text)
//   uri           value = the URI
//   composite     system = the first (token) component as "system|code" and
//                 again as "*|code"; second component: token value = "system|code",
//                 quantity/number low/high (value = unit code), date low/high,
//                 string value = normalized
// Special parameters (_text, _content, near) are not indexed (yet).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "espace/fhir/definitions.h"
#include "espace/fhir/node.h"
#include "espace/fhirpath/fhirpath.h"
#include "espace/storage/storage.h"

namespace espace::interactions::search {

using fhir::Status;

enum class ParamType { Number, Date, String, Token, Reference, Composite, Quantity, Uri, Special };
const char* param_type_name(ParamType t);

struct SearchParamDef {
  std::string code;   // "family"
  std::string url;
  ParamType type = ParamType::Special;
  // The part of the expression that applies to this resource type; null for
  // parameters without one (_text, _content, _query, _filter).
  std::shared_ptr<const fhirpath::Expression> expression;
  std::vector<std::string> targets;  // reference target types
  // Composite parameters: the components' types and expressions (relative to
  // each item the parameter's expression yields). Indexed and searchable when
  // there are two and the first is a token (every R4 composite but the
  // three-part MolecularSequence coordinates).
  struct Component {
    ParamType type = ParamType::Special;
    std::shared_ptr<const fhirpath::Expression> expression;
  };
  std::vector<Component> components;
};

// resolve() during indexing: the target is not loaded, but expressions only
// ask for its type ("subject.where(resolve() is Patient)"), so a reference
// "Type/id" (relative or absolute) resolves to an empty resource of that type.
class TypeOnlyResolver final : public fhirpath::ReferenceResolver {
 public:
  explicit TypeOnlyResolver(const fhir::Definitions& defs);
  const fhir::Node* resolve(std::string_view reference) const override;

 private:
  std::map<std::string, fhir::Node, std::less<>> stubs_;
};

class Registry {
 public:
  // The registry for these definitions, built on first use (thread-safe).
  static const Registry& get(const fhir::Definitions& defs);

  // The parameter `code` of `type` (including the Resource-level ones), or null.
  const SearchParamDef* find(std::string_view type, std::string_view code) const;
  // Every parameter of `type`, by code.
  const std::map<std::string, SearchParamDef, std::less<>>* params_of(std::string_view type) const;

  // Index rows for a resource (any type the registry knows).
  std::vector<storage::IndexEntry> index(const fhir::Node& resource) const;

  // CompartmentDefinition of `compartment_type` ("Patient"): member resource
  // type -> the parameters linking it to the compartment ("{def}" for the
  // compartment resource itself). Null when there is no such compartment.
  const std::map<std::string, std::vector<std::string>, std::less<>>* compartment(
      std::string_view compartment_type) const;

  // Expressions that failed to compile (reported by tests; such parameters are left out).
  const std::vector<std::string>& compile_failures() const { return failures_; }

 private:
  Status build(const fhir::Definitions& defs);
  const fhir::Definitions* defs_ = nullptr;
  std::unique_ptr<TypeOnlyResolver> resolver_;
  std::map<std::string, std::map<std::string, SearchParamDef, std::less<>>, std::less<>> by_type_;
  std::vector<std::string> failures_;
  std::map<std::string, std::map<std::string, std::vector<std::string>, std::less<>>, std::less<>> compartments_;
};

// Lower case with accents removed (Latin-1 and Latin Extended-A letters,
// combining marks), for string search.
std::string normalize_string(std::string_view text);

// Bytes of a string kept in an index row (cut at a whole UTF-8 character):
// a string row holds the text so cut as its system and its normalized form so
// cut as its value.
inline constexpr size_t kMaxIndexedText = 512;

// The implicit range of a FHIR date/dateTime/instant, possibly partial
// ("2024", "2024-05", "2024-05-03T10:00Z"): first and last microsecond.
bool date_range(std::string_view text, int64_t* low, int64_t* high);

}  // namespace espace::interactions::search
