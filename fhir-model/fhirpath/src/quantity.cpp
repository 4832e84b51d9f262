// Quantities: a small UCUM unit algebra (enough to compare and convert the
// metric units, common customary units and time units) and calendar
// durations for date/time arithmetic.
#include <cstring>

#include "espace/fhirpath/value.h"
#include "temporal_ops.h"

namespace espace::fhirpath {

namespace {

enum Dim { M, G, S, MOL, K, A, CD, RAD, ARB };

struct Atom {
  const char* code;
  const char* factor;   // in base units
  int8_t dims[9];
  bool metric;          // accepts prefixes
};

// Base and derived units used in clinical data (UCUM tables, simplified).
const Atom kAtoms[] = {
    {"m", "1", {1, 0, 0, 0, 0, 0, 0, 0, 0}, true},
    {"g", "1", {0, 1, 0, 0, 0, 0, 0, 0, 0}, true},
    {"s", "1", {0, 0, 1, 0, 0, 0, 0, 0, 0}, true},
    {"mol", "1", {0, 0, 0, 1, 0, 0, 0, 0, 0}, true},
    {"K", "1", {0, 0, 0, 0, 1, 0, 0, 0, 0}, true},
    {"A", "1", {0, 0, 0, 0, 0, 1, 0, 0, 0}, true},
    {"cd", "1", {0, 0, 0, 0, 0, 0, 1, 0, 0}, true},
    {"rad", "1", {0, 0, 0, 0, 0, 0, 0, 1, 0}, true},
    {"min", "60", {0, 0, 1, 0, 0, 0, 0, 0, 0}, false},
    {"h", "3600", {0, 0, 1, 0, 0, 0, 0, 0, 0}, false},
    {"d", "86400", {0, 0, 1, 0, 0, 0, 0, 0, 0}, false},
    {"wk", "604800", {0, 0, 1, 0, 0, 0, 0, 0, 0}, false},
    {"mo", "2629800", {0, 0, 1, 0, 0, 0, 0, 0, 0}, false},   // mean Julian month
    {"a", "31557600", {0, 0, 1, 0, 0, 0, 0, 0, 0}, false},   // Julian year
    {"L", "0.001", {3, 0, 0, 0, 0, 0, 0, 0, 0}, true},
    {"l", "0.001", {3, 0, 0, 0, 0, 0, 0, 0, 0}, true},
    {"Hz", "1", {0, 0, -1, 0, 0, 0, 0, 0, 0}, true},
    {"N", "1000", {1, 1, -2, 0, 0, 0, 0, 0, 0}, true},
    {"Pa", "1000", {-1, 1, -2, 0, 0, 0, 0, 0, 0}, true},
    {"J", "1000", {2, 1, -2, 0, 0, 0, 0, 0, 0}, true},
    {"W", "1000", {2, 1, -3, 0, 0, 0, 0, 0, 0}, true},
    {"cal", "4184", {2, 1, -2, 0, 0, 0, 0, 0, 0}, true},
    {"bar", "100000000", {-1, 1, -2, 0, 0, 0, 0, 0, 0}, true},
    {"m[Hg]", "133322000", {-1, 1, -2, 0, 0, 0, 0, 0, 0}, true},
    {"m[H2O]", "9806650", {-1, 1, -2, 0, 0, 0, 0, 0, 0}, true},
    {"eq", "1", {0, 0, 0, 1, 0, 0, 0, 0, 0}, true},
    {"U", "0.000001", {0, 0, -1, 1, 0, 0, 0, 0, 0}, true},  // µmol/min
    {"%", "0.01", {0, 0, 0, 0, 0, 0, 0, 0, 0}, false},
    {"deg", "0.0174532925199433", {0, 0, 0, 0, 0, 0, 0, 1, 0}, false},
    {"[lb_av]", "453.59237", {0, 1, 0, 0, 0, 0, 0, 0, 0}, false},
    {"[oz_av]", "28.349523125", {0, 1, 0, 0, 0, 0, 0, 0, 0}, false},
    {"[gr]", "0.06479891", {0, 1, 0, 0, 0, 0, 0, 0, 0}, false},
    {"[in_i]", "0.0254", {1, 0, 0, 0, 0, 0, 0, 0, 0}, false},
    {"[ft_i]", "0.3048", {1, 0, 0, 0, 0, 0, 0, 0, 0}, false},
    {"[yd_i]", "0.9144", {1, 0, 0, 0, 0, 0, 0, 0, 0}, false},
    {"[mi_i]", "1609.344", {1, 0, 0, 0, 0, 0, 0, 0, 0}, false},
    {"[degF]", "0.5555555555555556", {0, 0, 0, 0, 1, 0, 0, 0, 0}, false},
    {"Cel", "1", {0, 0, 0, 0, 1, 0, 0, 0, 0}, false},
    {"[iU]", "1", {0, 0, 0, 0, 0, 0, 0, 0, 1}, true},
    {"[IU]", "1", {0, 0, 0, 0, 0, 0, 0, 0, 1}, true},
    {"[arb'U]", "1", {0, 0, 0, 0, 0, 0, 0, 0, 1}, false},
    {"[pH]", "1", {0, 0, 0, 0, 0, 0, 0, 0, 1}, false},
    {"[ppm]", "0.000001", {0, 0, 0, 0, 0, 0, 0, 0, 0}, false},
    {"[ppb]", "0.000000001", {0, 0, 0, 0, 0, 0, 0, 0, 0}, false},
};

struct Prefix {
  const char* code;
  const char* factor;
};
const Prefix kPrefixes[] = {
    {"da", "10"}, {"Y", "1000000000000000000000000"}, {"Z", "1000000000000000000000"},
    {"E", "1000000000000000000"}, {"P", "1000000000000000"}, {"T", "1000000000000"},
    {"G", "1000000000"}, {"M", "1000000"}, {"k", "1000"}, {"h", "100"}, {"d", "0.1"},
    {"c", "0.01"}, {"m", "0.001"}, {"u", "0.000001"}, {"n", "0.000000001"},
    {"p", "0.000000000001"}, {"f", "0.000000000000001"}, {"a", "0.000000000000000001"},
};

Decimal dec(const char* s) { return *Decimal::parse(s); }

const Atom* find_atom(std::string_view code) {
  for (const Atom& a : kAtoms)
    if (code == a.code) return &a;
  return nullptr;
}

Decimal power(Decimal base, int exp) {
  Decimal r{1, 0};
  int n = exp < 0 ? -exp : exp;
  for (int i = 0; i < n; ++i) r = r * base;
  if (exp < 0) {
    auto q = divide(Decimal{1, 0}, r);
    return q ? *q : Decimal{};
  }
  return r;
}

// A single symbol with optional exponent: "mg", "m2", "s-1", "10*3", "[lb_av]".
bool simple_unit(std::string_view sym, CanonicalUnit* out) {
  if (sym.empty()) return false;
  // Exponent: trailing digits with optional sign, unless inside brackets.
  int exp = 1;
  size_t end = sym.size();
  if (sym.back() != ']') {
    size_t i = end;
    while (i > 0 && sym[i - 1] >= '0' && sym[i - 1] <= '9') --i;
    if (i < end) {
      size_t j = i;
      if (j > 0 && (sym[j - 1] == '-' || sym[j - 1] == '+')) --j;
      if (j > 0) {
        std::string_view base = sym.substr(0, j);
        // "10*3" and "10^3": powers of ten.
        if (base == "10*" || base == "10^") {
          int n = 0;
          for (size_t k = i; k < end; ++k) n = n * 10 + (sym[k] - '0');
          if (n > 30) return false;
          out->factor = power(Decimal{10, 0}, sym[j] == '-' ? -n : n);
          out->dims = {};
          out->ok = true;
          return true;
        }
        int n = 0;
        for (size_t k = i; k < end; ++k) n = n * 10 + (sym[k] - '0');
        if (n > 9) return false;
        exp = sym[j] == '-' ? -n : n;
        sym = base;
      } else {
        // A pure number such as "1" or "100".
        auto d = Decimal::parse(sym);
        if (!d) return false;
        out->factor = *d;
        out->dims = {};
        out->ok = true;
        return true;
      }
    }
  }
  const Atom* atom = find_atom(sym);
  Decimal factor{1, 0};
  if (!atom) {
    for (const Prefix& p : kPrefixes) {
      size_t n = std::strlen(p.code);
      if (sym.size() > n && sym.substr(0, n) == p.code) {
        const Atom* a = find_atom(sym.substr(n));
        if (a && a->metric) {
          atom = a;
          factor = dec(p.factor);
          break;
        }
      }
    }
  }
  if (!atom) return false;
  factor = factor * dec(atom->factor);
  out->factor = power(factor, exp);
  for (int i = 0; i < 9; ++i) out->dims[size_t(i)] = int8_t(atom->dims[i] * exp);
  out->ok = true;
  return true;
}

// unit := ['/'] term (('.' | '/') term)* ; term := '(' unit ')' | symbol | annotation
struct UnitParser {
  std::string_view s;
  size_t pos = 0;
  int depth = 0;

