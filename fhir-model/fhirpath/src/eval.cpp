// The evaluator: operators, navigation and the semantics shared with the
// functions (equality, equivalence, type tests, singleton evaluation).
#include <chrono>
#include <cstring>
#include <ctime>

#include "engine.h"

namespace espace::fhirpath {

using fhir::Node;
using fhir::Status;
using fhir::TypeDef;

namespace {

constexpr int kMaxDepth = 400;

bool type_chain_has(const TypeDef* t, std::string_view name) {
  for (; t; t = t->base)
    if (t->name == name) return true;
  return false;
}

// The FHIR primitive a type stands for, following derivation (positiveInt ->
// integer); everything else is read as a String.
std::string_view primitive_root(const TypeDef* t) {
  for (; t; t = t->base) {
    const std::string& n = t->name;
    switch (n.size()) {
      case 4:
        if (n == "date") return "date";
        if (n == "time") return "time";
        break;
      case 7:
        if (n == "boolean") return "boolean";
        if (n == "integer") return "integer";
        if (n == "decimal") return "decimal";
        if (n == "instant") return "instant";
        break;
      case 8:
        if (n == "dateTime") return "dateTime";
        break;
      case 6:
        if (n == "string") return "string";
        break;
      case 3:
        if (n == "uri") return "string";
        break;
    }
  }
  return "string";
}

bool reads_as_string(const Node* n) {
  return n->is_primitive() && n->has_value && primitive_root(n->type) == "string";
}

bool is_quantity_type(const TypeDef* t) { return type_chain_has(t, "Quantity"); }

std::optional<Value> node_to_system(const Node* n) {
  if (!n || !n->type) return std::nullopt;
  if (n->type->is_primitive()) {
    if (!n->has_value) return std::nullopt;
    std::string_view p = primitive_root(n->type);
    const std::string& s = n->value;
    if (p == "boolean") {
      if (s == "true") return Value::of_bool(true);
      if (s == "false") return Value::of_bool(false);
      return std::nullopt;
    }
    if (p == "integer") {
      char* end = nullptr;
      long long v = std::strtoll(s.c_str(), &end, 10);
      if (end == s.c_str() || *end) return std::nullopt;
      return Value::of_int(v);
    }
    if (p == "decimal") {
      auto d = Decimal::parse(s);
      if (!d) return std::nullopt;
      return Value::of_decimal(*d);
    }
    if (p == "date") {
      auto t = Temporal::parse_date(s);
      if (!t) return std::nullopt;
      return Value::of_temporal(*t);
    }
    if (p == "dateTime" || p == "instant") {
      auto t = Temporal::parse_datetime(s);
      if (!t) return std::nullopt;
      return Value::of_temporal(*t);
    }
    if (p == "time") {
      auto t = Temporal::parse_time(s);
      if (!t) return std::nullopt;
      return Value::of_temporal(*t);
    }
    return Value::of_string(s);
  }
  if (is_quantity_type(n->type)) {
    const Node* value = n->child("value");
    if (!value || !value->has_value) return std::nullopt;
    auto d = Decimal::parse(value->value);
    if (!d) return std::nullopt;
    std::string_view code = n->child_value("code");
    std::string_view unit = n->child_value("unit");
    std::string u(code.empty() ? unit : code);
    // Calendar units written in Quantity.unit without a code ("days") are read as keywords.
    bool calendar = code.empty() && is_calendar_keyword(u);
    if (u.empty()) u = "1";
    return Value::of_quantity(Quantity{*d, std::move(u), calendar});
  }
  return std::nullopt;
}

const char* system_name(ValueKind k) {
  switch (k) {
    case ValueKind::Boolean: return "Boolean";
    case ValueKind::Integer: return "Integer";
    case ValueKind::Decimal: return "Decimal";
    case ValueKind::String: return "String";
    case ValueKind::Date: return "Date";
    case ValueKind::DateTime: return "DateTime";
    case ValueKind::Time: return "Time";
    case ValueKind::Quantity: return "Quantity";
    case ValueKind::TypeInfo: return "TypeInfo";
    case ValueKind::Node: return "";
  }
  return "";
}

bool is_temporal(ValueKind k) { return k == ValueKind::Date || k == ValueKind::DateTime || k == ValueKind::Time; }
bool is_number(ValueKind k) { return k == ValueKind::Integer || k == ValueKind::Decimal; }

Decimal as_dec(const Value& v) { return v.kind() == ValueKind::Integer ? Decimal::from_int(v.as_int()) : v.as_decimal(); }

std::string normalize_ws_lower(const std::string& s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') { space = true; continue; }
    if (space && !out.empty()) out.push_back(' ');
    space = false;
    out.push_back(char(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

bool nodes_deep_equal(const Node& a, const Node& b, bool equivalent) {
  if (a.type != b.type && !(a.type && b.type && a.type->name == b.type->name)) return false;
  if (a.has_value != b.has_value) return false;
  if (a.has_value) {
    if (equivalent) {
      auto x = node_to_system(&a), y = node_to_system(&b);
      if (x && y) {
        if (!values_equivalent(*x, *y)) return false;
      } else if (a.value != b.value) {
        return false;
      }
    } else if (a.value != b.value) {
      auto x = node_to_system(&a), y = node_to_system(&b);
      if (!x || !y) return false;
      auto eq = values_equal(*x, *y);
      if (!eq || !*eq) return false;
    }
  }
  // Children: element by element, ignoring ids when testing equivalence.
  std::vector<const Node*> ca, cb;
  for (const Node& c : a.children)
    if (!(equivalent && c.def && c.def->name == "id")) ca.push_back(&c);
  for (const Node& c : b.children)
    if (!(equivalent && c.def && c.def->name == "id")) cb.push_back(&c);
  if (ca.size() != cb.size()) return false;
  for (size_t i = 0; i < ca.size(); ++i) {
    if (ca[i]->name != cb[i]->name) return false;
    if (!nodes_deep_equal(*ca[i], *cb[i], equivalent)) return false;
  }
  return true;
}

}  // namespace

std::optional<Value> to_system(const Value& v) {
  if (v.is_node()) return node_to_system(v.node());
  return v;
}

std::string Value::type_name() const {
  if (kind_ == ValueKind::Node) {
    const TypeDef* t = u_.node ? u_.node->type : nullptr;
    if (!t) return {};
    // Anonymous structures ("Patient.contact") are known to FHIRPath by their base type.
    if (t->kind == fhir::TypeKind::Backbone && t->base) return t->base->name;
    return t->name;
  }
  return system_name(kind_);
}

std::string type_name_qualified(const Value& v) {
  if (v.is_node()) return "FHIR." + v.type_name();
  return std::string("System.") + system_name(v.kind());
}

bool type_matches(const Value& v, const TypeSpec& t, bool exact_primitives) {
  if (v.is_node()) {
    if (t.ns == "System") return false;
    const TypeDef* type = v.node()->type;
    if (!type) return false;
    if (exact_primitives && type->is_primitive()) return type->name == t.name;
    return type_chain_has(type, t.name);
  }
  if (t.ns == "FHIR") return false;
  if (t.name == "Any") return true;
  return t.name == system_name(v.kind());
}

std::optional<bool> values_equal(const Value& a0, const Value& b0) {
  if (a0.is_node() && b0.is_node()) {
    const Node* x = a0.node();
    const Node* y = b0.node();
    if (x == y) return true;
    if (x->is_primitive() || y->is_primitive() || is_quantity_type(x->type) || is_quantity_type(y->type)) {
      auto sx = node_to_system(x), sy = node_to_system(y);
      if (sx && sy) return values_equal(*sx, *sy);
    }
    return nodes_deep_equal(*x, *y, false);
  }
  // Fast path: a string element against a String (search and where() filters).
  if (a0.is_node() && b0.kind() == ValueKind::String && reads_as_string(a0.node()))
    return a0.node()->value == b0.as_string();
  if (b0.is_node() && a0.kind() == ValueKind::String && reads_as_string(b0.node()))
    return b0.node()->value == a0.as_string();
  auto ao = to_system(a0), bo = to_system(b0);
  if (!ao || !bo) return false;
  const Value& a = *ao;
  const Value& b = *bo;
  if (is_number(a.kind()) && is_number(b.kind())) {
    if (a.kind() == ValueKind::Integer && b.kind() == ValueKind::Integer) return a.as_int() == b.as_int();
    return compare(as_dec(a), as_dec(b)) == 0;
  }
  if (is_temporal(a.kind()) && is_temporal(b.kind())) {
    bool a_time = a.kind() == ValueKind::Time, b_time = b.kind() == ValueKind::Time;
    if (a_time != b_time) return false;
    auto c = compare(a.as_temporal(), b.as_temporal());
    if (!c) return std::nullopt;
    return *c == 0;
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case ValueKind::Boolean: return a.as_bool() == b.as_bool();
    case ValueKind::String:
    case ValueKind::TypeInfo: return a.as_string() == b.as_string();
    case ValueKind::Quantity: {
      Quantity qa = a.as_quantity(), qb = b.as_quantity();
      // Calendar years/months against UCUM 'a'/'mo' are not comparable (empty).
      auto c = compare_quantities(qa, qb);
      if (!c) {
        bool time_a = qa.calendar || qa.unit == "a" || qa.unit == "mo";
        bool time_b = qb.calendar || qb.unit == "a" || qb.unit == "mo";
        if (time_a && time_b) return std::nullopt;
        return false;
      }
      return *c == 0;
    }
    default: return false;
  }
}

bool values_equivalent(const Value& a0, const Value& b0) {
  if (a0.is_node() && b0.is_node()) {
    const Node* x = a0.node();
    const Node* y = b0.node();
    if (x == y) return true;
    if (x->is_primitive() || y->is_primitive()) {
      auto sx = node_to_system(x), sy = node_to_system(y);
      if (sx && sy) return values_equivalent(*sx, *sy);
    }
    return nodes_deep_equal(*x, *y, true);
  }
  auto ao = to_system(a0), bo = to_system(b0);
  if (!ao || !bo) return false;
  const Value& a = *ao;
  const Value& b = *bo;
  if (is_number(a.kind()) && is_number(b.kind())) {
    Decimal x = as_dec(a), y = as_dec(b);
    int s = x.scale < y.scale ? x.scale : y.scale;
    return compare(x.rescaled(s), y.rescaled(s)) == 0;
  }
  if (is_temporal(a.kind()) && is_temporal(b.kind())) {
    if ((a.kind() == ValueKind::Time) != (b.kind() == ValueKind::Time)) return false;
    auto c = compare(a.as_temporal(), b.as_temporal());
    return c && *c == 0;
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case ValueKind::Boolean: return a.as_bool() == b.as_bool();
    case ValueKind::String: return normalize_ws_lower(a.as_string()) == normalize_ws_lower(b.as_string());
    case ValueKind::TypeInfo: return a.as_string() == b.as_string();
    case ValueKind::Quantity: return quantities_equivalent(a.as_quantity(), b.as_quantity());
    default: return false;
  }
}

std::optional<bool> collections_equal(const Collection& a, const Collection& b) {
  if (a.empty() || b.empty()) return std::nullopt;
  if (a.size() != b.size()) return false;
  bool unknown = false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto e = values_equal(a[i], b[i]);
    if (!e) unknown = true;
    else if (!*e) return false;
  }
  if (unknown) return std::nullopt;
  return true;
}

bool collections_equivalent(const Collection& a, const Collection& b) {
  if (a.empty() && b.empty()) return true;
  if (a.size() != b.size()) return false;
  std::vector<bool> used(b.size(), false);
  for (const Value& x : a) {
    bool found = false;
    for (size_t j = 0; j < b.size(); ++j) {
      if (!used[j] && values_equivalent(x, b[j])) {
        used[j] = true;
        found = true;
        break;
      }
    }
    if (!found) return false;
  }
  return true;
}

Status eval_error(const ExprNode& n, std::string message) {
  fhir::Issue i;
  i.code = "processing";
  i.message_id = "fhirpath-evaluation";
  i.column = n.column;
  i.diagnostics = "FHIRPath evaluation error at column " + std::to_string(n.column) + ": " + message;
  return Status::error(fhir::ErrorCategory::Unprocessable, std::move(i));
}

namespace {

std::string describe(const Value& v) {
  if (v.is_node()) return v.type_name();
  return system_name(v.kind());
}

// The single item of an operand; error when there are several.
Status single(const ExprNode& n, const Collection& c, const char* what, const Value** out) {
  if (c.size() > 1)
    return eval_error(n, std::string(what) + " expects a single item but got a collection of " + std::to_string(c.size()));
  *out = c.empty() ? nullptr : &c[0];
  return Status::ok();
}

// Singleton evaluation as Boolean (N1 §4.5): a single Boolean is itself, any
// other single item is true.
Status to_bool(const ExprNode& n, const Collection& c, std::optional<bool>* out) {
  const Value* v;
  Status st = single(n, c, "a logical operand", &v);
  if (!st) return st;
  if (!v) { *out = std::nullopt; return Status::ok(); }
  auto s = to_system(*v);
  if (s && s->kind() == ValueKind::Boolean) *out = s->as_bool();
  else *out = true;
  return Status::ok();
}

Status arithmetic(const ExprNode& n, const Value& a0, const Value& b0, Collection& out) {
  auto ao = to_system(a0), bo = to_system(b0);
  if (!ao || !bo) return Status::ok();
  const Value& a = *ao;
  const Value& b = *bo;
  ValueKind ka = a.kind(), kb = b.kind();
  Op op = n.op;
  if (is_number(ka) && is_number(kb)) {
    if (ka == ValueKind::Integer && kb == ValueKind::Integer && op != Op::Div) {
      int64_t x = a.as_int(), y = b.as_int(), r = 0;
      switch (op) {
        case Op::Add: if (__builtin_add_overflow(x, y, &r)) return Status::ok(); break;
        case Op::Sub: if (__builtin_sub_overflow(x, y, &r)) return Status::ok(); break;
        case Op::Mul: if (__builtin_mul_overflow(x, y, &r)) return Status::ok(); break;
        case Op::IntDiv: if (y == 0) return Status::ok(); r = x / y; break;
        case Op::Mod: if (y == 0) return Status::ok(); r = x % y; break;
        default: return eval_error(n, "operator not applicable to integers");
      }
      out.push_back(Value::of_int(r));
      return Status::ok();
    }
    Decimal x = as_dec(a), y = as_dec(b);
    switch (op) {
      case Op::Add: out.push_back(Value::of_decimal(x + y)); break;
      case Op::Sub: out.push_back(Value::of_decimal(x - y)); break;
      case Op::Mul: out.push_back(Value::of_decimal(x * y)); break;
      case Op::Div: {
        auto q = divide(x, y);
        if (q) out.push_back(Value::of_decimal(*q));
        break;
      }
      case Op::IntDiv: {
        auto q = divide(x, y);
        if (q) out.push_back(Value::of_int(int64_t(q->truncated().mant)));
        break;
      }
      case Op::Mod: {
        auto q = divide(x, y);
        if (q) out.push_back(Value::of_decimal(x - y * q->truncated()));
        break;
      }
      default: return eval_error(n, "operator not applicable to numbers");
    }
    return Status::ok();
  }
  if (ka == ValueKind::String && kb == ValueKind::String && op == Op::Add) {
    out.push_back(Value::of_string(a.as_string() + b.as_string()));
    return Status::ok();
  }
  if (is_temporal(ka) && kb == ValueKind::Quantity && (op == Op::Add || op == Op::Sub)) {
    std::string err;
    auto r = add_duration(a.as_temporal(), b.as_quantity(), op == Op::Sub, &err);
    if (!r) return eval_error(n, err);
    out.push_back(Value::of_temporal(*r));
    return Status::ok();
  }
  if (ka == ValueKind::Quantity || kb == ValueKind::Quantity) {
    Quantity x = ka == ValueKind::Quantity ? a.as_quantity() : Quantity{as_dec(a), "1", false};
    Quantity y = kb == ValueKind::Quantity ? b.as_quantity() : Quantity{as_dec(b), "1", false};
    if ((ka != ValueKind::Quantity && !is_number(ka)) || (kb != ValueKind::Quantity && !is_number(kb)))
      return eval_error(n, "cannot combine " + describe(a) + " and " + describe(b));
    auto unit_of = [](const Quantity& q) { return q.calendar ? calendar_to_ucum(q.unit) : q.unit; };
    auto wrap = [](const std::string& u) {
      return u.find_first_of("./") == std::string::npos ? u : "(" + u + ")";
    };
    switch (op) {
      case Op::Add:
      case Op::Sub: {
        auto yv = convert_quantity(y, x.unit, x.calendar);
        if (!yv) return eval_error(n, "quantities with incompatible units '" + x.unit + "' and '" + y.unit + "'");
        Quantity r{op == Op::Add ? x.value + *yv : x.value - *yv, x.unit, x.calendar};
        out.push_back(Value::of_quantity(std::move(r)));
        return Status::ok();
      }
      case Op::Mul: {
        std::string ux = unit_of(x), uy = unit_of(y);
        std::string u = ux == "1" ? uy : uy == "1" ? ux : wrap(ux) + "." + wrap(uy);
        out.push_back(Value::of_quantity(Quantity{x.value * y.value, u, false}));
        return Status::ok();
      }
      case Op::Div: {
        auto q = divide(x.value, y.value);
        if (!q) return Status::ok();
        std::string ux = unit_of(x), uy = unit_of(y);
        std::string u = uy == "1" ? ux : ux == uy ? "1" : wrap(ux) + "/" + wrap(uy);
        out.push_back(Value::of_quantity(Quantity{*q, u, false}));
        return Status::ok();
      }
      default: return eval_error(n, "operator not applicable to quantities");
    }
  }
  return eval_error(n, "cannot apply the operator to " + describe(a) + " and " + describe(b));
}

Status comparison(const ExprNode& n, const Value& a0, const Value& b0, Collection& out) {
  auto ao = to_system(a0), bo = to_system(b0);
  if (!ao || !bo) return Status::ok();
  const Value& a = *ao;
  const Value& b = *bo;
  std::optional<int> c;
  if (is_number(a.kind()) && is_number(b.kind())) {
    c = compare(as_dec(a), as_dec(b));
  } else if (a.kind() == ValueKind::String && b.kind() == ValueKind::String) {
    int r = a.as_string().compare(b.as_string());
    c = r < 0 ? -1 : r > 0 ? 1 : 0;
  } else if (is_temporal(a.kind()) && is_temporal(b.kind()) &&
             (a.kind() == ValueKind::Time) == (b.kind() == ValueKind::Time)) {
    c = compare(a.as_temporal(), b.as_temporal());
  } else if (a.kind() == ValueKind::Quantity && b.kind() == ValueKind::Quantity) {
    c = compare_quantities(a.as_quantity(), b.as_quantity());
  } else {
    return eval_error(n, "cannot compare " + describe(a) + " with " + describe(b));
  }
  if (!c) return Status::ok();
  bool r = false;
  switch (n.op) {
    case Op::Lt: r = *c < 0; break;
    case Op::Gt: r = *c > 0; break;
    case Op::Le: r = *c <= 0; break;
    case Op::Ge: r = *c >= 0; break;
    default: break;
  }
  out.push_back(Value::of_bool(r));
  return Status::ok();
}

void push_unique(Collection& out, const Value& v) {
  for (const Value& x : out) {
    auto e = values_equal(x, v);
    if (e && *e) return;
  }
  out.push_back(v);
}

Status eval_variable(const ExprNode& n, const Frame& f, Collection& out) {
  const EvalState& st = *f.st;
  switch (n.var) {
    case VarKind::Context:
      if (st.context) out.insert(out.end(), st.context->begin(), st.context->end());
      return Status::ok();
    case VarKind::Resource:
      if (st.resource) out.push_back(Value::of_node(st.resource));
      return Status::ok();
    case VarKind::RootResource:
      if (st.root_resource) out.push_back(Value::of_node(st.root_resource));
      return Status::ok();
    case VarKind::Constant:
      out.push_back(n.literal);
      return Status::ok();
    case VarKind::User: {
      auto it = st.env->variables.find(n.name);
      if (it == st.env->variables.end()) return eval_error(n, "undefined environment variable %" + n.name);
      out.insert(out.end(), it->second.begin(), it->second.end());
      return Status::ok();
    }
  }
  return Status::ok();
}

void navigate(std::span<const Value> in, const std::string& name, bool type_step, Collection& out) {
  bool upper = !name.empty() && name[0] >= 'A' && name[0] <= 'Z';
  for (const Value& v : in) {
    if (v.is_node()) {
      const Node* node = v.node();
      if (type_step && upper && node->type && type_chain_has(node->type, name)) {
        out.push_back(v);
        continue;
      }
      for (const Node& c : node->children)
        if (c.def && (c.def->name == name || c.name == name)) out.push_back(Value::of_node(&c));
    } else if (v.kind() == ValueKind::TypeInfo) {
      const std::string& q = v.as_string();
      size_t dot = q.find('.');
      if (name == "namespace") out.push_back(Value::of_string(q.substr(0, dot)));
      else if (name == "name") out.push_back(Value::of_string(q.substr(dot + 1)));
    }
  }
}

}  // namespace

Status eval(const ExprNode& n, const Frame& f, Collection& out) {
  switch (n.op) {
    case Op::Literal:
      out.push_back(n.literal);
      return Status::ok();
    case Op::Empty:
      return Status::ok();
    case Op::This:
      out.insert(out.end(), f.focus.begin(), f.focus.end());
      return Status::ok();
    case Op::Index:
      if (f.index >= 0) out.push_back(Value::of_int(f.index));
      return Status::ok();
    case Op::Total:
      if (f.total) out.insert(out.end(), f.total->begin(), f.total->end());
      return Status::ok();
    case Op::Variable:
      return eval_variable(n, f, out);
    case Op::Member: {
      if (!n.input) {
        navigate(f.focus, n.name, true, out);
        return Status::ok();
      }
      Collection in;
      Status st = eval(*n.input, f, in);
      if (!st) return st;
      navigate(in, n.name, false, out);
      return Status::ok();
    }
    case Op::Call: {
      if (!out.empty()) {
        // Functions may look at what they produced so far (distinct, union):
        // give them a fresh collection when appending to earlier results.
        Collection fresh;
        Status st = eval(n, f, fresh);
        out.insert(out.end(), fresh.begin(), fresh.end());
        return st;
      }
      if (++f.st->depth > kMaxDepth) {
        --f.st->depth;
        return eval_error(n, "evaluation nested too deeply");
      }
      Status st;
      if (!n.input) {
        Collection in(f.focus.begin(), f.focus.end());
        st = n.fn(n, f, in, out);
      } else {
        Collection in;
        st = eval(*n.input, f, in);
        if (st) st = n.fn(n, f, in, out);
      }
      --f.st->depth;
      return st;
    }
    case Op::Indexer: {
      Collection in, idx;
      Status st = eval(*n.input, f, in);
      if (!st) return st;
      st = eval(*n.right, f, idx);
      if (!st) return st;
      if (idx.empty()) return Status::ok();
      auto i = to_system(idx[0]);
      if (idx.size() != 1 || !i || i->kind() != ValueKind::Integer) return eval_error(n, "an index must be a single integer");
      if (i->as_int() >= 0 && size_t(i->as_int()) < in.size()) out.push_back(in[size_t(i->as_int())]);
      return Status::ok();
    }
    case Op::Negate:
    case Op::Plus: {
      Collection in;
      Status st = eval(*n.input, f, in);
      if (!st) return st;
      const Value* v;
      st = single(n, in, "unary minus", &v);
      if (!st || !v) return st;
      auto s = to_system(*v);
      if (!s) return Status::ok();
      if (n.op == Op::Plus && (is_number(s->kind()) || s->kind() == ValueKind::Quantity)) {
        out.push_back(*s);
        return Status::ok();
      }
      switch (s->kind()) {
        case ValueKind::Integer: out.push_back(Value::of_int(-s->as_int())); return Status::ok();
        case ValueKind::Decimal: out.push_back(Value::of_decimal(-s->as_decimal())); return Status::ok();
        case ValueKind::Quantity: {
          Quantity q = s->as_quantity();
          q.value = -q.value;
          out.push_back(Value::of_quantity(std::move(q)));
          return Status::ok();
        }
        default: return eval_error(n, "unary minus needs a number or a quantity, not " + describe(*s));
      }
    }
    case Op::Is:
    case Op::As: {
      Collection in;
      Status st = eval(*n.input, f, in);
      if (!st) return st;
      if (n.op == Op::As && !n.strict) {
        for (const Value& v : in)
          if (type_matches(v, n.type, true)) out.push_back(v);
        return Status::ok();
      }
      const Value* v;
      st = single(n, in, n.op == Op::Is ? "'is'" : "'as'", &v);
      if (!st || !v) return st;
      if (n.op == Op::Is) out.push_back(Value::of_bool(type_matches(*v, n.type, false)));
      else if (type_matches(*v, n.type, true)) out.push_back(*v);
      return Status::ok();
    }
    case Op::And:
    case Op::Or:
    case Op::Xor:
    case Op::Implies: {
      Collection l;
      Status st = eval(*n.input, f, l);
      if (!st) return st;
      std::optional<bool> a, b;
      st = to_bool(n, l, &a);
      if (!st) return st;
      // Short-circuit where the left side decides (false and x, true or x, false implies x).
      if (a && ((n.op == Op::And && !*a) || (n.op == Op::Or && *a) || (n.op == Op::Implies && !*a))) {
        out.push_back(Value::of_bool(n.op != Op::And));
        return Status::ok();
      }
      Collection r;
      st = eval(*n.right, f, r);
      if (!st) return st;
      st = to_bool(n, r, &b);
      if (!st) return st;
      std::optional<bool> res;
      switch (n.op) {
        case Op::And:
          if (b && !*b) res = false;
          else if (a && b) res = true;
          break;
        case Op::Or:
          if (b && *b) res = true;
          else if (a && b) res = false;
          break;
        case Op::Xor:
          if (a && b) res = *a != *b;
          break;
        case Op::Implies:
          if (b && *b) res = true;
          else if (a && b) res = !*a || *b;
          break;
        default: break;
      }
      if (res) out.push_back(Value::of_bool(*res));
      return Status::ok();
    }
    default:
      break;
  }

  // Binary operators over two evaluated operands; literals are used in place.
  Collection lc, rc;
  Status st;
  if (n.input->op != Op::Literal) {
    st = eval(*n.input, f, lc);
    if (!st) return st;
  }
  if (n.right->op != Op::Literal) {
    st = eval(*n.right, f, rc);
    if (!st) return st;
  }
  const Collection& l = n.input->op == Op::Literal ? n.input->literal_items : lc;
  const Collection& r = n.right->op == Op::Literal ? n.right->literal_items : rc;
  switch (n.op) {
    case Op::Union: {
      Collection u;
      for (const Value& v : l) push_unique(u, v);
      for (const Value& v : r) push_unique(u, v);
      out.insert(out.end(), u.begin(), u.end());
      return Status::ok();
    }
    case Op::Eq:
    case Op::Ne: {
      auto e = collections_equal(l, r);
      if (e) out.push_back(Value::of_bool(n.op == Op::Eq ? *e : !*e));
      return Status::ok();
    }
    case Op::Equiv:
    case Op::NotEquiv: {
      bool e = collections_equivalent(l, r);
      out.push_back(Value::of_bool(n.op == Op::Equiv ? e : !e));
      return Status::ok();
    }
    case Op::In:
    case Op::Contains: {
      const Collection& item = n.op == Op::In ? l : r;
      const Collection& coll = n.op == Op::In ? r : l;
      const Value* v;
      st = single(n, item, n.op == Op::In ? "'in'" : "'contains'", &v);
      if (!st) return st;
      if (!v) return Status::ok();
      bool found = false;
      for (const Value& x : coll) {
        auto e = values_equal(*v, x);
        if (e && *e) { found = true; break; }
      }
      out.push_back(Value::of_bool(found));
      return Status::ok();
    }
    case Op::Concat: {
      const Value *a, *b;
      st = single(n, l, "'&'", &a);
      if (!st) return st;
      st = single(n, r, "'&'", &b);
      if (!st) return st;
      std::string s;
      for (const Value* v : {a, b}) {
        if (!v) continue;
        auto sv = to_system(*v);
        if (!sv) continue;
        if (sv->kind() != ValueKind::String) return eval_error(n, "'&' needs strings, not " + describe(*sv));
        s += sv->as_string();
      }
      out.push_back(Value::of_string(std::move(s)));
      return Status::ok();
    }
    default:
      break;
  }
  const Value *a, *b;
  st = single(n, l, "the left operand", &a);
  if (!st) return st;
  st = single(n, r, "the right operand", &b);
  if (!st) return st;
  if (!a || !b) return Status::ok();
  switch (n.op) {
    case Op::Lt:
    case Op::Gt:
    case Op::Le:
    case Op::Ge:
      return comparison(n, *a, *b, out);
    default:
      return arithmetic(n, *a, *b, out);
  }
}

namespace {

Temporal clock_now() {
  auto now = std::chrono::system_clock::now();
  int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = std::time_t(ms / 1000);
  std::tm local{};
  localtime_r(&secs, &local);
  Temporal t;
  t.kind = TemporalKind::DateTime;
  t.precision = Precision::Millisecond;
  t.has_tz = true;
  t.tz_minutes = int16_t(local.tm_gmtoff / 60);
  from_epoch_ms(ms + int64_t(t.tz_minutes) * 60000, &t);
  return t;
}

}  // namespace

const Temporal& EvalState::current_time() const {
  if (!now) now = clock_now();
  return *now;
}

namespace {

Status run(const ExprNode& root, const fhir::Definitions* defs, const Collection& input, const Environment& env,
           Collection* out) {
  EvalState st;
  st.env = &env;
  st.defs = defs;
  st.context = &input;
  const Node* first = !input.empty() && input[0].is_node() ? input[0].node() : nullptr;
  st.resource = env.resource ? env.resource : first;
  st.root_resource = env.root_resource ? env.root_resource : st.resource;
  st.now = env.now;
  Frame f;
  f.st = &st;
  f.focus = input;
  out->clear();
  return eval(root, f, *out);
}

}  // namespace

Status Expression::evaluate(const Node* root, const Environment& env, Collection* out) const {
  Collection input;
  if (root) input.push_back(Value::of_node(root));
  return run(*root_, defs_, input, env, out);
}

Status Expression::evaluate(const Collection& input, const Environment& env, Collection* out) const {
  return run(*root_, defs_, input, env, out);
}

}  // namespace espace::fhirpath
