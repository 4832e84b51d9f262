// The function library: N1 §5 plus the FHIR R4 additions. Each function is a
// plain function pointer resolved by the parser; argument expressions are
// evaluated here, per item for the ones that take $this (where, select, ...).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_set>

#include "engine.h"
#include "regex_posix.h"

namespace espace::fhirpath {

using fhir::Node;
using fhir::Status;

namespace {

constexpr size_t kMaxItems = 1'000'000;   // bound on repeat()/descendants() output
constexpr size_t kMaxRegexInput = 1'000'000;

// ---- helpers -----------------------------------------------------------------

Status arg(const ExprNode& call, const Frame& f, size_t i, Collection& out) {
  return eval(*call.args[i], f, out);
}

// Evaluates argument i with $this = item (for lambdas).
Status arg_on(const ExprNode& call, const Frame& f, size_t i, const Value& item, int64_t index, Collection& out) {
  Frame g = f;
  g.focus = std::span<const Value>(&item, 1);
  g.index = index;
  return eval(*call.args[i], g, out);
}

Status single_input(const ExprNode& call, const Collection& in, const Value** out) {
  if (in.size() > 1)
    return eval_error(call, call.name + "() expects a single item but the input has " + std::to_string(in.size()));
  *out = in.empty() ? nullptr : &in[0];
  return Status::ok();
}

// The single System value of the input (nullopt when empty or valueless).
Status single_system(const ExprNode& call, const Collection& in, std::optional<Value>* out) {
  const Value* v;
  Status st = single_input(call, in, &v);
  if (!st) return st;
  *out = v ? to_system(*v) : std::nullopt;
  return Status::ok();
}

Status string_input(const ExprNode& call, const Collection& in, std::optional<std::string>* out) {
  std::optional<Value> v;
  Status st = single_system(call, in, &v);
  if (!st) return st;
  if (!v) {
    if (!in.empty() && in[0].is_node() && !in[0].node()->is_primitive())
      return eval_error(call, call.name + "() needs a string, not " + in[0].type_name());
    *out = std::nullopt;
    return Status::ok();
  }
  if (v->kind() != ValueKind::String) return eval_error(call, call.name + "() needs a string, not " + v->type_name());
  *out = v->as_string();
  return Status::ok();
}

Status string_arg(const ExprNode& call, const Frame& f, size_t i, std::optional<std::string>* out) {
  Collection c;
  Status st = arg(call, f, i, c);
  if (!st) return st;
  if (c.size() > 1) return eval_error(call, call.name + "(): argument " + std::to_string(i + 1) + " is not a single item");
  *out = std::nullopt;
  if (c.empty()) return Status::ok();
  auto v = to_system(c[0]);
  if (!v) return Status::ok();
  if (v->kind() != ValueKind::String)
    return eval_error(call, call.name + "(): argument " + std::to_string(i + 1) + " must be a string");
  *out = v->as_string();
  return Status::ok();
}

Status int_arg(const ExprNode& call, const Frame& f, size_t i, std::optional<int64_t>* out) {
  Collection c;
  Status st = arg(call, f, i, c);
  if (!st) return st;
  *out = std::nullopt;
  if (c.empty()) return Status::ok();
  auto v = to_system(c[0]);
  if (c.size() > 1 || !v || v->kind() != ValueKind::Integer)
    return eval_error(call, call.name + "(): argument " + std::to_string(i + 1) + " must be an integer");
  *out = v->as_int();
  return Status::ok();
}

Status bool_of(const ExprNode& call, const Collection& c, std::optional<bool>* out) {
  if (c.size() > 1) return eval_error(call, call.name + "(): the criteria gave several items");
  *out = std::nullopt;
  if (c.empty()) return Status::ok();
  auto v = to_system(c[0]);
  if (v && v->kind() == ValueKind::Boolean) *out = v->as_bool();
  else *out = true;  // singleton evaluation of collections
  return Status::ok();
}

bool contains_value(const Collection& c, const Value& v) {
  for (const Value& x : c) {
    auto e = values_equal(x, v);
    if (e && *e) return true;
  }
  return false;
}

Decimal to_dec(const Value& v) {
  return v.kind() == ValueKind::Integer ? Decimal::from_int(v.as_int()) : v.as_decimal();
}

// ---- existence -------------------------------------------------------------

Status fn_empty(const ExprNode&, const Frame&, const Collection& in, Collection& out) {
  out.push_back(Value::of_bool(in.empty()));
  return Status::ok();
}

Status fn_exists(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  if (call.args.empty()) {
    out.push_back(Value::of_bool(!in.empty()));
    return Status::ok();
  }
  for (size_t i = 0; i < in.size(); ++i) {
    Collection r;
    Status st = arg_on(call, f, 0, in[i], int64_t(i), r);
    if (!st) return st;
    std::optional<bool> b;
    st = bool_of(call, r, &b);
    if (!st) return st;
    if (b && *b) {
      out.push_back(Value::of_bool(true));
      return Status::ok();
    }
  }
  out.push_back(Value::of_bool(false));
  return Status::ok();
}

Status fn_all(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  for (size_t i = 0; i < in.size(); ++i) {
    Collection r;
    Status st = arg_on(call, f, 0, in[i], int64_t(i), r);
    if (!st) return st;
    std::optional<bool> b;
    st = bool_of(call, r, &b);
    if (!st) return st;
    if (!b || !*b) {
      out.push_back(Value::of_bool(false));
      return Status::ok();
    }
  }
  out.push_back(Value::of_bool(true));
  return Status::ok();
}

template <bool Any, bool Want>
Status fn_bool_agg(const ExprNode& call, const Frame&, const Collection& in, Collection& out) {
  bool result = !Any;
  for (const Value& v : in) {
    auto s = to_system(v);
    if (!s || s->kind() != ValueKind::Boolean) return eval_error(call, call.name + "() needs Boolean items");
    bool match = s->as_bool() == Want;
    if (Any && match) result = true;
    if (!Any && !match) result = false;
  }
  out.push_back(Value::of_bool(result));
  return Status::ok();
}

Status fn_subset_of(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  Collection other;
  Status st = arg(call, f, 0, other);
  if (!st) return st;
  bool all = true;
  for (const Value& v : in) all = all && contains_value(other, v);
  out.push_back(Value::of_bool(all));
  return Status::ok();
}

Status fn_superset_of(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  Collection other;
  Status st = arg(call, f, 0, other);
  if (!st) return st;
  bool all = true;
  for (const Value& v : other) all = all && contains_value(in, v);
  out.push_back(Value::of_bool(all));
  return Status::ok();
}

Status fn_count(const ExprNode&, const Frame&, const Collection& in, Collection& out) {
  out.push_back(Value::of_int(int64_t(in.size())));
  return Status::ok();
}

Status fn_distinct(const ExprNode&, const Frame&, const Collection& in, Collection& out) {
  for (const Value& v : in)
    if (!contains_value(out, v)) out.push_back(v);
  return Status::ok();
}

Status fn_is_distinct(const ExprNode&, const Frame&, const Collection& in, Collection& out) {
  Collection seen;
  for (const Value& v : in) {
    if (contains_value(seen, v)) {
      out.push_back(Value::of_bool(false));
      return Status::ok();
    }
    seen.push_back(v);
  }
  out.push_back(Value::of_bool(true));
  return Status::ok();
}

// ---- filtering and projection ------------------------------------------------

Status fn_where(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  for (size_t i = 0; i < in.size(); ++i) {
    Collection r;
    Status st = arg_on(call, f, 0, in[i], int64_t(i), r);
    if (!st) return st;
    std::optional<bool> b;
    st = bool_of(call, r, &b);
    if (!st) return st;
    if (b && *b) out.push_back(in[i]);
  }
  return Status::ok();
}

Status fn_select(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  for (size_t i = 0; i < in.size(); ++i) {
    Status st = arg_on(call, f, 0, in[i], int64_t(i), out);
    if (!st) return st;
    if (out.size() > kMaxItems) return eval_error(call, "select() produced too many items");
  }
  return Status::ok();
}

Status fn_repeat(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  // Nodes are deduplicated by identity (a tree has no cycles); computed values
  // by equality, which is quadratic, hence their tighter bound.
  constexpr size_t kMaxComputed = 10'000;
  std::unordered_set<const Node*> seen_nodes;
  Collection computed;
  Collection frontier = in;
  while (!frontier.empty()) {
    Collection next;
    for (size_t i = 0; i < frontier.size(); ++i) {
      Collection r;
      Status st = arg_on(call, f, 0, frontier[i], int64_t(i), r);
      if (!st) return st;
      for (Value& v : r) {
        if (v.is_node()) {
          if (!seen_nodes.insert(v.node()).second) continue;
        } else {
          if (contains_value(computed, v)) continue;
          computed.push_back(v);
          if (computed.size() > kMaxComputed) return eval_error(call, "repeat() produced too many items");
        }
        out.push_back(v);
        next.push_back(v);
      }
      if (out.size() > kMaxItems) return eval_error(call, "repeat() produced too many items");
    }
    frontier = std::move(next);
  }
  return Status::ok();
}

Status fn_of_type(const ExprNode& call, const Frame&, const Collection& in, Collection& out) {
  for (const Value& v : in)
    if (type_matches(v, call.type, true)) out.push_back(v);
  return Status::ok();
}

Status fn_is(const ExprNode& call, const Frame&, const Collection& in, Collection& out) {
  const Value* v;
  Status st = single_input(call, in, &v);
  if (!st || !v) return st;
  out.push_back(Value::of_bool(type_matches(*v, call.type, false)));
  return Status::ok();
}

Status fn_as(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  if (!call.strict) return fn_of_type(call, f, in, out);
  const Value* v;
  Status st = single_input(call, in, &v);
  if (!st || !v) return st;
  if (type_matches(*v, call.type, true)) out.push_back(*v);
  return Status::ok();
}

Status fn_type(const ExprNode&, const Frame&, const Collection& in, Collection& out) {
  for (const Value& v : in) out.push_back(Value::of_type_info(type_name_qualified(v)));
  return Status::ok();
}

// ---- subsetting --------------------------------------------------------------

Status fn_single(const ExprNode& call, const Frame&, const Collection& in, Collection& out) {
  if (in.size() > 1) return eval_error(call, "single() on a collection of " + std::to_string(in.size()) + " items");
  out.insert(out.end(), in.begin(), in.end());
  return Status::ok();
}

Status fn_first(const ExprNode&, const Frame&, const Collection& in, Collection& out) {
  if (!in.empty()) out.push_back(in.front());
  return Status::ok();
}

Status fn_last(const ExprNode&, const Frame&, const Collection& in, Collection& out) {
  if (!in.empty()) out.push_back(in.back());
  return Status::ok();
}

Status fn_tail(const ExprNode&, const Frame&, const Collection& in, Collection& out) {
  if (in.size() > 1) out.insert(out.end(), in.begin() + 1, in.end());
  return Status::ok();
}

Status fn_skip(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<int64_t> n;
  Status st = int_arg(call, f, 0, &n);
  if (!st || !n) return st;
  if (*n < 0) *n = 0;
  if (size_t(*n) < in.size()) out.insert(out.end(), in.begin() + *n, in.end());
  return Status::ok();
}

Status fn_take(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<int64_t> n;
  Status st = int_arg(call, f, 0, &n);
  if (!st || !n) return st;
  size_t k = *n < 0 ? 0 : std::min(size_t(*n), in.size());
  out.insert(out.end(), in.begin(), in.begin() + k);
  return Status::ok();
}

Status fn_intersect(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  Collection other;
  Status st = arg(call, f, 0, other);
  if (!st) return st;
  for (const Value& v : in)
    if (contains_value(other, v) && !contains_value(out, v)) out.push_back(v);
  return Status::ok();
}

Status fn_exclude(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  Collection other;
  Status st = arg(call, f, 0, other);
  if (!st) return st;
  for (const Value& v : in)
    if (!contains_value(other, v)) out.push_back(v);
  return Status::ok();
}

Status fn_union(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  Collection other;
  Status st = arg(call, f, 0, other);
  if (!st) return st;
  for (const Value& v : in)
    if (!contains_value(out, v)) out.push_back(v);
  for (const Value& v : other)
    if (!contains_value(out, v)) out.push_back(v);
  return Status::ok();
}

Status fn_combine(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  out.insert(out.end(), in.begin(), in.end());
  return arg(call, f, 0, out);
}

// ---- utility -----------------------------------------------------------------

Status fn_iif(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  if (in.size() > 1) return eval_error(call, "iif() on a collection of " + std::to_string(in.size()) + " items");
  Frame g = f;
  if (call.input) {
    g.focus = in;
    g.index = in.empty() ? -1 : 0;
  }
  Collection c;
  Status st = eval(*call.args[0], g, c);
  if (!st) return st;
  if (c.size() > 1) return eval_error(call, "iif(): the criterion is not a single Boolean");
  bool cond = false;
  if (!c.empty()) {
    auto v = to_system(c[0]);
    if (!v || v->kind() != ValueKind::Boolean) return eval_error(call, "iif(): the criterion is not a Boolean");
    cond = v->as_bool();
  }
  if (cond) return eval(*call.args[1], g, out);
  if (call.args.size() > 2) return eval(*call.args[2], g, out);
  return Status::ok();
}

Status fn_not(const ExprNode& call, const Frame&, const Collection& in, Collection& out) {
  std::optional<bool> b;
  Status st = bool_of(call, in, &b);
  if (!st) return st;
  if (b) out.push_back(Value::of_bool(!*b));
  return Status::ok();
}

Status fn_trace(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<std::string> name;
  Status st = string_arg(call, f, 0, &name);
  if (!st) return st;
  if (f.st->env->trace) {
    if (call.args.size() > 1) {
      Collection projected;
      for (size_t i = 0; i < in.size(); ++i) {
        st = arg_on(call, f, 1, in[i], int64_t(i), projected);
        if (!st) return st;
      }
      f.st->env->trace(name ? *name : std::string(), projected);
    } else {
      f.st->env->trace(name ? *name : std::string(), in);
    }
  }
  out.insert(out.end(), in.begin(), in.end());
  return Status::ok();
}

Status fn_now(const ExprNode&, const Frame& f, const Collection&, Collection& out) {
  out.push_back(Value::of_temporal(f.st->current_time()));
  return Status::ok();
}

Status fn_today(const ExprNode&, const Frame& f, const Collection&, Collection& out) {
  Temporal t = f.st->current_time();
  t.kind = TemporalKind::Date;
  t.precision = Precision::Day;
  t.has_tz = false;
  t.hour = t.minute = t.second = 0;
  t.millisecond = 0;
  out.push_back(Value::of_temporal(t));
  return Status::ok();
}

Status fn_time_of_day(const ExprNode&, const Frame& f, const Collection&, Collection& out) {
  Temporal t = f.st->current_time();
  t.kind = TemporalKind::Time;
  t.has_tz = false;
  out.push_back(Value::of_temporal(t));
  return Status::ok();
}

Status fn_aggregate(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  Collection total;
  if (call.args.size() > 1) {
    Status st = arg(call, f, 1, total);
    if (!st) return st;
  }
  for (size_t i = 0; i < in.size(); ++i) {
    Frame g = f;
    g.focus = std::span<const Value>(&in[i], 1);
    g.index = int64_t(i);
    g.total = &total;
    Collection next;
    Status st = eval(*call.args[0], g, next);
    if (!st) return st;
    total = std::move(next);
  }
  out.insert(out.end(), total.begin(), total.end());
  return Status::ok();
}

// sort([key, ...]): stable; a key prefixed by unary minus sorts descending.
Status fn_sort(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  struct Item {
    Value v;
    std::vector<std::optional<Value>> keys;
  };
  std::vector<Item> items;
  std::vector<bool> descending;
  std::vector<const ExprNode*> key_exprs;
  for (const auto& a : call.args) {
    bool desc = a->op == Op::Negate;
    descending.push_back(desc);
    key_exprs.push_back(desc ? a->input.get() : a.get());
  }
  for (size_t i = 0; i < in.size(); ++i) {
    Item it{in[i], {}};
    if (key_exprs.empty()) {
      it.keys.push_back(to_system(in[i]));
    } else {
      for (const ExprNode* k : key_exprs) {
        Frame g = f;
        g.focus = std::span<const Value>(&in[i], 1);
        g.index = int64_t(i);
        Collection r;
        Status st = eval(*k, g, r);
        if (!st) return st;
        if (r.size() > 1) return eval_error(call, "sort(): a key gave several items");
        it.keys.push_back(r.empty() ? std::nullopt : to_system(r[0]));
      }
    }
    items.push_back(std::move(it));
  }
  auto cmp_values = [](const std::optional<Value>& a, const std::optional<Value>& b) -> int {
    if (!a || !b) return 0;  // empty keys are placed first below, whatever the direction
    if ((a->kind() == ValueKind::Integer || a->kind() == ValueKind::Decimal) &&
        (b->kind() == ValueKind::Integer || b->kind() == ValueKind::Decimal))
      return compare(to_dec(*a), to_dec(*b));
    if (a->kind() == ValueKind::String && b->kind() == ValueKind::String) return a->as_string().compare(b->as_string());
    if ((a->kind() == ValueKind::Date || a->kind() == ValueKind::DateTime || a->kind() == ValueKind::Time) &&
        a->kind() == b->kind()) {
      auto c = compare(a->as_temporal(), b->as_temporal());
      return c ? *c : 0;
    }
    if (a->kind() == ValueKind::Boolean && b->kind() == ValueKind::Boolean) return int(a->as_bool()) - int(b->as_bool());
    return 0;
  };
  std::stable_sort(items.begin(), items.end(), [&](const Item& x, const Item& y) {
    for (size_t k = 0; k < x.keys.size(); ++k) {
      if (!x.keys[k] != !y.keys[k]) return !x.keys[k];
      int c = cmp_values(x.keys[k], y.keys[k]);
      if (c != 0) return (k < descending.size() && descending[k]) ? c > 0 : c < 0;
    }
    return false;
  });
  for (Item& it : items) out.push_back(std::move(it.v));
  return Status::ok();
}

// ---- conversion --------------------------------------------------------------

std::optional<Value> convert_boolean(const Value& v) {
  switch (v.kind()) {
    case ValueKind::Boolean: return v;
    case ValueKind::Integer:
      if (v.as_int() == 1) return Value::of_bool(true);
      if (v.as_int() == 0) return Value::of_bool(false);
      return std::nullopt;
    case ValueKind::Decimal:
      if (compare(v.as_decimal(), Decimal{1, 0}) == 0) return Value::of_bool(true);
      if (v.as_decimal().is_zero()) return Value::of_bool(false);
      return std::nullopt;
    case ValueKind::String: {
      std::string s = v.as_string();
      for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
      if (s == "true" || s == "t" || s == "yes" || s == "y" || s == "1" || s == "1.0") return Value::of_bool(true);
      if (s == "false" || s == "f" || s == "no" || s == "n" || s == "0" || s == "0.0") return Value::of_bool(false);
      return std::nullopt;
    }
    default: return std::nullopt;
  }
}

bool integer_text(std::string_view s) {
  size_t i = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
  if (i >= s.size() || s.size() - i > 18) return false;
  for (; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

std::optional<Value> convert_integer(const Value& v) {
  switch (v.kind()) {
    case ValueKind::Integer: return v;
    case ValueKind::Boolean: return Value::of_int(v.as_bool() ? 1 : 0);
    case ValueKind::String:
      if (!integer_text(v.as_string())) return std::nullopt;
      return Value::of_int(std::strtoll(v.as_string().c_str(), nullptr, 10));
    default: return std::nullopt;
  }
}

bool decimal_text(std::string_view s) {
  size_t i = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
  bool digits = false, point = false;
  for (; i < s.size(); ++i) {
    if (s[i] >= '0' && s[i] <= '9') digits = true;
    else if (s[i] == '.' && !point && digits) { point = true; digits = false; }
    else return false;
  }
  return digits;
}

std::optional<Value> convert_decimal(const Value& v) {
  switch (v.kind()) {
    case ValueKind::Decimal: return v;
    case ValueKind::Integer: return Value::of_decimal(Decimal::from_int(v.as_int()));
    case ValueKind::Boolean: return Value::of_decimal(Decimal{v.as_bool() ? 10 : 0, 1});
    case ValueKind::String: {
      if (!decimal_text(v.as_string())) return std::nullopt;
      auto d = Decimal::parse(v.as_string()[0] == '+' ? v.as_string().substr(1) : v.as_string());
      if (!d) return std::nullopt;
      return Value::of_decimal(*d);
    }
    default: return std::nullopt;
  }
}

std::string system_to_string(const Value& v) {
  switch (v.kind()) {
    case ValueKind::Boolean: return v.as_bool() ? "true" : "false";
    case ValueKind::Integer: return std::to_string(v.as_int());
    case ValueKind::Decimal: return v.as_decimal().to_string();
    case ValueKind::String: return v.as_string();
    case ValueKind::Date:
    case ValueKind::DateTime:
    case ValueKind::Time: return v.as_temporal().to_string();
    case ValueKind::Quantity: return v.as_quantity().to_string();
    case ValueKind::TypeInfo: return v.as_string();
    case ValueKind::Node: return {};
  }
  return {};
}

std::optional<Value> convert_string(const Value& v) {
  if (v.kind() == ValueKind::Node || v.kind() == ValueKind::TypeInfo) return std::nullopt;
  return Value::of_string(system_to_string(v));
}

// "<number>[ <'ucum'>|<calendar keyword>]"
std::optional<Quantity> parse_quantity_text(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && s[i] != ' ') ++i;
  std::string_view num = s.substr(0, i);
  if (!decimal_text(num)) return std::nullopt;
  auto d = Decimal::parse(num[0] == '+' ? num.substr(1) : num);
  if (!d) return std::nullopt;
  while (i < s.size() && s[i] == ' ') ++i;
  std::string_view unit = s.substr(i);
  if (unit.empty()) return Quantity{*d, "1", false};
  if (unit.size() >= 2 && unit.front() == '\'' && unit.back() == '\'')
    return Quantity{*d, std::string(unit.substr(1, unit.size() - 2)), false};
  if (is_calendar_keyword(unit)) return Quantity{*d, std::string(unit), true};
  return std::nullopt;
}

std::optional<Value> convert_quantity_value(const Value& v) {
  switch (v.kind()) {
    case ValueKind::Quantity: return v;
    case ValueKind::Integer:
    case ValueKind::Decimal: return Value::of_quantity(Quantity{to_dec(v), "1", false});
    case ValueKind::Boolean: return Value::of_quantity(Quantity{Decimal{v.as_bool() ? 10 : 0, 1}, "1", false});
    case ValueKind::String: {
      auto q = parse_quantity_text(v.as_string());
      if (!q) return std::nullopt;
      return Value::of_quantity(std::move(*q));
    }
    default: return std::nullopt;
  }
}

std::optional<Value> convert_date(const Value& v) {
  if (v.kind() == ValueKind::Date) return v;
  std::optional<Temporal> t;
  if (v.kind() == ValueKind::DateTime) t = v.as_temporal();
  else if (v.kind() == ValueKind::String) {
    t = Temporal::parse_date(v.as_string());
    if (!t) t = Temporal::parse_datetime(v.as_string());
  }
  if (!t) return std::nullopt;
  t->kind = TemporalKind::Date;
  if (t->precision > Precision::Day) t->precision = Precision::Day;
  t->has_tz = false;
  t->hour = t->minute = t->second = 0;
  t->millisecond = 0;
  return Value::of_temporal(*t);
}

std::optional<Value> convert_datetime(const Value& v) {
  if (v.kind() == ValueKind::DateTime) return v;
  std::optional<Temporal> t;
  if (v.kind() == ValueKind::Date) t = v.as_temporal();
  else if (v.kind() == ValueKind::String) t = Temporal::parse_datetime(v.as_string());
  if (!t) return std::nullopt;
  t->kind = TemporalKind::DateTime;
  return Value::of_temporal(*t);
}

std::optional<Value> convert_time(const Value& v) {
  if (v.kind() == ValueKind::Time) return v;
  if (v.kind() != ValueKind::String) return std::nullopt;
  std::string_view s = v.as_string();
  if (!s.empty() && s[0] == 'T') s.remove_prefix(1);
  auto t = Temporal::parse_time(s);
  if (!t) return std::nullopt;
  return Value::of_temporal(*t);
}

using Converter = std::optional<Value> (*)(const Value&);

template <Converter C>
Status fn_to(const ExprNode& call, const Frame&, const Collection& in, Collection& out) {
  std::optional<Value> v;
  Status st = single_system(call, in, &v);
  if (!st || !v) return st;
  auto r = C(*v);
  if (r) out.push_back(std::move(*r));
  return Status::ok();
}

template <Converter C>
Status fn_converts(const ExprNode& call, const Frame&, const Collection& in, Collection& out) {
  std::optional<Value> v;
  Status st = single_system(call, in, &v);
  if (!st || !v) return st;
  out.push_back(Value::of_bool(C(*v).has_value()));
  return Status::ok();
}

Status fn_to_quantity(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<Value> v;
  Status st = single_system(call, in, &v);
  if (!st || !v) return st;
  auto q = convert_quantity_value(*v);
  if (!q) return Status::ok();
  if (call.args.empty()) {
    out.push_back(std::move(*q));
    return Status::ok();
  }
  std::optional<std::string> unit;
  st = string_arg(call, f, 0, &unit);
  if (!st || !unit) return st;
  auto converted = convert_quantity(q->as_quantity(), *unit, false);
  if (converted) out.push_back(Value::of_quantity(Quantity{*converted, *unit, false}));
  return Status::ok();
}

Status fn_converts_to_quantity(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  Collection r;
  Status st = fn_to_quantity(call, f, in, r);
  if (!st) return st;
  if (!in.empty()) out.push_back(Value::of_bool(!r.empty()));
  return Status::ok();
}

// ---- strings -----------------------------------------------------------------

// Characters in the first `bytes` bytes of UTF-8 text.
size_t code_points(const std::string& s, size_t bytes) {
  size_t n = 0;
  for (size_t i = 0; i < bytes && i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) ++n;
  return n;
}

// Byte offset of character `index` (the size when past the end).
size_t byte_offset(const std::string& s, size_t index) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (n == index) return i;
      ++n;
    }
  }
  return s.size();
}