  bool term(CanonicalUnit* out) {
    if (pos < s.size() && s[pos] == '(') {
      if (++depth > 8) return false;
      ++pos;
      if (!unit(out)) return false;
      if (pos >= s.size() || s[pos] != ')') return false;
      ++pos;
      --depth;
      return true;
    }
    size_t start = pos;
    while (pos < s.size() && s[pos] != '.' && s[pos] != '/' && s[pos] != '(' && s[pos] != ')') {
      if (s[pos] == '[') {
        while (pos < s.size() && s[pos] != ']') ++pos;
        if (pos >= s.size()) return false;
      }
      if (s[pos] == '{') break;
      ++pos;
    }
    std::string_view sym = s.substr(start, pos - start);
    // Annotations {...} mean nothing for conversion; alone they are "1".
    if (pos < s.size() && s[pos] == '{') {
      while (pos < s.size() && s[pos] != '}') ++pos;
      if (pos >= s.size()) return false;
      ++pos;
      if (sym.empty()) {
        *out = CanonicalUnit{};
        out->ok = true;
        return true;
      }
    }
    return simple_unit(sym, out);
  }

  bool unit(CanonicalUnit* out) {
    *out = CanonicalUnit{};
    out->ok = true;
    bool divide_next = false;
    if (pos < s.size() && s[pos] == '/') { divide_next = true; ++pos; }
    for (;;) {
      CanonicalUnit t;
      if (!term(&t)) return false;
      if (divide_next) {
        auto q = divide(out->factor, t.factor);
        if (!q) return false;
        out->factor = *q;
        for (size_t i = 0; i < 9; ++i) out->dims[i] = int8_t(out->dims[i] - t.dims[i]);
      } else {
        out->factor = out->factor * t.factor;
        for (size_t i = 0; i < 9; ++i) out->dims[i] = int8_t(out->dims[i] + t.dims[i]);
      }
      if (pos >= s.size() || s[pos] == ')') return true;
      if (s[pos] == '.') divide_next = false;
      else if (s[pos] == '/') divide_next = true;
      else return false;
      ++pos;
    }
  }
};

struct Keyword {
  const char* singular;
  const char* plural;
  const char* ucum;
};
const Keyword kKeywords[] = {
    {"year", "years", "a"},   {"month", "months", "mo"}, {"week", "weeks", "wk"},
    {"day", "days", "d"},     {"hour", "hours", "h"},    {"minute", "minutes", "min"},
    {"second", "seconds", "s"}, {"millisecond", "milliseconds", "ms"},
};

const Keyword* keyword(std::string_view w) {
  for (const Keyword& k : kKeywords)
    if (w == k.singular || w == k.plural) return &k;
  return nullptr;
}

// The UCUM unit to compute with; year/month keywords are kept apart because
// calendar years and months are not fixed lengths (FHIRPath N1 §5.6.2).
std::string effective_unit(const Quantity& q) {
  if (!q.calendar) return q.unit;
  const Keyword* k = keyword(q.unit);
  if (!k) return q.unit;
  if (std::strcmp(k->singular, "year") == 0 || std::strcmp(k->singular, "month") == 0)
    return std::string("{calendar-") + k->singular + "}";
  return k->ucum;
}

}  // namespace

bool is_calendar_keyword(std::string_view word) { return keyword(word) != nullptr; }

std::string calendar_to_ucum(std::string_view w) {
  const Keyword* k = keyword(w);
  return k ? k->ucum : std::string(w);
}

CanonicalUnit ucum_canonical(std::string_view unit) {
  CanonicalUnit out;
  if (unit.empty() || unit == "1") {
    out.ok = true;
    return out;
  }
  if (unit.size() > 200) return out;
  UnitParser p{unit};
  if (!p.unit(&out) || p.pos != unit.size()) out.ok = false;
  return out;
}

std::optional<Decimal> convert_quantity(const Quantity& q, std::string_view unit, bool calendar) {
  Quantity target{Decimal{}, std::string(unit), calendar};
  std::string from = effective_unit(q), to = effective_unit(target);
  if (from == to) return q.value;
  if (from.rfind("{calendar-", 0) == 0 || to.rfind("{calendar-", 0) == 0) return std::nullopt;
  CanonicalUnit a = ucum_canonical(from), b = ucum_canonical(to);
  if (!a.ok || !b.ok || a.dims != b.dims) return std::nullopt;
  auto r = divide(q.value * a.factor, b.factor);
  if (!r) return std::nullopt;
  // Keep the precision the conversion implies (4040 mg -> 4.040 g).
  int scale = q.value.scale;
  auto ratio = divide(a.factor, b.factor);
  if (ratio) scale += ratio->trimmed().scale;
  if (scale > Decimal::kMaxScale) scale = Decimal::kMaxScale;
  return r->rescaled(scale);
}

std::optional<int> compare_quantities(const Quantity& a, const Quantity& b) {
  auto bv = convert_quantity(b, a.unit, a.calendar);
  if (!bv) return std::nullopt;
  return compare(a.value, *bv);
}

bool quantities_equivalent(const Quantity& a, const Quantity& b) {
  auto bv = convert_quantity(b, a.unit, a.calendar);
  if (!bv) return false;
  int s = a.value.scale < b.value.scale ? a.value.scale : b.value.scale;
  return compare(a.value.rescaled(s), bv->rescaled(s)) == 0;
}

std::string Quantity::to_string() const {
  if (calendar) return value.to_string() + " " + unit;
  return value.to_string() + " '" + unit + "'";
}

Value Value::of_quantity(Quantity q) {
  Value v;
  v.kind_ = ValueKind::Quantity;
  v.u_.d = q.value;
  v.s_ = std::move(q.unit);
  v.calendar_ = q.calendar;
  return v;
}

std::optional<Temporal> add_duration(const Temporal& t, const Quantity& q, bool subtract, std::string* error) {
  std::string unit = q.calendar ? calendar_to_ucum(q.unit) : q.unit;
  if (!q.calendar && keyword(q.unit)) unit = calendar_to_ucum(q.unit);  // '1 'month'' written quoted
  // UCUM 'a' and 'mo' are averages, not calendar durations: refused (N1 §6.6).
  if (!q.calendar && !keyword(q.unit) && (unit == "a" || unit == "mo")) {
    *error = "cannot add the UCUM duration '" + q.unit + "' to a date/time; use a calendar duration (year, month)";
    return std::nullopt;
  }
  int64_t n = int64_t(q.value.truncated().mant);
  if (subtract) n = -n;
  Temporal r = t;
  bool is_time = t.kind == TemporalKind::Time;
  if (unit == "a" || unit == "mo") {
    if (is_time) { *error = "cannot add years or months to a Time"; return std::nullopt; }
    int64_t months = unit == "a" ? n * 12 : n;
    if (unit == "mo" && t.precision < Precision::Month) months = (n / 12) * 12;
    int64_t total = int64_t(t.year) * 12 + (t.month - 1) + months;
    int y = int(total / 12), m = int(total % 12) + 1;
    if (y < 1 || y > 9999) { *error = "date/time arithmetic out of range"; return std::nullopt; }
    r.year = int16_t(y);
    r.month = uint8_t(m);
    int dim = days_in_month(y, m);
    if (r.day > dim) r.day = uint8_t(dim);
    return r;
  }
  int64_t ms;
  if (unit == "wk") ms = n * 7 * 86400000LL;
  else if (unit == "d") ms = n * 86400000LL;
  else if (unit == "h") ms = n * 3600000LL;
  else if (unit == "min") ms = n * 60000LL;
  else if (unit == "s") ms = n * 1000LL;
  else if (unit == "ms") ms = n;
  else {
    *error = "'" + q.unit + "' is not a time unit usable in date/time arithmetic";
    return std::nullopt;
  }
  if (t.kind == TemporalKind::Date) {
    ms = (ms / 86400000LL) * 86400000LL;  // a Date moves by whole days
  }
  if (!is_time && t.precision < Precision::Day) {
    // Partial dates move by whole units of their precision (years or months).
    int64_t days = ms / 86400000LL;
    Quantity coarse{Decimal::from_int(t.precision == Precision::Year ? days / 365 : days / 30),
                    t.precision == Precision::Year ? "year" : "month", true};
    return add_duration(t, coarse, false, error);
  }
  int64_t base = to_epoch_ms(r) + ms;
  if (is_time) base = ((base % 86400000LL) + 86400000LL) % 86400000LL;
  from_epoch_ms(base, &r);
  if (!is_time && (r.year < 1 || r.year > 9999)) { *error = "date/time arithmetic out of range"; return std::nullopt; }
  return r;
}

}  // namespace espace::fhirpath
