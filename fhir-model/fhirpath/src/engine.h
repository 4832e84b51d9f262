// Internal: the compiled form of an expression and the evaluator's frame.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "espace/fhirpath/fhirpath.h"
#include "regex_posix.h"
#include "temporal_ops.h"

namespace espace::fhirpath {

enum class Op : uint8_t {
  Literal, Empty, This, Index, Total, Variable,
  Member,      // name; input (null = the focus)
  Call,        // fn; input (null = the focus); args
  Indexer,     // input[right]
  Negate, Plus,
  Mul, Div, IntDiv, Mod, Add, Sub, Concat,
  Is, As,      // input, type
  Union,
  Lt, Gt, Le, Ge,
  Eq, Ne, Equiv, NotEquiv,
  In, Contains,
  And, Or, Xor, Implies,
};

enum class VarKind : uint8_t { Context, Resource, RootResource, Constant, User };

// A type specifier: "Quantity", "FHIR.Patient", "System.String".
struct TypeSpec {
  std::string ns;    // "", "System" or "FHIR"
  std::string name;
};

struct Frame;
struct ExprNode;
using FnImpl = fhir::Status (*)(const ExprNode& call, const Frame& f, const Collection& input, Collection& out);

struct ExprNode {
  Op op = Op::Empty;
  int column = 0;               // 1-based, for messages
  int height = 1;               // of this subtree: bounds evaluation recursion
  std::string name;             // member / function / variable name
  Value literal;                // Literal; Variable Constant value
  Collection literal_items;     // Literal: {literal}, used by operators without copying
  VarKind var = VarKind::User;
  std::unique_ptr<ExprNode> input;
  std::unique_ptr<ExprNode> right;
  std::vector<std::unique_ptr<ExprNode>> args;
  FnImpl fn = nullptr;
  // matches()/matchesFull()/replaceMatches() with a literal pattern: compiled once.
  std::shared_ptr<const Regex> regex;
  TypeSpec type;                // Is/As and type-argument functions
  // Compiled in strict mode: 'as' on several items is an error (N1) instead of
  // filtering like ofType(), which R4's own artifacts rely on (dom-3 applies
  // as(canonical) to descendants(), search parameters apply 'as' to repeating
  // elements such as useContext.value).
  bool strict = false;
};

struct EvalState {
  const Environment* env = nullptr;
  const fhir::Definitions* defs = nullptr;
  const Collection* context = nullptr;  // %context
  const fhir::Node* resource = nullptr;
  const fhir::Node* root_resource = nullptr;
  // now()/today()/timeOfDay() read the clock once per evaluation, on first use.
  mutable std::optional<Temporal> now;
  const Temporal& current_time() const;
  mutable int depth = 0;               // recursion guard (repeat, nested lambdas)
  mutable size_t budget = 0;           // items produced, bounded
};

struct Frame {
  const EvalState* st = nullptr;
  std::span<const Value> focus;        // $this for terms without input (no allocation for one item)
  int64_t index = -1;                  // $index, -1 when undefined
  const Collection* total = nullptr;   // $total inside aggregate()
};

fhir::Status eval(const ExprNode& n, const Frame& f, Collection& out);
fhir::Status eval_error(const ExprNode& n, std::string message);

// Function table lookup (name, argument count) -> implementation; nullptr when unknown.
FnImpl find_function(std::string_view name, size_t argc, std::string* error);
bool function_takes_type(std::string_view name);  // is/as/ofType: argument is a type specifier

// Shared semantics used by operators and functions.
std::optional<bool> values_equal(const Value& a, const Value& b);
bool values_equivalent(const Value& a, const Value& b);
std::optional<bool> collections_equal(const Collection& a, const Collection& b);
bool collections_equivalent(const Collection& a, const Collection& b);
bool type_matches(const Value& v, const TypeSpec& t, bool exact_primitives);
std::string type_name_qualified(const Value& v);

}  // namespace espace::fhirpath