Status fn_index_of(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<std::string> s, sub;
  Status st = string_input(call, in, &s);
  if (!st || !s) return st;
  st = string_arg(call, f, 0, &sub);
  if (!st || !sub) return st;
  size_t p = s->find(*sub);
  out.push_back(Value::of_int(p == std::string::npos ? -1 : int64_t(code_points(*s, p))));
  return Status::ok();
}

Status fn_substring(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<std::string> s;
  Status st = string_input(call, in, &s);
  if (!st || !s) return st;
  std::optional<int64_t> start, len;
  st = int_arg(call, f, 0, &start);
  if (!st || !start) return st;
  if (call.args.size() > 1) {
    st = int_arg(call, f, 1, &len);
    if (!st) return st;
  }
  // Positions count characters (code points), not UTF-8 bytes.
  size_t chars = code_points(*s, s->size());
  if (*start < 0 || size_t(*start) >= chars) return Status::ok();
  if (len && *len < 0) len = 0;
  size_t b = byte_offset(*s, size_t(*start));
  size_t e = len ? byte_offset(*s, size_t(*start) + size_t(std::min<int64_t>(*len, int64_t(chars)))) : s->size();
  out.push_back(Value::of_string(s->substr(b, e - b)));
  return Status::ok();
}

template <int Kind>  // 0 startsWith, 1 endsWith, 2 contains
Status fn_str_test(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<std::string> s, sub;
  Status st = string_input(call, in, &s);
  if (!st || !s) return st;
  st = string_arg(call, f, 0, &sub);
  if (!st || !sub) return st;
  bool r;
  if (Kind == 0) r = s->compare(0, sub->size(), *sub) == 0 && s->size() >= sub->size();
  else if (Kind == 1) r = s->size() >= sub->size() && s->compare(s->size() - sub->size(), sub->size(), *sub) == 0;
  else r = s->find(*sub) != std::string::npos;
  out.push_back(Value::of_bool(r));
  return Status::ok();
}

