#include "invariant_guards.h"

#include <algorithm>
#include <cctype>

namespace espace::profiles {

namespace {

// Possible results of a boolean expression, as a set.
using Outcomes = unsigned;
constexpr Outcomes kTrue = 1, kFalse = 2, kEmpty = 4, kAny = 7;

// FHIRPath's three-valued operators (fhirpath.html#boolean-logic), one value each.
Outcomes and1(Outcomes a, Outcomes b) {
  if (a == kFalse || b == kFalse) return kFalse;
  if (a == kTrue && b == kTrue) return kTrue;
  return kEmpty;
}
Outcomes or1(Outcomes a, Outcomes b) {
  if (a == kTrue || b == kTrue) return kTrue;
  if (a == kFalse && b == kFalse) return kFalse;
  return kEmpty;
}
Outcomes xor1(Outcomes a, Outcomes b) {
  if (a == kEmpty || b == kEmpty) return kEmpty;
  return a == b ? kFalse : kTrue;
}
Outcomes implies1(Outcomes a, Outcomes b) {
  if (a == kFalse) return kTrue;
  if (a == kTrue) return b;
  return b == kTrue ? kTrue : kEmpty;
}

template <typename Op>
Outcomes combine(Outcomes a, Outcomes b, Op op) {
  Outcomes out = 0;
  for (Outcomes x : {kTrue, kFalse, kEmpty})
    for (Outcomes y : {kTrue, kFalse, kEmpty})
      if ((a & x) && (b & y)) out |= op(x, y);
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Index just after the quoted text opening at s[i] ('...' or `...`), or npos.
size_t skip_quoted(std::string_view s, size_t i) {
  char q = s[i];
  for (size_t j = i + 1; j < s.size(); ++j) {
    if (s[j] == '\\') ++j;
    else if (s[j] == q) return j + 1;
  }
  return std::string_view::npos;
}

// Positions of a binary keyword (" and ") outside brackets and literals.
std::vector<size_t> top_level(std::string_view s, std::string_view keyword) {
  std::vector<size_t> at;
  int depth = 0;
  for (size_t i = 0; i < s.size();) {
    char c = s[i];
    if (c == '\'' || c == '`') {
      i = skip_quoted(s, i);
      if (i == std::string_view::npos) return {};
      continue;
    }
    if (c == '(' || c == '[' || c == '{') ++depth;
    if (c == ')' || c == ']' || c == '}') --depth;
    if (depth == 0 && std::isspace(static_cast<unsigned char>(c)) && s.substr(i + 1).starts_with(keyword) &&
        i + 1 + keyword.size() < s.size() && std::isspace(static_cast<unsigned char>(s[i + 1 + keyword.size()]))) {
      at.push_back(i);
      i += keyword.size() + 1;
      continue;
    }
    ++i;
  }
  return at;
}

struct Analysis {
  const std::vector<std::string>* absent = nullptr;
  std::vector<std::string> heads;  // leading element names seen

  Outcomes expression(std::string_view s, int depth) {
    s = trim(s);
    if (depth > 32 || s.empty()) return kAny;
    // implies (lowest precedence), then or/xor, then and.
    if (auto at = top_level(s, "implies"); !at.empty()) {
      if (at.size() > 1) return kAny;  // chained implies: not worth getting the grouping right
      return combine(expression(s.substr(0, at[0]), depth + 1), expression(s.substr(at[0] + 8), depth + 1), implies1);
    }
    std::vector<std::pair<size_t, bool>> ors;  // position, is xor
    for (size_t p : top_level(s, "or")) ors.emplace_back(p, false);
    for (size_t p : top_level(s, "xor")) ors.emplace_back(p, true);
    if (!ors.empty()) {
      std::sort(ors.begin(), ors.end());
      Outcomes acc = expression(s.substr(0, ors[0].first), depth + 1);
      for (size_t k = 0; k < ors.size(); ++k) {
        size_t from = ors[k].first + (ors[k].second ? 5 : 4);
        size_t to = k + 1 < ors.size() ? ors[k + 1].first : s.size();
        Outcomes next = expression(s.substr(from, to - from), depth + 1);
        acc = ors[k].second ? combine(acc, next, xor1) : combine(acc, next, or1);
      }
      return acc;
    }
    if (auto at = top_level(s, "and"); !at.empty()) {
      Outcomes acc = expression(s.substr(0, at[0]), depth + 1);
      for (size_t k = 0; k < at.size(); ++k) {
        size_t from = at[k] + 5;
        size_t to = k + 1 < at.size() ? at[k + 1] : s.size();
        acc = combine(acc, expression(s.substr(from, to - from), depth + 1), and1);
      }
      return acc;
    }
    if (s.front() == '(') {
      size_t close = matching(s, 0);
      if (close == s.size() - 1) return expression(s.substr(1, s.size() - 2), depth + 1);
      return kAny;
    }
    return chain(s);
  }

  // Index of the bracket closing the one at s[open], or npos.
  static size_t matching(std::string_view s, size_t open) {
    int depth = 0;
    for (size_t i = open; i < s.size();) {
      char c = s[i];
      if (c == '\'' || c == '`') {
        i = skip_quoted(s, i);
        if (i == std::string_view::npos) return i;
        continue;
      }
      if (c == '(' || c == '[') ++depth;
      if (c == ')' || c == ']') {
        if (--depth == 0) return i;
      }
      ++i;
    }
    return std::string_view::npos;
  }

  // An identifier or `quoted` name at s[*i]; "" when there is none.
  static std::string_view name_at(std::string_view s, size_t* i) {
    size_t start = *i;
    if (start < s.size() && s[start] == '`') {
      size_t end = skip_quoted(s, start);
      if (end == std::string_view::npos) return {};
      *i = end;
      return s.substr(start + 1, end - start - 2);
    }
    size_t j = start;
    while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
    if (j == start || std::isdigit(static_cast<unsigned char>(s[start]))) return {};
    *i = j;
    return s.substr(start, j - start);
  }

  // element(.step)*: a path from an element of the context node. With the
  // element absent, each step below maps the empty collection to itself or
  // to the boolean noted.
  Outcomes chain(std::string_view s) {
    if (s == "true") return kTrue;
    if (s == "false") return kFalse;
    size_t i = 0;
    std::string_view head = name_at(s, &i);
    // Type names (upper case) and functions of the focus are not elements.
    if (head.empty() || !std::islower(static_cast<unsigned char>(head.front())) || (i < s.size() && s[i] == '('))
      return kAny;
    heads.emplace_back(head);
    if (std::find(absent->begin(), absent->end(), head) == absent->end()) return kAny;
    Outcomes state = kEmpty;
    while (i < s.size()) {
      if (s[i] == '[') {
        size_t close = matching(s, i);
        if (close == std::string_view::npos || state != kEmpty) return kAny;
        i = close + 1;
        continue;
      }
      if (s[i] != '.') return kAny;
      ++i;
      std::string_view step = name_at(s, &i);
      if (step.empty()) return kAny;
      bool call = i < s.size() && s[i] == '(';
      if (call) {
        size_t close = matching(s, i);
        if (close == std::string_view::npos) return kAny;
        i = close + 1;
      }
      if (!call) {
        if (state != kEmpty) return kAny;
        continue;
      }
      if (state != kEmpty) {
        if (step != "not") return kAny;
        state = state == kTrue ? kFalse : state == kFalse ? kTrue : kAny;
        continue;
      }
      static constexpr std::string_view kKeepsEmpty[] = {
          "where", "select", "repeat", "trace", "ofType", "as", "first", "last", "tail", "skip", "take", "single",
          "distinct", "children", "descendants", "not", "substring", "startsWith", "endsWith", "contains",
          "matches", "replace", "replaceMatches", "lower", "upper", "length", "indexOf", "toChars", "extension",
          "resolve", "toString", "toInteger", "toDecimal"};
      if (std::find(std::begin(kKeepsEmpty), std::end(kKeepsEmpty), step) != std::end(kKeepsEmpty)) continue;
      if (step == "empty" || step == "all" || step == "allTrue" || step == "allFalse" || step == "isDistinct")
        state = kTrue;
      else if (step == "exists" || step == "hasValue" || step == "anyTrue" || step == "anyFalse")
        state = kFalse;
      else
        return kAny;
    }
    return state;
  }
};

bool passes(Outcomes o) { return o != 0 && (o & kFalse) == 0; }

}  // namespace

InvariantGuard analyse_invariant(std::string_view expression) {
  InvariantGuard guard;
  std::vector<std::string> none;
  Analysis first;
  first.absent = &none;
  first.expression(expression, 0);
  std::vector<std::string> heads = first.heads;
  std::sort(heads.begin(), heads.end());
  heads.erase(std::unique(heads.begin(), heads.end()), heads.end());
  if (heads.empty() || heads.size() > 6) return guard;
  // Smallest sets first, so that only minimal alternatives are kept.
  std::vector<unsigned> masks;
  for (unsigned m = 1; m < (1u << heads.size()); ++m) masks.push_back(m);
  std::stable_sort(masks.begin(), masks.end(),
                   [](unsigned a, unsigned b) { return __builtin_popcount(a) < __builtin_popcount(b); });
  std::vector<unsigned> found;
  for (unsigned m : masks) {
    if (std::any_of(found.begin(), found.end(), [&](unsigned f) { return (f & m) == f; })) continue;
    std::vector<std::string> absent;
    for (size_t k = 0; k < heads.size(); ++k)
      if (m & (1u << k)) absent.push_back(heads[k]);
    Analysis a;
    a.absent = &absent;
    if (!passes(a.expression(expression, 0))) continue;
    found.push_back(m);
    guard.pass_when_absent.push_back(std::move(absent));
  }
  return guard;
}

bool InvariantGuard::holds_without_evaluation(const fhir::Node& node) const {
  // A primitive's FHIRPath members are not all child nodes: always evaluate.
  if (pass_when_absent.empty() || node.is_primitive()) return false;
  for (const std::vector<std::string>& names : pass_when_absent) {
    bool all_absent = true;
    for (const fhir::Node& c : node.children) {
      for (const std::string& n : names)
        if ((c.def && c.def->name == n) || c.name == n) all_absent = false;
      if (!all_absent) break;
    }
    if (all_absent) return true;
  }
  return false;
}

}  // namespace espace::profiles
