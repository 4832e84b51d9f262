// Strict semantic checking: a static pass over the compiled tree that infers
// the possible FHIR types of each step from the R4 definitions and rejects
// what can never match. It errs on the side of accepting: wherever the type
// is not known (resolve(), children(), variables, abstract Resource) the
// check stops for that branch.
#include "strict.h"

#include <algorithm>

namespace espace::fhirpath {

using fhir::Definitions;
using fhir::Status;
using fhir::TypeDef;

namespace {

struct SType {
  bool any = true;                       // unknown: no checks downstream
  std::vector<const TypeDef*> fhir;      // possible FHIR types
  std::optional<ValueKind> system;       // a known System type (literals, some functions)
  bool unordered = false;                // from children()/descendants()

  static SType unknown() { return SType{}; }
  static SType of_system(std::optional<ValueKind> k) {
    SType t;
    t.any = false;
    t.system = k;
    return t;
  }
};

void add_type(SType& t, const TypeDef* d) {
  if (d && std::find(t.fhir.begin(), t.fhir.end(), d) == t.fhir.end()) t.fhir.push_back(d);
}

SType merge(const SType& a, const SType& b) {
  if (a.any || b.any) return SType::unknown();
  SType r;
  r.any = false;
  for (auto* d : a.fhir) add_type(r, d);
  for (auto* d : b.fhir) add_type(r, d);
  r.unordered = a.unordered || b.unordered;
  if (a.fhir.empty() && b.fhir.empty() && a.system == b.system) r.system = a.system;
  return r;
}

Status semantic_error(const ExprNode& n, const std::string& message) {
  fhir::Issue i;
  i.code = "invalid";
  i.message_id = "fhirpath-semantic";
  i.column = n.column;
  i.diagnostics = "FHIRPath semantic error at column " + std::to_string(n.column) + ": " + message;
  return Status::error(fhir::ErrorCategory::Invalid, std::move(i));
}

bool is_a(const TypeDef* t, std::string_view name) {
  for (; t; t = t->base)
    if (t->name == name) return true;
  return false;
}

std::string type_list(const SType& t) {
  std::string s;
  for (size_t i = 0; i < t.fhir.size() && i < 4; ++i) s += (i ? ", " : "") + t.fhir[i]->name;
  if (t.fhir.size() > 4) s += ", ...";
  return s;
}

class Checker {
 public:
  Checker(const Definitions& defs, const std::string& root_type) : defs_(defs) {
    if (const TypeDef* t = defs.type(root_type)) {
      root_.any = false;
      add_type(root_, t);
    }
  }

  Status check(const ExprNode& root) {
    SType out;
    return infer(root, root_, true, &out);
  }

 private:
  Status infer(const ExprNode& n, const SType& focus, bool top, SType* out) {
    switch (n.op) {
      case Op::Literal:
        *out = SType::of_system(n.literal.kind());
        return Status::ok();
      case Op::Empty:
        *out = SType::of_system(std::nullopt);
        return Status::ok();
      case Op::This:
        *out = focus;
        return Status::ok();
      case Op::Index:
        *out = SType::of_system(ValueKind::Integer);
        return Status::ok();
      case Op::Total:
        *out = SType::unknown();
        return Status::ok();
      case Op::Variable:
        // %resource is the root only when the root is a resource (an invariant on an element
        // sits inside some resource we do not know); %rootResource may be a container.
        if (n.var == VarKind::Context) *out = root_;
        else if (n.var == VarKind::Resource && !root_.any && root_.fhir[0]->is_resource()) *out = root_;
        else if (n.var == VarKind::Constant) *out = SType::of_system(ValueKind::String);
        else *out = SType::unknown();
        return Status::ok();
      case Op::Member: {
        SType in = focus;
        bool first_step = !n.input;
        if (n.input) {
          Status st = infer(*n.input, focus, top, &in);
          if (!st) return st;
        }
        return member(n, in, first_step, top, out);
      }
      case Op::Call:
        return call(n, focus, top, out);
      case Op::Indexer: {
        SType in, idx;
        Status st = infer(*n.input, focus, top, &in);
        if (!st) return st;
        st = infer(*n.right, focus, top, &idx);
        if (!st) return st;
        if (!in.any && in.unordered) return semantic_error(n, "indexing an unordered collection (from children() or descendants())");
        *out = in;
        return Status::ok();
      }
      case Op::Is:
      case Op::As: {
        SType in;
        Status st = infer(*n.input, focus, top, &in);
        if (!st) return st;
        *out = n.op == Op::Is ? SType::of_system(ValueKind::Boolean) : typed(n.type, in);
        return Status::ok();
      }
      default: {
        SType l, r;
        if (n.input) {
          Status st = infer(*n.input, focus, top, &l);
          if (!st) return st;
        }
        if (n.right) {
          Status st = infer(*n.right, focus, top, &r);
          if (!st) return st;
        }
        if (n.op == Op::Union) *out = merge(l, r);
        else if (n.op == Op::Negate || n.op == Op::Plus) *out = l.any ? l : SType::of_system(l.system);
        else *out = SType::of_system(std::nullopt);
        return Status::ok();
      }
    }
  }