template <bool Upper>
Status fn_case(const ExprNode& call, const Frame&, const Collection& in, Collection& out) {
  std::optional<std::string> s;
  Status st = string_input(call, in, &s);
  if (!st || !s) return st;
  for (char& c : *s) c = char(Upper ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
  out.push_back(Value::of_string(std::move(*s)));
  return Status::ok();
}

Status fn_replace(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<std::string> s, pat, rep;
  Status st = string_input(call, in, &s);
  if (!st || !s) return st;
  st = string_arg(call, f, 0, &pat);
  if (!st || !pat) return st;
  st = string_arg(call, f, 1, &rep);
  if (!st || !rep) return st;
  std::string r;
  if (pat->empty()) {
    // Inserts the replacement around every character (N1 replace()).
    r = *rep;
    for (char c : *s) { r.push_back(c); r += *rep; }
  } else {
    size_t p = 0;
    for (;;) {
      size_t q = s->find(*pat, p);
      if (q == std::string::npos) { r.append(*s, p, std::string::npos); break; }
      r.append(*s, p, q - p);
      r += *rep;
      p = q + pat->size();
    }
  }
  out.push_back(Value::of_string(std::move(r)));
  return Status::ok();
}

template <bool Full>
Status fn_matches(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<std::string> s, pat;
  Status st = string_input(call, in, &s);
  if (!st || !s) return st;
  st = string_arg(call, f, 0, &pat);
  if (!st || !pat) return st;
  if (s->size() > kMaxRegexInput) return eval_error(call, call.name + "(): input too long for a regular expression");
  if (call.regex) {
    out.push_back(Value::of_bool(call.regex->search(*s)));
    return Status::ok();
  }
  Regex re;
  std::string error;
  if (!re.compile(*pat, Full, &error)) return eval_error(call, call.name + "(): " + error);
  out.push_back(Value::of_bool(re.search(*s)));
  return Status::ok();
}

Status fn_replace_matches(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<std::string> s, pat, rep;
  Status st = string_input(call, in, &s);
  if (!st || !s) return st;
  st = string_arg(call, f, 0, &pat);
  if (!st || !pat) return st;
  st = string_arg(call, f, 1, &rep);
  if (!st || !rep) return st;
  if (pat->empty()) {
    out.push_back(Value::of_string(*s));
    return Status::ok();
  }
  if (s->size() > kMaxRegexInput) return eval_error(call, "replaceMatches(): input too long for a regular expression");
  if (call.regex) {
    out.push_back(Value::of_string(call.regex->replace_all(*s, *rep)));
    return Status::ok();
  }
  Regex re;
  std::string error;
  if (!re.compile(*pat, false, &error)) return eval_error(call, "replaceMatches(): " + error);
  out.push_back(Value::of_string(re.replace_all(*s, *rep)));
  return Status::ok();
}

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

Status fn_length(const ExprNode& call, const Frame&, const Collection& in, Collection& out) {
  std::optional<std::string> s;
  Status st = string_input(call, in, &s);
  if (!st || !s) return st;
  out.push_back(Value::of_int(int64_t(utf8_length(*s))));
  return Status::ok();
}

Status fn_to_chars(const ExprNode& call, const Frame&, const Collection& in, Collection& out) {
  std::optional<std::string> s;
  Status st = string_input(call, in, &s);
  if (!st || !s) return st;
  for (size_t i = 0; i < s->size();) {
    size_t j = i + 1;
    while (j < s->size() && ((*s)[j] & 0xC0) == 0x80) ++j;
    out.push_back(Value::of_string(s->substr(i, j - i)));
    i = j;
  }
  return Status::ok();
}

Status fn_trim(const ExprNode& call, const Frame&, const Collection& in, Collection& out) {
  std::optional<std::string> s;
  Status st = string_input(call, in, &s);
  if (!st || !s) return st;
  size_t b = s->find_first_not_of(" \t\r\n");
  size_t e = s->find_last_not_of(" \t\r\n");
  out.push_back(Value::of_string(b == std::string::npos ? std::string() : s->substr(b, e - b + 1)));
  return Status::ok();
}

Status fn_split(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<std::string> s, sep;
  Status st = string_input(call, in, &s);
  if (!st || !s) return st;
  st = string_arg(call, f, 0, &sep);
  if (!st || !sep) return st;
  if (sep->empty()) {
    return fn_to_chars(call, f, in, out);
  }
  size_t p = 0;
  for (;;) {
    size_t q = s->find(*sep, p);
    if (q == std::string::npos) { out.push_back(Value::of_string(s->substr(p))); break; }
    out.push_back(Value::of_string(s->substr(p, q - p)));
    p = q + sep->size();
  }
  return Status::ok();
}

Status fn_join(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<std::string> sep;
  if (!call.args.empty()) {
    Status st = string_arg(call, f, 0, &sep);
    if (!st) return st;
  }
  std::string r;
  for (size_t i = 0; i < in.size(); ++i) {
    auto v = to_system(in[i]);
    if (!v || v->kind() != ValueKind::String) return eval_error(call, "join() needs strings");
    if (i > 0 && sep) r += *sep;
    r += v->as_string();
  }
  out.push_back(Value::of_string(std::move(r)));
  return Status::ok();
}

const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(const std::string& in, bool url) {
  std::string out;
  size_t i = 0;
  while (i < in.size()) {
    uint32_t n = uint32_t(static_cast<unsigned char>(in[i])) << 16;
    size_t k = 1;
    if (i + 1 < in.size()) { n |= uint32_t(static_cast<unsigned char>(in[i + 1])) << 8; ++k; }
    if (i + 2 < in.size()) { n |= uint32_t(static_cast<unsigned char>(in[i + 2])); ++k; }
    for (size_t j = 0; j < 4; ++j) {
      if (j <= k) {
        char c = kB64[(n >> (18 - 6 * j)) & 63];
        if (url && c == '+') c = '-';
        if (url && c == '/') c = '_';
        out.push_back(c);
      } else {
        out.push_back('=');
      }
    }
    i += 3;
  }
  return out;
}

std::optional<std::string> base64_decode(const std::string& in, bool url) {
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    if (url && c == '-') c = '+';
    if (url && c == '_') c = '/';
    const char* p = std::strchr(kB64, c);
    if (!p || !c) return std::nullopt;
    buf = (buf << 6) | uint32_t(p - kB64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(char((buf >> bits) & 0xFF));
    }
  }
  return out;
}

