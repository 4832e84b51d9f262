#include "query.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <set>

#include "../common.h"

namespace espace::interactions::search {

namespace {

using storage::Bound;
using storage::Condition;
using storage::IndexTest;
using storage::SearchQuery;
using storage::TextOp;

constexpr size_t kMaxValuesPerParam = 100;   // comma-separated alternatives
// Codes a ValueSet may hold for :in/:not-in (each is one alternative of the
// condition; SQLite caps a compound SELECT at 500 parts).
constexpr size_t kMaxValueSetCodes = 400;
constexpr size_t kMaxValueLength = 2048;
constexpr int kMaxChain = 3;

Status bad(std::string name, std::string message) {
  return Status::error(ErrorCategory::Invalid, "invalid", std::move(message), std::move(name));
}
Status unsupported(std::string name, std::string message) {
  return Status::error(ErrorCategory::Invalid, "not-supported", std::move(message), std::move(name));
}

// Splits at `sep` not preceded by a backslash; escapes are kept for unescape().
std::vector<std::string> split_escaped(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      cur.push_back(s[i]);
      cur.push_back(s[++i]);
    } else if (s[i] == sep) {
      out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.push_back(s[i]);
    }
  }
  out.push_back(std::move(cur));
  return out;
}

std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == ',' || s[i + 1] == '|' || s[i + 1] == '$' || s[i + 1] == '\\'))
      ++i;
    out.push_back(s[i]);
  }
  return out;
}

enum class Prefix { Eq, Ne, Gt, Lt, Ge, Le, Sa, Eb, Ap };