  SType typed(const TypeSpec& spec, const SType& in) {
    if (spec.ns == "System") return SType::of_system(std::nullopt);
    const TypeDef* t = defs_.type(spec.name);
    if (!t) return SType::of_system(std::nullopt);
    SType r;
    r.any = false;
    r.unordered = in.unordered;
    add_type(r, t);
    return r;
  }

  Status member(const ExprNode& n, const SType& in, bool first_step, bool top, SType* out) {
    if (in.any || in.fhir.empty()) {
      *out = SType::unknown();
      return Status::ok();
    }
    SType r;
    r.any = false;
    r.unordered = in.unordered;
    // A type name as the first step filters the context (Patient.name).
    if (first_step && !n.name.empty() && n.name[0] >= 'A' && n.name[0] <= 'Z') {
      if (defs_.type(n.name)) {
        for (const TypeDef* t : in.fhir)
          if (is_a(t, n.name)) add_type(r, t);
        if (r.fhir.empty() && top)
          return semantic_error(n, "'" + n.name + "' is not the type of the context (" + type_list(in) + ")");
        if (r.fhir.empty()) r = SType::unknown();
        *out = r;
        return Status::ok();
      }
    }
    bool open = false;
    std::string json_hint;
    for (const TypeDef* t : in.fhir) {
      if (const fhir::ElementDef* e = t->find(n.name)) {
        for (const TypeDef* et : e->types) add_type(r, et);
        continue;
      }
      const TypeDef* chosen = nullptr;
      if (const fhir::ElementDef* e = t->find_json(n.name, &chosen); e && e->is_choice) json_hint = e->name;
      // Abstract resources stand for any resource: no check below them.
      if (t->is_resource() && t->is_abstract) open = true;
    }
    if (open || (r.fhir.empty() && in.fhir.size() == 1 && in.fhir[0]->is_primitive() && n.name == "value")) {
      *out = SType::unknown();
      return Status::ok();
    }
    if (r.fhir.empty()) {
      if (!json_hint.empty())
        return semantic_error(n, "'" + n.name + "' names a choice type; use '" + json_hint + "' (with ofType() or as)");
      return semantic_error(n, "no element '" + n.name + "' on " + type_list(in));
    }
    *out = r;
    return Status::ok();
  }

  Status call(const ExprNode& n, const SType& focus, bool top, SType* out) {
    SType in = focus;
    if (n.input) {
      Status st = infer(*n.input, focus, top, &in);
      if (!st) return st;
    }
    const std::string& f = n.name;
    // Arguments: lambdas see the input's items, the others the outer focus.
    static const char* kLambdas[] = {"where", "select", "all", "exists", "repeat", "aggregate", "sort", "trace"};
    bool lambda = false;
    for (const char* l : kLambdas) lambda = lambda || f == l;
    std::vector<SType> args;
    for (size_t i = 0; i < n.args.size(); ++i) {
      SType a;
      Status st = infer(*n.args[i], (lambda || f == "iif") ? in : focus, false, &a);
      if (!st) return st;
      args.push_back(a);
    }
    if (f == "skip" || f == "take" || f == "first" || f == "last" || f == "tail") {
      if (!in.any && in.unordered)
        return semantic_error(n, f + "() on an unordered collection (from children() or descendants())");
      *out = in;
      return Status::ok();
    }
    if (f == "iif") {
      if (!args.empty() && !args[0].any && args[0].fhir.empty() && args[0].system && *args[0].system != ValueKind::Boolean)
        return semantic_error(n, "the criterion of iif() must be a Boolean");
      *out = args.size() > 2 ? merge(args[1], args[2]) : (args.size() > 1 ? args[1] : SType::unknown());
      return Status::ok();
    }
    if (f == "where" || f == "single" || f == "distinct" || f == "trace" || f == "intersect" || f == "exclude" ||
        f == "sort" || f == "checkModifiers") {
      *out = in;
      return Status::ok();
    }
    if (f == "children" || f == "descendants") {
      *out = SType::unknown();
      out->unordered = true;
      out->any = false;  // known to be unordered, types unknown
      out->fhir.clear();
      return Status::ok();
    }
    if (f == "ofType" || f == "as") {
      *out = typed(n.type, in);
      return Status::ok();
    }
    if (f == "select" || f == "repeat") {
      *out = args.empty() ? SType::unknown() : args[0];
      return Status::ok();
    }
    if (f == "union" || f == "combine") {
      *out = args.empty() ? in : merge(in, args[0]);
      return Status::ok();
    }
    if (f == "extension") {
      SType r;
      r.any = false;
      add_type(r, defs_.type("Extension"));
      if (r.fhir.empty()) r = SType::unknown();
      *out = r;
      return Status::ok();
    }
    if (f == "resolve" || f == "aggregate" || f == "type") {
      *out = SType::unknown();
      return Status::ok();
    }
    *out = SType::of_system(std::nullopt);
    return Status::ok();
  }

  const Definitions& defs_;
  SType root_;
};

}  // namespace

Status strict_check(const ExprNode& root, const Definitions& defs, const std::string& root_type) {
  Checker c(defs, root_type);
  return c.check(root);
}

}  // namespace espace::fhirpath