template <bool Encode>
Status fn_encode(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<std::string> s, fmt;
  Status st = string_input(call, in, &s);
  if (!st || !s) return st;
  st = string_arg(call, f, 0, &fmt);
  if (!st || !fmt) return st;
  static const char* hex = "0123456789abcdef";
  if (*fmt == "base64" || *fmt == "urlbase64") {
    bool url = *fmt == "urlbase64";
    if (Encode) {
      out.push_back(Value::of_string(base64_encode(*s, url)));
    } else {
      auto d = base64_decode(*s, url);
      if (d) out.push_back(Value::of_string(std::move(*d)));
    }
  } else if (*fmt == "hex") {
    std::string r;
    if (Encode) {
      for (unsigned char c : *s) { r.push_back(hex[c >> 4]); r.push_back(hex[c & 15]); }
    } else {
      if (s->size() % 2) return Status::ok();
      for (size_t i = 0; i < s->size(); i += 2) {
        auto nib = [](char c) { return std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (std::tolower(c) - 'a' + 10); };
        if (!std::isxdigit(static_cast<unsigned char>((*s)[i])) || !std::isxdigit(static_cast<unsigned char>((*s)[i + 1])))
          return Status::ok();
        r.push_back(char(nib((*s)[i]) * 16 + nib((*s)[i + 1])));
      }
    }
    out.push_back(Value::of_string(std::move(r)));
  } else {
    return eval_error(call, call.name + "(): unknown format '" + *fmt + "'");
  }
  return Status::ok();
}