Prefix take_prefix(std::string* v) {
  static const std::pair<const char*, Prefix> kPrefixes[] = {
      {"eq", Prefix::Eq}, {"ne", Prefix::Ne}, {"gt", Prefix::Gt}, {"lt", Prefix::Lt}, {"ge", Prefix::Ge},
      {"le", Prefix::Le}, {"sa", Prefix::Sa}, {"eb", Prefix::Eb}, {"ap", Prefix::Ap}};
  if (v->size() > 2) {
    for (const auto& [text, p] : kPrefixes)
      if (v->compare(0, 2, text) == 0) {
        v->erase(0, 2);
        return p;
      }
  }
  return Prefix::Eq;
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Bound bound(Bound::Column col, Bound::Op op, double v) {
  Bound b;
  b.column = col;
  b.op = op;
  b.number = v;
  return b;
}

// Index tests (OR'ed) for a prefix against the search range [lo, hi] and
// resource ranges [low, high] (closed intervals), per search.html "prefix".
// `point_ordering`: gt/lt/ge/le/sa/eb compare with the value itself (number,
// quantity) instead of the edges of its implicit range (dates).
std::vector<IndexTest> range_tests(const IndexTest& base, Prefix p, double lo, double hi, double value,
                                   bool point_ordering, double ap_margin) {
  using C = Bound::Column;
  using O = Bound::Op;
  std::vector<IndexTest> out;
  auto with = [&](std::vector<Bound> bounds) {
    IndexTest t = base;
    t.bounds = std::move(bounds);
    out.push_back(std::move(t));
  };
  double upper = point_ordering ? value : hi;
  double lower = point_ordering ? value : lo;
  // low <= high, so eq also bounds low from above: an index on low then
  // scans only the search range.
  std::vector<Bound> eq = {bound(C::Low, O::Ge, lo), bound(C::Low, O::Le, hi), bound(C::High, O::Le, hi)};
  switch (p) {
    case Prefix::Eq:
    case Prefix::Ne: with(eq); break;  // ne: the caller negates
    case Prefix::Gt: with({bound(C::High, O::Gt, upper)}); break;
    case Prefix::Lt: with({bound(C::Low, O::Lt, lower)}); break;
    case Prefix::Ge:
      if (point_ordering) {
        with({bound(C::High, O::Ge, value)});
      } else {
        with({bound(C::High, O::Gt, hi)});
        with(eq);
      }
      break;
    case Prefix::Le:
      if (point_ordering) {
        with({bound(C::Low, O::Le, value)});
      } else {
        with({bound(C::Low, O::Lt, lo)});
        with(eq);
      }
      break;
    case Prefix::Sa: with({bound(C::Low, O::Gt, upper)}); break;
    case Prefix::Eb: with({bound(C::High, O::Lt, lower)}); break;
    case Prefix::Ap: with({bound(C::Low, O::Le, hi + ap_margin), bound(C::High, O::Ge, lo - ap_margin)}); break;
  }
  return out;
}

// A decimal with the range its precision implies: "100" is [99.5, 100.5).
bool parse_number(std::string_view text, double* value, double* lo, double* hi) {
  if (text.empty() || text.size() > 64) return false;
  std::string s(text);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (!end || *end || !std::isfinite(v)) return false;
  for (char c : s)
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E'))
      return false;
  size_t e = s.find_first_of("eE");
  std::string mant = s.substr(0, e);
  int exponent = e == std::string::npos ? 0 : std::atoi(s.c_str() + e + 1);
  size_t dot = mant.find('.');
  int decimals = dot == std::string::npos ? 0 : static_cast<int>(mant.size() - dot - 1);
  double half = 0.5 * std::pow(10.0, exponent - decimals);
  *value = v;
  *lo = v - half;
  *hi = std::nextafter(v + half, -INFINITY);  // the upper edge is exclusive
  return true;
}

struct Parser {
  const ParseContext& ctx;

  Status criterion(const std::string& type, const std::string& name, const std::string& value, int depth,
                   Condition* out) {
    if (depth > kMaxChain) return bad(name, "search chains are limited to " + std::to_string(kMaxChain) + " levels");
    if (value.size() > kMaxValueLength) return bad(name, "search value too long");
    if (name.starts_with("_has:")) return has(type, name, value, depth, out);
    if (name == "_list") {
      // Resources named by List.entry.item of the given Lists: reverse chaining on List.item.
      if (type.empty()) return bad(name, "_list needs a resource type");
      auto sub = std::make_shared<SearchQuery>();
      sub->type = "List";
      Condition lists;
      lists.kind = Condition::Kind::Id;
      for (auto& v : split_escaped(value, ',')) {
        std::string id = unescape(v);
        if (!is_valid_id(id)) return bad(name, "_list takes List ids");
        lists.ids.push_back(id);
      }
      sub->all_of.push_back(std::move(lists));
      out->kind = Condition::Kind::Has;
      out->has_type = "List";
      out->has_param = "item";
      out->has_query = std::move(sub);
      return Status::ok();
    }
    size_t dot = name.find('.');
    std::string head = name.substr(0, dot);
    std::string rest = dot == std::string::npos ? std::string() : name.substr(dot + 1);
    size_t colon = head.find(':');
    std::string code = head.substr(0, colon);
    std::string modifier = colon == std::string::npos ? std::string() : head.substr(colon + 1);

    if (code == "_id" || code == "_lastUpdated") {
      if (!rest.empty()) return bad(name, "'" + code + "' cannot be chained");
      if (modifier == "missing") return bad(name, "'" + code + "' is never missing");
      if (!modifier.empty()) return unsupported(name, "modifier ':" + modifier + "' is not supported on " + code);
      std::vector<std::string> values = split_escaped(value, ',');
      if (values.size() > kMaxValuesPerParam) return bad(name, "too many values");
      if (code == "_id") {
        out->kind = Condition::Kind::Id;
        for (auto& v : values) out->ids.push_back(unescape(v));
        return Status::ok();
      }
      out->kind = Condition::Kind::LastUpdated;
      return date_values(name, values, IndexTest{}, out);
    }
    if (type.empty())
      return unsupported(name, "search parameter '" + code +
                                   "' needs a resource type (system-level search supports _id, _lastUpdated and _type)");
    const SearchParamDef* def = ctx.registry->find(type, code);
    if (!def) return bad(name, "unknown search parameter '" + code + "' for " + type);
    if (modifier == "missing") {
      if (!rest.empty()) return bad(name, ":missing cannot be chained");
      if (value != "true" && value != "false") return bad(name, ":missing takes true or false");
      out->kind = Condition::Kind::Missing;
      out->missing_param = code;
      out->negate = value == "false";
      return Status::ok();
    }
    if (code == "_text") {
      // Basic narrative search: every value must occur in the narrative's words.
      if (!rest.empty() || (!modifier.empty() && modifier != "contains"))
        return unsupported(name, "_text supports no modifiers or chains");
      out->kind = Condition::Kind::AnyOf;
      for (auto& raw : split_escaped(value, ',')) {
        IndexTest t;
        t.param = "_text";
        t.kind = "text";
        t.value = normalize_string(unescape(raw));
        if (t.value.empty()) return bad(name, "empty _text value");
        t.value_op = TextOp::Contains;
        out->any_of.push_back(std::move(t));
      }
      return Status::ok();
    }
    if (!def->expression && code != "_id")
      return unsupported(name, "search parameter '" + code + "' (" + param_type_name(def->type) +
                                   ") is not supported yet");
    if (!rest.empty()) return chain(type, *def, modifier, name, rest, value, depth, out);

    std::vector<std::string> values = split_escaped(value, ',');
    if (values.size() > kMaxValuesPerParam) return bad(name, "too many values");
    IndexTest base;
    base.param = code;
    out->kind = Condition::Kind::AnyOf;
    switch (def->type) {
      case ParamType::String: {
        if (!modifier.empty() && modifier != "exact" && modifier != "contains")
          return unsupported(name, "modifier ':" + modifier + "' is not supported on string parameters");
        base.kind = "string";
        for (auto& raw : values) {
          std::string v = unescape(raw);
          if (v.empty()) return bad(name, "empty string value");
          IndexTest t = base;
          if (modifier == "exact") {
            t.system = v;
            // A row whose system equals a text this short kept its text whole
            // (a cut one keeps at least kMaxIndexedText - 3 bytes), so its
            // value is the text normalized: an equality the value index can
            // seek, where system alone read every row of the parameter.
            if (std::string folded = normalize_string(v);
                v.size() + 4 <= kMaxIndexedText && folded.size() <= kMaxIndexedText) {
              t.value = std::move(folded);
              t.value_op = TextOp::Equal;
            }
          } else {
            t.value = normalize_string(v);
            t.value_op = modifier == "contains" ? TextOp::Contains : TextOp::StartsWith;
          }
          out->any_of.push_back(std::move(t));
        }
        return Status::ok();
      }
      case ParamType::Token: return token_values(name, modifier, values, base, out);
      case ParamType::Reference: {
        if (modifier == "identifier") {
          base.kind = "ref-identifier";
          for (auto& raw : values) {
            std::vector<std::string> parts = split_escaped(raw, '|');
            if (parts.size() > 2) return bad(name, "identifier value must be [system|]value");
            IndexTest t = base;
            if (parts.size() == 2) t.system = unescape(parts[0]);
            std::string v = unescape(parts.back());
            if (!v.empty()) {
              t.value = v;
              t.value_op = TextOp::Equal;
            }
            out->any_of.push_back(std::move(t));
          }
          return Status::ok();
        }
        std::string target;
        if (!modifier.empty()) {
          if (!ctx.defs->resource_type(modifier))
            return unsupported(name, "modifier ':" + modifier + "' is not supported on reference parameters");
          target = modifier;
        }
        base.kind = "reference";
        for (auto& raw : values) {
          IndexTest t = base;
          if (Status s = reference_value(name, unescape(raw), target, &t); !s) return s;
          out->any_of.push_back(std::move(t));
        }
        return Status::ok();
      }
      case ParamType::Date:
        if (!modifier.empty()) return unsupported(name, "modifier ':" + modifier + "' is not supported on dates");
        base.kind = "date";
        return date_values(name, values, base, out);
      case ParamType::Number:
      case ParamType::Quantity: {
        if (!modifier.empty())
          return unsupported(name, "modifier ':" + modifier + "' is not supported on " + param_type_name(def->type));
        return number_values(name, def->type == ParamType::Quantity, values, base, out);
      }
      case ParamType::Uri: {
        if (!modifier.empty() && modifier != "below" && modifier != "above")
          return unsupported(name, "modifier ':" + modifier + "' is not supported on uri parameters");
        base.kind = "uri";
        for (auto& raw : values) {
          IndexTest t = base;
          t.value = unescape(raw);
          if (t.value.empty()) return bad(name, "empty uri value");
          t.value_op = modifier == "below" ? TextOp::StartsWith : modifier == "above" ? TextOp::IsPrefixOf : TextOp::Equal;
          out->any_of.push_back(std::move(t));
        }
        return Status::ok();
      }
      case ParamType::Composite:
        if (!modifier.empty()) return unsupported(name, "modifier ':" + modifier + "' is not supported on composites");
        return composite_values(name, *def, values, base, out);
      case ParamType::Special: break;
    }
    return unsupported(name, "search parameter '" + code + "' (" + param_type_name(def->type) +
                                 ") is not supported yet");
  }

  // "system|code$value": the first component a token, the second per its type.
  Status composite_values(const std::string& name, const SearchParamDef& def, const std::vector<std::string>& values,
                          IndexTest base, Condition* out) {
    if (def.components.size() != 2) return unsupported(name, "this composite parameter is not supported yet");
    base.kind = "composite";
    for (auto& raw : values) {
      std::vector<std::string> parts = split_escaped(raw, '$');
      if (parts.size() != 2) return bad(name, "composite value must be first$second");
      std::vector<std::string> token = split_escaped(parts[0], '|');
      if (token.size() > 2 || unescape(token.back()).empty()) return bad(name, "the first component must be [system|]code");
      IndexTest t = base;
      t.system = (token.size() == 2 ? unescape(token[0]) : std::string("*")) + "|" + unescape(token.back());
      Condition second;
      IndexTest second_base = t;
      switch (def.components[1].type) {
        case ParamType::Token: {
          std::vector<std::string> p2 = split_escaped(parts[1], '|');
          if (p2.size() > 2 || unescape(p2.back()).empty()) return bad(name, "the second component must be [system|]code");
          if (p2.size() == 2) {
            t.value = unescape(p2[0]) + "|" + unescape(p2[1]);
            t.value_op = TextOp::Equal;
          } else {
            t.value = "|" + unescape(p2[0]);
            t.value_op = TextOp::EndsWith;
          }
          out->any_of.push_back(std::move(t));
          continue;
        }
        case ParamType::String:
          t.value = normalize_string(unescape(parts[1]));
          t.value_op = TextOp::StartsWith;
          out->any_of.push_back(std::move(t));
          continue;
        case ParamType::Quantity:
        case ParamType::Number: {
          // The system column holds the first component, so units match on the code only.
          std::vector<std::string> q = split_escaped(parts[1], '|');
          if (q.size() != 1 && q.size() != 3) return bad(name, "the second component must be [prefix]number[|system|code]");
          if (Status s = number_values(name, false, {q[0]}, second_base, &second); !s) return s;
          if (q.size() == 3 && !unescape(q[2]).empty())
            for (auto& test : second.any_of) {
              test.value = unescape(q[2]);
              test.value_op = TextOp::Equal;
            }
          break;
        }
        case ParamType::Date:
          if (Status s = date_values(name, {parts[1]}, second_base, &second); !s) return s;
          break;
        default: return unsupported(name, "this composite parameter is not supported yet");
      }
      if (second.negate) return unsupported(name, "'ne' is not supported inside a composite value");
      for (auto& test : second.any_of) {
        test.kind = "composite";
        out->any_of.push_back(std::move(test));
      }
    }
    return Status::ok();
  }

  // :in / :not-in (search.html#modifiers): the codes of the ValueSets
  // named, from their expansion; one index test per code (OR), negated for
  // :not-in. Only sets the terminology service can enumerate completely:
  // a partial expansion would silently miss matches.
  Status value_set_values(const std::string& name, const std::string& modifier,
                          const std::vector<std::string>& values, IndexTest base, Condition* out) {
    if (!ctx.terminology) return unsupported(name, "modifier ':" + modifier + "' needs the terminology service");
    base.kind = "token";
    std::set<std::pair<std::string, std::string>> seen;
    for (const std::string& raw : values) {
      std::string url = unescape(raw);
      if (url.empty()) return bad(name, "empty ValueSet URL for :" + modifier);
      std::shared_ptr<const terminology::Expansion> expansion;
      if (Status s = ctx.terminology->expand(url, &expansion); !s) {
        if (s.category() == ErrorCategory::NotFound) return bad(name, "unknown ValueSet '" + url + "'");
        return unsupported(name, "ValueSet '" + url + "' cannot be expanded: " + s.message());
      }
      if (!expansion->is_complete())
        return unsupported(name, "ValueSet '" + url + "' includes codes of systems this server cannot enumerate");
      for (const terminology::ExpandedCode& code : expansion->codes) {
        if (!seen.emplace(code.system, code.code).second) continue;
        if (seen.size() > kMaxValueSetCodes)
          return unsupported(name, "ValueSet '" + url + "' has more than " + std::to_string(kMaxValueSetCodes) +
                                       " codes, too many for :" + modifier);
        IndexTest t = base;
        t.system = code.system;
        t.value = code.code;
        t.value_op = TextOp::Equal;
        out->any_of.push_back(std::move(t));
      }
    }
    if (out->any_of.empty()) {
      // An empty set: :in matches nothing, :not-in everything.
      IndexTest t = base;
      t.system = "";
      t.value = "";
      t.value_op = TextOp::Equal;
      t.kind = "-";  // no row has this kind
      out->any_of.push_back(std::move(t));
    }
    out->negate = modifier == "not-in";
    return Status::ok();
  }

  Status token_values(const std::string& name, const std::string& modifier, const std::vector<std::string>& values,
                      IndexTest base, Condition* out) {
    if (modifier == "not") {
      out->negate = true;
    } else if (modifier == "in" || modifier == "not-in") {
      return value_set_values(name, modifier, values, base, out);
    } else if (modifier == "text") {
      base.kind = "text";
      for (auto& raw : values) {
        IndexTest t = base;
        t.value = normalize_string(unescape(raw));
        if (t.value.empty()) return bad(name, "empty :text value");
        t.value_op = TextOp::StartsWith;
        out->any_of.push_back(std::move(t));
      }
      return Status::ok();
    } else if (modifier == "of-type") {
      base.kind = "of-type";
      for (auto& raw : values) {
        std::vector<std::string> parts = split_escaped(raw, '|');
        if (parts.size() != 3 || parts[2].empty())
          return bad(name, ":of-type takes type-system|type-code|identifier-value");
        IndexTest t = base;
        t.system = unescape(parts[0]) + "|" + unescape(parts[1]);
        t.value = unescape(parts[2]);
        t.value_op = TextOp::Equal;
        out->any_of.push_back(std::move(t));
      }
      return Status::ok();
    } else if (!modifier.empty()) {
      return unsupported(name, "modifier ':" + modifier + "' is not supported on token parameters");
    }
    base.kind = "token";
    for (auto& raw : values) {
      std::vector<std::string> parts = split_escaped(raw, '|');
      if (parts.size() > 2) return bad(name, "token value must be [system|]code");
      IndexTest t = base;
      std::string code = unescape(parts.back());
      if (parts.size() == 2) t.system = unescape(parts[0]);  // "|code": explicitly no system
      if (parts.size() == 1 && code.empty()) return bad(name, "empty token value");
      if (parts.size() == 2 && code.empty() && t.system->empty()) return bad(name, "token value '|' names nothing");
      if (!code.empty()) {
        t.value = code;
        t.value_op = TextOp::Equal;
      }
      out->any_of.push_back(std::move(t));
    }
    return Status::ok();
  }

  Status reference_value(const std::string& name, std::string v, const std::string& target, IndexTest* t) {
    if (v.empty()) return bad(name, "empty reference value");
    if (!ctx.base_url.empty() && v.starts_with(ctx.base_url + "/")) v = v.substr(ctx.base_url.size() + 1);
    bool absolute = v.find("://") != std::string::npos || v.starts_with("urn:");
    if (absolute) {
      t->system = "";
      t->value = v;
      t->value_op = TextOp::Equal;
      return Status::ok();
    }
    size_t hist = v.find("/_history/");
    if (hist != std::string::npos) v.resize(hist);
    size_t slash = v.find('/');
    if (slash != std::string::npos) {
      std::string type = v.substr(0, slash);
      std::string id = v.substr(slash + 1);
      if (!ctx.defs->resource_type(type) || !is_valid_id(id))
        return bad(name, "reference value must be an id, Type/id or an absolute URL");
      if (!target.empty() && target != type) return bad(name, "reference type does not match the :" + target + " modifier");
      t->system = type;
      t->value = id;
    } else {
      if (!is_valid_id(v)) return bad(name, "reference value must be an id, Type/id or an absolute URL");
      if (!target.empty()) t->system = target;
      t->value = v;
    }
    t->value_op = TextOp::Equal;
    return Status::ok();
  }

  Status date_values(const std::string& name, const std::vector<std::string>& values, const IndexTest& base,
                     Condition* out) {
    bool any_ne = false;
    for (auto& raw : values) {
      std::string v = unescape(raw);
      Prefix p = take_prefix(&v);
      int64_t lo = 0, hi = 0;
      if (!date_range(v, &lo, &hi)) return bad(name, "'" + raw + "' is not a valid date");
      double mid = (static_cast<double>(lo) + static_cast<double>(hi)) / 2;
      // ap: 10% of the distance from now, per search.html.
      double margin = 0.1 * std::fabs(static_cast<double>(now_us()) - mid);
      if (p == Prefix::Ne) any_ne = true;
      for (auto& t : range_tests(base, p, static_cast<double>(lo), static_cast<double>(hi), mid, false, margin))
        out->any_of.push_back(std::move(t));
    }
    if (any_ne) {
      if (values.size() > 1) return unsupported(name, "'ne' cannot be combined with other values");
      out->negate = true;
    }
    return Status::ok();
  }

  Status number_values(const std::string& name, bool quantity, const std::vector<std::string>& values,
                       IndexTest base, Condition* out) {
    bool any_ne = false;
    for (auto& raw : values) {
      std::vector<std::string> parts = split_escaped(raw, '|');
      if (parts.size() != 1 && (!quantity || parts.size() != 3))
        return bad(name, quantity ? "quantity value must be [prefix]number[|system|code]" : "number value must be [prefix]number");
      std::string v = unescape(parts[0]);
      Prefix p = take_prefix(&v);
      double value = 0, lo = 0, hi = 0;
      if (!parse_number(v, &value, &lo, &hi)) return bad(name, "'" + raw + "' is not a valid number");
      IndexTest t = base;
      t.kind = quantity ? "quantity" : "number";
      if (quantity && parts.size() == 3) {
        std::string system = unescape(parts[1]), code = unescape(parts[2]);
        if (!system.empty()) t.system = system;
        if (!code.empty()) {
          t.value = code;
          t.value_op = TextOp::Equal;
        }
      }
      if (quantity && parts.size() == 1) t.kind = "";  // any unit; numbers computed by expressions too
      if (p == Prefix::Ne) any_ne = true;
      for (auto& r : range_tests(t, p, lo, hi, value, true, 0.1 * std::fabs(value)))
        out->any_of.push_back(std::move(r));
    }
    if (any_ne) {
      if (values.size() > 1) return unsupported(name, "'ne' cannot be combined with other values");
      out->negate = true;
    }
    return Status::ok();
  }

  Status chain(const std::string& type, const SearchParamDef& def, const std::string& modifier,
               const std::string& name, const std::string& rest, const std::string& value, int depth, Condition* out) {
    if (def.type != ParamType::Reference) return bad(name, "only reference parameters can be chained");
    std::vector<std::string> targets;
    if (!modifier.empty()) {
      if (!ctx.defs->resource_type(modifier)) return bad(name, "unknown resource type '" + modifier + "' in the chain");
      targets.push_back(modifier);
    } else {
      targets = def.targets;
    }
    std::string next_code = rest.substr(0, rest.find_first_of(":."));
    out->kind = Condition::Kind::AnyOf;
    Status last;
    for (const std::string& target : targets) {
      if (next_code != "_id" && next_code != "_lastUpdated" && next_code != "_has" &&
          !ctx.registry->find(target, next_code) && targets.size() > 1)
        continue;  // this target type has no such parameter
      auto sub = std::make_shared<SearchQuery>();
      sub->type = target;
      Condition inner;
      if (Status s = criterion(target, rest, value, depth + 1, &inner); !s) {
        last = s;
        if (targets.size() == 1) return s;
        continue;
      }
      sub->all_of.push_back(std::move(inner));
      IndexTest t;
      t.param = def.code;
      t.kind = "reference";
      t.target = std::move(sub);
      out->any_of.push_back(std::move(t));
    }
    if (out->any_of.empty())
      return last ? bad(name, "no target type of '" + def.code + "' has a search parameter '" + next_code + "'") : last;
    (void)type;
    return Status::ok();
  }

  // _has:Type:param:rest=value — resources of Type whose `param` points here and match rest=value.
  Status has(const std::string& type, const std::string& name, const std::string& value, int depth, Condition* out) {
    if (type.empty()) return bad(name, "_has needs a resource type");
    std::string_view spec = std::string_view(name).substr(5);
    size_t c1 = spec.find(':');
    size_t c2 = c1 == std::string_view::npos ? c1 : spec.find(':', c1 + 1);
    if (c2 == std::string_view::npos) return bad(name, "_has takes _has:Type:reference-parameter:search-parameter");
    std::string src_type(spec.substr(0, c1));
    std::string src_param(spec.substr(c1 + 1, c2 - c1 - 1));
    std::string rest(spec.substr(c2 + 1));
    if (!ctx.defs->resource_type(src_type)) return bad(name, "unknown resource type '" + src_type + "' in _has");
    const SearchParamDef* ref = ctx.registry->find(src_type, src_param);
    if (!ref || ref->type != ParamType::Reference)
      return bad(name, "'" + src_param + "' is not a reference parameter of " + src_type);
    auto sub = std::make_shared<SearchQuery>();
    sub->type = src_type;
    Condition inner;
    if (Status s = criterion(src_type, rest, value, depth + 1, &inner); !s) return s;
    sub->all_of.push_back(std::move(inner));
    out->kind = Condition::Kind::Has;
    out->has_type = src_type;
    out->has_param = src_param;
    out->has_query = std::move(sub);
    return Status::ok();
  }
};

bool parse_int(const std::string& s, int64_t max, int64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  int64_t v = 0;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    v = v * 10 + (c - '0');
  }
  if (v > max) v = max;
  *out = v;
  return true;
}

