// FHIRPath N1 (hl7.org/fhirpath/N1) with the FHIR R4 additions
// (hl7.org/fhir/R4/fhirpath.html).
//
// Usage: compile once, evaluate many times from any number of threads:
//   std::shared_ptr<const Expression> e;
//   Status s = compile("name.where(use='official').given", {}, &e);
//   Collection out;  s = e->evaluate(patient_node, env, &out);
// A compiled Expression is immutable; evaluation keeps its state on the stack.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "espace/fhir/definitions.h"
#include "espace/fhir/node.h"
#include "espace/fhir/status.h"
#include "espace/fhirpath/value.h"

namespace espace::fhirpath {

// memberOf(), subsumes() and friends ask this; the default knows nothing.
struct Coded {
  std::string system;
  std::string code;
};
class TerminologyService {
 public:
  virtual ~TerminologyService() = default;
  // True/false when known; nullopt when the value set cannot be evaluated.
  // `codes` holds one entry for a code/string, one per coding otherwise.
  virtual std::optional<bool> member_of(const std::vector<Coded>& codes, std::string_view value_set_url) const {
    (void)codes; (void)value_set_url;
    return std::nullopt;
  }
  // Does `a` subsume `b` (same system)? nullopt when unknown.
  virtual std::optional<bool> subsumes(const Coded& a, const Coded& b) const {
    (void)a; (void)b;
    return std::nullopt;
  }
};

// resolve(): turns a reference string into a resource node. References to
// contained resources ("#id") and to entries of the Bundle being evaluated are
// resolved by the engine itself before this is asked.
class ReferenceResolver {
 public:
  virtual ~ReferenceResolver() = default;
  virtual const fhir::Node* resolve(std::string_view reference) const {
    (void)reference;
    return nullptr;
  }
};

// conformsTo(url): the validator plugs in here. Without one, the engine
// answers for the base StructureDefinitions of the core types and fails for
// any other URL.
class ProfileChecker {
 public:
  virtual ~ProfileChecker() = default;
  // nullopt when the profile is unknown.
  virtual std::optional<bool> conforms_to(const fhir::Node& node, std::string_view profile_url) const = 0;
};

// trace(name[, projection]) output goes here (nothing by default).
using TraceSink = std::function<void(std::string_view name, const Collection& values)>;

struct Environment {
  const fhir::Node* resource = nullptr;       // %resource (defaults to the evaluation root)
  const fhir::Node* root_resource = nullptr;  // %rootResource (defaults to %resource)
  // User variables, %name without the '%'.
  std::map<std::string, Collection, std::less<>> variables;
  const TerminologyService* terminology = nullptr;
  const ReferenceResolver* resolver = nullptr;
  const ProfileChecker* profiles = nullptr;
  TraceSink trace;
  // now()/today()/timeOfDay(); unset = the system clock at evaluation start.
  std::optional<Temporal> now;
};

struct CompileOptions {
  // Type information for is/as/ofType on FHIR types, conformsTo() and strict checking.
  const fhir::Definitions* definitions = nullptr;
  // Strict semantic checking (needs definitions): paths that cannot exist on
  // the static type are errors ("name.given1" on Patient, "valueQuantity"
  // instead of "value"), as are ordered functions over unordered input.
  bool strict = false;
  // The type of the evaluation root for strict checking ("Patient").
  std::string root_type;
  size_t max_length = 64 * 1024;  // expression text limit
  int max_depth = 200;            // nesting limit of the parser
};

struct ExprNode;

class Expression {
 public:
  ~Expression();
  Expression(const Expression&) = delete;
  Expression& operator=(const Expression&) = delete;

  // Evaluates against `root` (may be null: the input is then empty).
  fhir::Status evaluate(const fhir::Node* root, const Environment& env, Collection* out) const;
  // Same with an explicit input collection as %context.
  fhir::Status evaluate(const Collection& input, const Environment& env, Collection* out) const;

  const std::string& text() const { return text_; }

 private:
  friend fhir::Status compile(std::string_view, const CompileOptions&, std::shared_ptr<const Expression>*);
  Expression() = default;
  std::string text_;
  std::unique_ptr<ExprNode> root_;
  const fhir::Definitions* defs_ = nullptr;
};

// Parses and checks `text`. Errors carry the 1-based column in Issue::column
// and a message naming the offending token.
fhir::Status compile(std::string_view text, const CompileOptions& options, std::shared_ptr<const Expression>* out);

// Output helpers shared by the CLI and the tests.
// "type" as the FHIRPath type name (string, integer, decimal, boolean, date,
// dateTime, time, Quantity, or the FHIR type name of a node).
std::string output_type(const Value& v);
// The value as JSON text: the element's JSON for a node, a JSON scalar or
// {"value":..,"unit":..} for Quantity otherwise.
std::string output_json(const Value& v);
// A short display form ("@2014-01-01", "1 'mg'", "true").
std::string display(const Value& v);

}  // namespace espace::fhirpath