template <bool Escape>
Status fn_escape(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<std::string> s, fmt;
  Status st = string_input(call, in, &s);
  if (!st || !s) return st;
  st = string_arg(call, f, 0, &fmt);
  if (!st || !fmt) return st;
  std::string r;
  if (*fmt == "html") {
    if (Escape) {
      for (char c : *s) {
        switch (c) {
          case '&': r += "&amp;"; break;
          case '<': r += "&lt;"; break;
          case '>': r += "&gt;"; break;
          case '"': r += "&quot;"; break;
          case '\'': r += "&#39;"; break;
          default: r.push_back(c);
        }
      }
    } else {
      static const std::pair<const char*, char> ents[] = {
          {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&#39;", '\''}, {"&apos;", '\''}};
      for (size_t i = 0; i < s->size();) {
        bool done = false;
        for (auto& e : ents) {
          size_t n = std::strlen(e.first);
          if (s->compare(i, n, e.first) == 0) { r.push_back(e.second); i += n; done = true; break; }
        }
        if (!done) r.push_back((*s)[i++]);
      }
    }
  } else if (*fmt == "json") {
    if (Escape) {
      for (char c : *s) {
        switch (c) {
          case '"': r += "\\\""; break;
          case '\\': r += "\\\\"; break;
          case '\n': r += "\\n"; break;
          case '\r': r += "\\r"; break;
          case '\t': r += "\\t"; break;
          default: r.push_back(c);
        }
      }
    } else {
      for (size_t i = 0; i < s->size(); ++i) {
        char c = (*s)[i];
        if (c == '\\' && i + 1 < s->size()) {
          char e = (*s)[++i];
          switch (e) {
            case 'n': r.push_back('\n'); break;
            case 'r': r.push_back('\r'); break;
            case 't': r.push_back('\t'); break;
            default: r.push_back(e);
          }
        } else {
          r.push_back(c);
        }
      }
    }
  } else {
    return eval_error(call, call.name + "(): unknown format '" + *fmt + "'");
  }
  out.push_back(Value::of_string(std::move(r)));
  return Status::ok();
}

// ---- math ----------------------------------------------------------------------

Status number_input(const ExprNode& call, const Collection& in, std::optional<Value>* v) {
  Status st = single_system(call, in, v);
  if (!st || !*v) return st;
  if ((*v)->kind() != ValueKind::Integer && (*v)->kind() != ValueKind::Decimal &&
      !((*v)->kind() == ValueKind::Quantity && call.name == "abs"))
    return eval_error(call, call.name + "() needs a number");
  return Status::ok();
}

Status fn_abs(const ExprNode& call, const Frame&, const Collection& in, Collection& out) {
  std::optional<Value> v;
  Status st = number_input(call, in, &v);
  if (!st || !v) return st;
  if (v->kind() == ValueKind::Integer) out.push_back(Value::of_int(v->as_int() < 0 ? -v->as_int() : v->as_int()));
  else if (v->kind() == ValueKind::Decimal)
    out.push_back(Value::of_decimal(v->as_decimal().is_negative() ? -v->as_decimal() : v->as_decimal()));
  else {
    Quantity q = v->as_quantity();
    if (q.value.is_negative()) q.value = -q.value;
    out.push_back(Value::of_quantity(std::move(q)));
  }
  return Status::ok();
}

template <int Kind>  // 0 ceiling, 1 floor, 2 truncate
Status fn_rounding(const ExprNode& call, const Frame&, const Collection& in, Collection& out) {
  std::optional<Value> v;
  Status st = number_input(call, in, &v);
  if (!st || !v) return st;
  Decimal d = to_dec(*v);
  Decimal r = Kind == 0 ? d.ceiling() : Kind == 1 ? d.floor() : d.truncated();
  out.push_back(Value::of_int(int64_t(r.mant)));
  return Status::ok();
}

Status fn_round(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<Value> v;
  Status st = number_input(call, in, &v);
  if (!st || !v) return st;
  std::optional<int64_t> digits = 0;
  if (!call.args.empty()) {
    st = int_arg(call, f, 0, &digits);
    if (!st || !digits) return st;
    if (*digits < 0 || *digits > Decimal::kMaxScale) return eval_error(call, "round(): precision out of range");
  }
  out.push_back(Value::of_decimal(to_dec(*v).rescaled(int(*digits))));
  return Status::ok();
}

template <int Kind>  // 0 exp, 1 ln, 2 sqrt
Status fn_real(const ExprNode& call, const Frame&, const Collection& in, Collection& out) {
  std::optional<Value> v;
  Status st = number_input(call, in, &v);
  if (!st || !v) return st;
  double x = to_dec(*v).to_double();
  double r = Kind == 0 ? std::exp(x) : Kind == 1 ? std::log(x) : std::sqrt(x);
  if (std::isfinite(r)) out.push_back(Value::of_decimal(Decimal::from_double(r)));
  return Status::ok();
}

Status fn_log(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<Value> v;
  Status st = number_input(call, in, &v);
  if (!st || !v) return st;
  Collection b;
  st = arg(call, f, 0, b);
  if (!st || b.empty()) return st;
  std::optional<Value> base;
  st = number_input(call, b, &base);
  if (!st || !base) return st;
  double r = std::log(to_dec(*v).to_double()) / std::log(to_dec(*base).to_double());
  if (std::isfinite(r)) out.push_back(Value::of_decimal(Decimal::from_double(r)));
  return Status::ok();
}

Status fn_power(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<Value> v;
  Status st = number_input(call, in, &v);
  if (!st || !v) return st;
  Collection e;
  st = arg(call, f, 0, e);
  if (!st || e.empty()) return st;
  std::optional<Value> exp;
  st = number_input(call, e, &exp);
  if (!st || !exp) return st;
  if (v->kind() == ValueKind::Integer && exp->kind() == ValueKind::Integer && exp->as_int() >= 0) {
    int64_t r = 1;
    for (int64_t i = 0; i < exp->as_int(); ++i)
      if (__builtin_mul_overflow(r, v->as_int(), &r)) return Status::ok();
    out.push_back(Value::of_int(r));
    return Status::ok();
  }
  double r = std::pow(to_dec(*v).to_double(), to_dec(*exp).to_double());
  if (std::isfinite(r)) out.push_back(Value::of_decimal(Decimal::from_double(r)));
  return Status::ok();
}

// ---- boundaries and precision (N1 2.0 additions used by the R4 suite) ------------

Status fn_precision(const ExprNode& call, const Frame&, const Collection& in, Collection& out) {
  std::optional<Value> v;
  Status st = single_system(call, in, &v);
  if (!st || !v) return st;
  switch (v->kind()) {
    case ValueKind::Decimal: out.push_back(Value::of_int(v->as_decimal().scale)); break;
    case ValueKind::Integer: out.push_back(Value::of_int(0)); break;
    case ValueKind::Date:
    case ValueKind::DateTime:
    case ValueKind::Time: {
      static const int date_digits[] = {0, 4, 6, 8, 10, 12, 14, 17};
      static const int time_digits[] = {0, 0, 0, 0, 2, 4, 6, 9};
      int p = int(v->as_temporal().precision);
      out.push_back(Value::of_int(v->kind() == ValueKind::Time ? time_digits[p] : date_digits[p]));
      break;
    }
    default: return eval_error(call, "precision() needs a decimal, date or time");
  }
  return Status::ok();
}

// Low/high boundary of a decimal written with `scale` digits, expressed with `digits` digits.
Decimal decimal_boundary(const Decimal& d, int digits, bool high) {
  Decimal half{5, d.scale + 1};
  Decimal b = high ? d + half : d - half;
  Decimal widened = b.rescaled(b.scale > digits ? b.scale : digits);
  if (widened.scale == digits) return widened;
  // Dropping digits: towards zero on the side away from the value's own range.
  bool toward_zero = high ? b.is_negative() : !b.is_negative();
  Decimal r;
  if (toward_zero) {
    int drop = b.scale - digits;
    __int128 p = 1;
    for (int i = 0; i < drop; ++i) p *= 10;
    r = Decimal{b.mant / p, digits};
  } else {
    r = b.rescaled(digits);
  }
  // A negative boundary that rounds to zero keeps its sign (-0.0034 -> -0.0).
  if (r.mant == 0 && b.is_negative()) r.negative_zero = true;
  return r;
}

template <bool High>
Status fn_boundary(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<Value> v;
  Status st = single_system(call, in, &v);
  if (!st || !v) return st;
  std::optional<int64_t> digits;
  if (!call.args.empty()) {
    st = int_arg(call, f, 0, &digits);
    if (!st) return st;
    if (!digits) return Status::ok();
  }
  switch (v->kind()) {
    case ValueKind::Integer:
    case ValueKind::Decimal:
    case ValueKind::Quantity: {
      int p = digits ? int(*digits) : 8;
      if (p < 0 || p > Decimal::kMaxScale) return Status::ok();
      Decimal d = v->kind() == ValueKind::Quantity ? v->as_quantity().value : to_dec(*v);
      Decimal r = decimal_boundary(d, p, High);
      if (v->kind() == ValueKind::Quantity) {
        Quantity q = v->as_quantity();
        q.value = r;
        out.push_back(Value::of_quantity(std::move(q)));
      } else {
        out.push_back(Value::of_decimal(r));
      }
      return Status::ok();
    }
    case ValueKind::Date:
    case ValueKind::DateTime:
    case ValueKind::Time: {
      Temporal t = v->as_temporal();
      bool is_time = t.kind == TemporalKind::Time;
      int p = digits ? int(*digits) : (is_time ? 9 : 17);
      Precision target;
      if (is_time) {
        if (p == 2) target = Precision::Hour;
        else if (p == 4) target = Precision::Minute;
        else if (p == 6) target = Precision::Second;
        else if (p == 9) target = Precision::Millisecond;
        else return Status::ok();
      } else {
        if (p == 4) target = Precision::Year;
        else if (p == 6) target = Precision::Month;
        else if (p == 8) target = Precision::Day;
        else if (p == 10 && t.kind == TemporalKind::DateTime) target = Precision::Hour;
        else if (p == 12 && t.kind == TemporalKind::DateTime) target = Precision::Minute;
        else if (p == 14 && t.kind == TemporalKind::DateTime) target = Precision::Second;
        else if (p == 17 && t.kind == TemporalKind::DateTime) target = Precision::Millisecond;
        else return Status::ok();
      }
      // Fill the missing components with their lowest/highest values.
      if (t.precision < Precision::Month) t.month = High ? 12 : 1;
      if (t.precision < Precision::Day) t.day = High ? uint8_t(days_in_month(t.year, t.month)) : 1;
      if (t.precision < Precision::Hour) t.hour = High ? 23 : 0;
      if (t.precision < Precision::Minute) t.minute = High ? 59 : 0;
      if (t.precision < Precision::Second) t.second = High ? 59 : 0;
      if (t.precision < Precision::Millisecond) t.millisecond = High ? 999 : 0;
      if (t.kind == TemporalKind::DateTime && !t.has_tz && target >= Precision::Hour) {
        // Unknown offset: the widest range is from +14:00 to -12:00.
        t.has_tz = true;
        t.tz_minutes = High ? -12 * 60 : 14 * 60;
      }
      if (target <= Precision::Day && t.kind == TemporalKind::DateTime) t.kind = TemporalKind::Date;
      t.precision = target;
      out.push_back(Value::of_temporal(t));
      return Status::ok();
    }
    default:
      return eval_error(call, call.name + "() needs a number, quantity, date or time");
  }
}

Status fn_comparable(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<Value> v;
  Status st = single_system(call, in, &v);
  if (!st || !v) return st;
  Collection o;
  st = arg(call, f, 0, o);
  if (!st || o.empty()) return st;
  auto w = to_system(o[0]);
  if (!w || v->kind() != ValueKind::Quantity || w->kind() != ValueKind::Quantity)
    return eval_error(call, "comparable() needs two quantities");
  out.push_back(Value::of_bool(convert_quantity(w->as_quantity(), v->as_quantity().unit, v->as_quantity().calendar).has_value()));
  return Status::ok();
}

// ---- tree navigation -------------------------------------------------------------

void add_children(const Value& v, Collection& out) {
  if (!v.is_node()) return;
  for (const Node& c : v.node()->children) out.push_back(Value::of_node(&c));
}

Status fn_children(const ExprNode&, const Frame&, const Collection& in, Collection& out) {
  for (const Value& v : in) add_children(v, out);
  return Status::ok();
}

Status fn_descendants(const ExprNode& call, const Frame&, const Collection& in, Collection& out) {
  size_t start = out.size();
  for (const Value& v : in) add_children(v, out);
  for (size_t i = start; i < out.size(); ++i) {
    if (out.size() > kMaxItems) return eval_error(call, "descendants() produced too many items");
    Value v = out[i];
    add_children(v, out);
  }
  return Status::ok();
}

// ---- FHIR additions (hl7.org/fhir/R4/fhirpath.html) --------------------------------

Status fn_extension(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<std::string> url;
  Status st = string_arg(call, f, 0, &url);
  if (!st || !url) return st;
  for (const Value& v : in) {
    if (!v.is_node()) continue;
    for (const Node& c : v.node()->children) {
      if (!c.def || (c.def->name != "extension" && c.def->name != "modifierExtension")) continue;
      if (c.def->name == "modifierExtension") continue;
      if (c.child_value("url") == *url) out.push_back(Value::of_node(&c));
    }
  }
  return Status::ok();
}

// hasExtension(url): not in the R4 FHIRPath page, but used by an R4 SearchParameter
// (questionnaireresponse-extensions-QuestionnaireResponse-item-subject): extension(url).exists().
Status fn_has_extension(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  Collection found;
  Status st = fn_extension(call, f, in, found);
  if (!st) return st;
  out.push_back(Value::of_bool(!found.empty()));
  return Status::ok();
}

Status fn_has_value(const ExprNode&, const Frame&, const Collection& in, Collection& out) {
  bool r = in.size() == 1 && in[0].is_node() && in[0].node()->is_primitive() && in[0].node()->has_value;
  out.push_back(Value::of_bool(r));
  return Status::ok();
}

Status fn_get_value(const ExprNode&, const Frame&, const Collection& in, Collection& out) {
  if (in.size() == 1 && in[0].is_node() && in[0].node()->is_primitive()) {
    auto v = to_system(in[0]);
    if (v) out.push_back(std::move(*v));
  }
  return Status::ok();
}

const Node* find_contained(const Node* resource, std::string_view id) {
  if (!resource) return nullptr;
  for (const Node& c : resource->children)
    if (c.def && c.def->name == "contained" && c.child_value("id") == id) return &c;
  return nullptr;
}

// Bundle entries: fullUrl match, or Type/id at the end of the fullUrl.
const Node* find_in_bundle(const Node* bundle, std::string_view ref) {
  if (!bundle || !bundle->type || bundle->type->name != "Bundle") return nullptr;
  for (const Node& e : bundle->children) {
    if (!e.def || e.def->name != "entry") continue;
    const Node* res = e.child("resource");
    if (!res) continue;
    std::string_view full = e.child_value("fullUrl");
    if (!full.empty() && full == ref) return res;
    if (res->type) {
      std::string local = res->type->name + "/" + std::string(res->child_value("id"));
      if (ref == local || (full.size() > local.size() && full.substr(full.size() - local.size()) == local &&
                           full[full.size() - local.size() - 1] == '/' && ref == local))
        return res;
    }
  }
  return nullptr;
}

Status fn_resolve(const ExprNode&, const Frame& f, const Collection& in, Collection& out) {
  for (const Value& v : in) {
    std::string ref;
    if (v.is_node()) {
      const Node* n = v.node();
      if (n->is_primitive()) {
        ref = n->value;
      } else {
        ref = std::string(n->child_value("reference"));
      }
    } else if (v.kind() == ValueKind::String) {
      ref = v.as_string();
    }
    if (ref.empty()) continue;
    const Node* target = nullptr;
    if (ref[0] == '#') target = find_contained(f.st->resource, std::string_view(ref).substr(1));
    if (!target) target = find_in_bundle(f.st->root_resource, ref);
    if (!target && f.st->env->resolver) target = f.st->env->resolver->resolve(ref);
    if (target) out.push_back(Value::of_node(target));
  }
  return Status::ok();
}

Status fn_conforms_to(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<std::string> url;
  Status st = string_arg(call, f, 0, &url);
  if (!st || !url) return st;
  for (const Value& v : in) {
    if (!v.is_node()) return eval_error(call, "conformsTo() needs FHIR elements");
    if (f.st->env->profiles) {
      auto r = f.st->env->profiles->conforms_to(*v.node(), *url);
      if (!r) return eval_error(call, "conformsTo(): unknown profile '" + *url + "'");
      out.push_back(Value::of_bool(*r));
      continue;
    }
    // Without a validator: the base definitions of the core types.
    static const std::string kCore = "http://hl7.org/fhir/StructureDefinition/";
    if (url->rfind(kCore, 0) != 0) return eval_error(call, "conformsTo(): unknown profile '" + *url + "'");
    std::string type = url->substr(kCore.size());
    if (f.st->defs && !f.st->defs->type(type)) return eval_error(call, "conformsTo(): unknown profile '" + *url + "'");
    bool r = false;
    for (const fhir::TypeDef* t = v.node()->type; t; t = t->base) r = r || t->name == type;
    out.push_back(Value::of_bool(r));
  }
  return Status::ok();
}

void coded_of(const Value& v, std::vector<Coded>* codes) {
  if (!v.is_node()) {
    if (v.kind() == ValueKind::String) codes->push_back(Coded{"", v.as_string()});
    return;
  }
  const Node* n = v.node();
  if (n->is_primitive()) {
    codes->push_back(Coded{"", n->value});
    return;
  }
  if (n->type && n->type->name == "Coding") {
    codes->push_back(Coded{std::string(n->child_value("system")), std::string(n->child_value("code"))});
    return;
  }
  n->for_each_child("coding", [&](const Node& c) {
    codes->push_back(Coded{std::string(c.child_value("system")), std::string(c.child_value("code"))});
  });
}

Status fn_member_of(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  std::optional<std::string> vs;
  Status st = string_arg(call, f, 0, &vs);
  if (!st || !vs) return st;
  if (in.size() > 1) return eval_error(call, "memberOf() expects a single item");
  if (in.empty() || !f.st->env->terminology) return Status::ok();
  std::vector<Coded> codes;
  coded_of(in[0], &codes);
  auto r = f.st->env->terminology->member_of(codes, *vs);
  if (r) out.push_back(Value::of_bool(*r));
  return Status::ok();
}

template <bool Subsumes>
Status fn_subsumes(const ExprNode& call, const Frame& f, const Collection& in, Collection& out) {
  Collection other;
  Status st = arg(call, f, 0, other);
  if (!st) return st;
  if (in.size() != 1 || other.size() != 1 || !f.st->env->terminology) return Status::ok();
  std::vector<Coded> a, b;
  coded_of(in[0], &a);
  coded_of(other[0], &b);
  if (a.empty() || b.empty()) return Status::ok();
  auto r = Subsumes ? f.st->env->terminology->subsumes(a[0], b[0]) : f.st->env->terminology->subsumes(b[0], a[0]);
  if (r) out.push_back(Value::of_bool(*r));
  return Status::ok();
}

Status fn_html_checks(const ExprNode&, const Frame&, const Collection& in, Collection& out) {
  // Narrative safety is enforced by the validator's XHTML rules; here: present means ok.
  out.push_back(Value::of_bool(!in.empty()));
  return Status::ok();
}

Status fn_passthrough(const ExprNode&, const Frame&, const Collection& in, Collection& out) {
  out.insert(out.end(), in.begin(), in.end());
  return Status::ok();
}

Status fn_nothing(const ExprNode&, const Frame&, const Collection&, Collection&) { return Status::ok(); }

struct FnDef {
  const char* name;
  uint8_t min_args, max_args;
  FnImpl impl;
};

const FnDef kFunctions[] = {
    {"empty", 0, 0, fn_empty},
    {"exists", 0, 1, fn_exists},
    {"all", 1, 1, fn_all},
    {"allTrue", 0, 0, fn_bool_agg<false, true>},
    {"anyTrue", 0, 0, fn_bool_agg<true, true>},
    {"allFalse", 0, 0, fn_bool_agg<false, false>},
    {"anyFalse", 0, 0, fn_bool_agg<true, false>},
    {"subsetOf", 1, 1, fn_subset_of},
    {"supersetOf", 1, 1, fn_superset_of},
    {"count", 0, 0, fn_count},
    {"distinct", 0, 0, fn_distinct},
    {"isDistinct", 0, 0, fn_is_distinct},
    {"where", 1, 1, fn_where},
    {"select", 1, 1, fn_select},
    {"repeat", 1, 1, fn_repeat},
    {"ofType", 1, 1, fn_of_type},
    {"is", 1, 1, fn_is},
    {"as", 1, 1, fn_as},
    {"type", 0, 0, fn_type},
    {"single", 0, 0, fn_single},
    {"first", 0, 0, fn_first},
    {"last", 0, 0, fn_last},
    {"tail", 0, 0, fn_tail},
    {"skip", 1, 1, fn_skip},
    {"take", 1, 1, fn_take},
    {"intersect", 1, 1, fn_intersect},
    {"exclude", 1, 1, fn_exclude},
    {"union", 1, 1, fn_union},
    {"combine", 1, 1, fn_combine},
    {"iif", 2, 3, fn_iif},
    {"not", 0, 0, fn_not},
    {"trace", 1, 2, fn_trace},
    {"now", 0, 0, fn_now},
    {"today", 0, 0, fn_today},
    {"timeOfDay", 0, 0, fn_time_of_day},
    {"aggregate", 1, 2, fn_aggregate},
    {"sort", 0, 8, fn_sort},
    {"toBoolean", 0, 0, fn_to<convert_boolean>},
    {"convertsToBoolean", 0, 0, fn_converts<convert_boolean>},
    {"toInteger", 0, 0, fn_to<convert_integer>},
    {"convertsToInteger", 0, 0, fn_converts<convert_integer>},
    {"toDecimal", 0, 0, fn_to<convert_decimal>},
    {"convertsToDecimal", 0, 0, fn_converts<convert_decimal>},
    {"toString", 0, 0, fn_to<convert_string>},
    {"convertsToString", 0, 0, fn_converts<convert_string>},
    {"toDate", 0, 0, fn_to<convert_date>},
    {"convertsToDate", 0, 0, fn_converts<convert_date>},
    {"toDateTime", 0, 0, fn_to<convert_datetime>},
    {"convertsToDateTime", 0, 0, fn_converts<convert_datetime>},
    {"toTime", 0, 0, fn_to<convert_time>},
    {"convertsToTime", 0, 0, fn_converts<convert_time>},
    {"toQuantity", 0, 1, fn_to_quantity},
    {"convertsToQuantity", 0, 1, fn_converts_to_quantity},
    {"indexOf", 1, 1, fn_index_of},
    {"substring", 1, 2, fn_substring},
    {"startsWith", 1, 1, fn_str_test<0>},
    {"endsWith", 1, 1, fn_str_test<1>},
    {"contains", 1, 1, fn_str_test<2>},
    {"upper", 0, 0, fn_case<true>},
    {"lower", 0, 0, fn_case<false>},
    {"replace", 2, 2, fn_replace},
    {"matches", 1, 1, fn_matches<false>},
    {"matchesFull", 1, 1, fn_matches<true>},
    {"replaceMatches", 2, 2, fn_replace_matches},
    {"length", 0, 0, fn_length},
    {"toChars", 0, 0, fn_to_chars},
    {"trim", 0, 0, fn_trim},
    {"split", 1, 1, fn_split},
    {"join", 0, 1, fn_join},
    {"encode", 1, 1, fn_encode<true>},
    {"decode", 1, 1, fn_encode<false>},
    {"escape", 1, 1, fn_escape<true>},
    {"unescape", 1, 1, fn_escape<false>},
    {"abs", 0, 0, fn_abs},
    {"ceiling", 0, 0, fn_rounding<0>},
    {"floor", 0, 0, fn_rounding<1>},
    {"truncate", 0, 0, fn_rounding<2>},
    {"round", 0, 1, fn_round},
    {"exp", 0, 0, fn_real<0>},
    {"ln", 0, 0, fn_real<1>},
    {"sqrt", 0, 0, fn_real<2>},
    {"log", 1, 1, fn_log},
    {"power", 1, 1, fn_power},
    {"precision", 0, 0, fn_precision},
    {"lowBoundary", 0, 1, fn_boundary<false>},
    {"highBoundary", 0, 1, fn_boundary<true>},
    {"comparable", 1, 1, fn_comparable},
    {"children", 0, 0, fn_children},
    {"descendants", 0, 0, fn_descendants},
    {"extension", 1, 1, fn_extension},
    {"hasExtension", 1, 1, fn_has_extension},
    {"hasValue", 0, 0, fn_has_value},
    {"getValue", 0, 0, fn_get_value},
    {"resolve", 0, 0, fn_resolve},
    {"conformsTo", 1, 1, fn_conforms_to},
    {"memberOf", 1, 1, fn_member_of},
    {"subsumes", 1, 1, fn_subsumes<true>},
    {"subsumedBy", 1, 1, fn_subsumes<false>},
    {"htmlChecks", 0, 0, fn_html_checks},
    {"htmlchecks", 0, 0, fn_html_checks},
    {"checkModifiers", 1, 1, fn_passthrough},
    {"elementDefinition", 0, 0, fn_nothing},
    {"slice", 2, 2, fn_nothing},
};

}  // namespace

bool function_takes_type(std::string_view name) { return name == "is" || name == "as" || name == "ofType"; }

FnImpl find_function(std::string_view name, size_t argc, std::string* error) {
  for (const FnDef& d : kFunctions) {
    if (name != d.name) continue;
    if (argc < d.min_args || argc > d.max_args) {
      *error = std::string(name) + "() takes " +
               (d.min_args == d.max_args ? std::to_string(d.min_args)
                                         : std::to_string(d.min_args) + " to " + std::to_string(d.max_args)) +
               " argument(s), not " + std::to_string(argc);
      return nullptr;
    }
    return d.impl;
  }
  *error = "unknown function '" + std::string(name) + "'";
  return nullptr;
}

}  // namespace espace::fhirpath