Status include_spec(const ParseContext& ctx, const std::string& type, const std::string& name,
                    const std::string& value, bool reverse, storage::IncludeSpec* out) {
  out->reverse = reverse;
  out->iterate = name.ends_with(":iterate") || name.ends_with(":recurse");
  if (value == "*") {
    out->source_type = "*";
    out->param = "*";
    return Status::ok();
  }
  std::vector<std::string> parts = split_escaped(value, ':');
  if (parts.size() < 2 || parts.size() > 3)
    return bad(name, name + " takes SourceType:parameter[:TargetType] or *");
  out->source_type = parts[0];
  out->param = parts[1];
  if (parts.size() == 3) out->target_type = parts[2];
  if (!ctx.defs->resource_type(out->source_type)) return bad(name, "unknown resource type '" + parts[0] + "'");
  if (!out->target_type.empty() && !ctx.defs->resource_type(out->target_type))
    return bad(name, "unknown resource type '" + parts[2] + "'");
  if (out->param != "*") {
    const SearchParamDef* def = ctx.registry->find(out->source_type, out->param);
    if (!def || def->type != ParamType::Reference)
      return bad(name, "'" + out->param + "' is not a reference parameter of " + out->source_type);
  }
  (void)type;
  return Status::ok();
}

}  // namespace

Status parse_search(const ParseContext& ctx, const std::string& type,
                    const std::vector<std::pair<std::string, std::string>>& params, ParsedSearch* out) {
  SearchQuery& q = out->query;
  q.type = type;
  out->count = ctx.limits.default_page_size;
  Parser parser{ctx};
  for (const auto& [name, value] : params) {
    if (name == "_format" || name == "_pretty") continue;
    Status s;
    bool keep = true;  // shown in the self link
    if (name == "_count") {
      int64_t n = 0;
      if (!parse_int(value, ctx.limits.max_page_size, &n)) s = bad(name, "_count must be a non-negative integer");
      else out->count = static_cast<int>(n);
    } else if (name == "_offset" || name == "_after" || name == "_before") {
      int64_t n = 0;
      if (!parse_int(value, INT64_MAX / 2, &n)) s = bad(name, name + " must be a non-negative integer");
      else if (name == "_offset") q.offset = n;
      else if (name == "_after") q.after_key = n;
      else q.before_key = n;
      keep = false;
    } else if (name == "_total") {
      if (value == "none") out->total = TotalMode::None;
      else if (value == "estimate") out->total = TotalMode::Estimate;
      else if (value == "accurate") out->total = TotalMode::Accurate;
      else s = bad(name, "_total takes none, estimate or accurate");
    } else if (name == "_summary") {
      if (value == "true") out->summary = SummaryMode::True;
      else if (value == "text") out->summary = SummaryMode::Text;
      else if (value == "data") out->summary = SummaryMode::Data;
      else if (value == "count") out->summary = SummaryMode::Count;
      else if (value == "false") out->summary = SummaryMode::False;
      else s = bad(name, "_summary takes true, text, data, count or false");
    } else if (name == "_elements") {
      for (auto& e : split_escaped(value, ','))
        if (!e.empty()) out->elements.push_back(e);
    } else if (name == "_sort") {
      std::vector<std::string> keys = split_escaped(value, ',');
      if (keys.size() + q.sort.size() > 8) {
        s = bad(name, "at most 8 sort keys");
        keys.clear();
      }
      for (auto& raw : keys) {
        storage::SortKey k;
        std::string code = raw;
        if (code.starts_with("-")) {
          k.descending = true;
          code.erase(0, 1);
        }
        if (code == "_id") {
          k.source = storage::SortKey::Source::Id;
        } else if (code == "_lastUpdated") {
          k.source = storage::SortKey::Source::LastUpdated;
        } else {
          const SearchParamDef* def = type.empty() ? nullptr : ctx.registry->find(type, code);
          if (!def) {
            s = bad(name, "cannot sort by unknown parameter '" + code + "'");
            break;
          }
          if (!def->expression) {
            s = unsupported(name, "cannot sort by '" + code + "'");
            break;
          }
          k.param = code;
          k.numeric = def->type == ParamType::Date || def->type == ParamType::Number || def->type == ParamType::Quantity;
        }
        q.sort.push_back(std::move(k));
      }
    } else if (name == "_include" || name == "_include:iterate" || name == "_include:recurse" ||
               name == "_revinclude" || name == "_revinclude:iterate" || name == "_revinclude:recurse") {
      storage::IncludeSpec spec;
      s = include_spec(ctx, type, name, value, name.starts_with("_revinclude"), &spec);
      if (s) q.includes.push_back(std::move(spec));
    } else if (name == "_contained") {
      if (value != "false") s = unsupported(name, "only _contained=false is supported");
    } else if (name == "_type") {
      if (!type.empty()) {
        s = bad(name, "_type applies to system-level search only");
      } else {
        for (auto& t : split_escaped(value, ',')) {
          if (!ctx.defs->resource_type(t)) {
            s = bad(name, "unknown resource type '" + t + "'");
            break;
          }
          q.types.push_back(t);
        }
      }
    } else {
      Condition cond;
      s = parser.criterion(type, name, value, 0, &cond);
      if (s) q.all_of.push_back(std::move(cond));
    }
    if (!s) {
      if (!ctx.lenient) return s;
      out->ignored.push_back(name + ": " + s.message());
      continue;
    }
    if (keep) out->used.emplace_back(name, value);
  }
  if (q.all_of.size() > 60) return bad("", "too many search parameters");
  return Status::ok();
}

Status compartment_condition(const Registry& registry, const std::string& compartment_type,
                             const std::string& compartment_id, const std::string& type, Condition* out,
                             std::vector<std::string>* types) {
  const auto* members = registry.compartment(compartment_type);
  if (!members)
    return Status::error(ErrorCategory::NotFound, "not-supported", "there is no " + compartment_type + " compartment");
  if (!is_valid_id(compartment_id)) return bad("", "malformed compartment id");
  out->kind = Condition::Kind::AnyOf;
  auto add = [&](const std::string& param) {
    if (param == "{def}") return;
    IndexTest t;
    t.param = param;
    t.kind = "reference";
    t.system = compartment_type;
    t.value = compartment_id;
    t.value_op = TextOp::Equal;
    out->any_of.push_back(std::move(t));
  };
  if (!type.empty()) {
    auto it = members->find(type);
    if (it == members->end())
      return Status::error(ErrorCategory::NotFound, "not-supported",
                           type + " is not part of the " + compartment_type + " compartment");
    for (const std::string& p : it->second) add(p);
  } else {
    std::set<std::string> params;
    for (const auto& [member, ps] : *members) {
      types->push_back(member);
      params.insert(ps.begin(), ps.end());
    }
    for (const std::string& p : params) add(p);
  }
  if (out->any_of.empty()) return bad("", "the compartment has no linking parameters for " + type);
  return Status::ok();
}

}  // namespace espace::interactions::search
