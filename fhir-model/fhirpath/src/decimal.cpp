// Exact decimal arithmetic for FHIRPath Decimal (N1 §4.1: at least 28 digits
// of precision, the scale of the written value is significant).
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "espace/fhirpath/value.h"

namespace espace::fhirpath {

namespace {

using i128 = __int128;

i128 pow10(int n) {
  i128 r = 1;
  for (int i = 0; i < n; ++i) r *= 10;
  return r;
}

i128 abs128(i128 v) { return v < 0 ? -v : v; }

// Divides by 10^n rounding half away from zero.
i128 div_round(i128 v, int n) {
  if (n <= 0) return v;
  i128 p = pow10(n);
  i128 q = v / p, r = v % p;
  if (abs128(r) * 2 >= p) q += (v < 0 ? -1 : 1);
  return q;
}

// Keeps the mantissa within ~10^36 so that sums and products stay in range,
// giving up fractional digits first.
Decimal fit(Decimal d) {
  static const i128 limit = pow10(36);
  while (abs128(d.mant) > limit && d.scale > 0) {
    d.mant = div_round(d.mant, 1);
    --d.scale;
  }
  if (d.scale > Decimal::kMaxScale) {
    d.mant = div_round(d.mant, d.scale - Decimal::kMaxScale);
    d.scale = Decimal::kMaxScale;
  }
  return d;
}

int digits_of(i128 v) {
  v = abs128(v);
  int n = 1;
  while (v >= 10) { v /= 10; ++n; }
  return n;
}

}  // namespace

std::optional<Decimal> Decimal::parse(std::string_view s) {
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) { neg = s[i] == '-'; ++i; }
  if (i >= s.size()) return std::nullopt;
  i128 mant = 0;
  int scale = 0, sig = 0;
  bool any = false, point = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c >= '0' && c <= '9') {
      any = true;
      if (sig > 0 || c != '0') ++sig;
      if (sig > 36) return std::nullopt;
      mant = mant * 10 + (c - '0');
      if (point) ++scale;
    } else if (c == '.' && !point) {
      if (!any) return std::nullopt;
      point = true;
      if (i + 1 >= s.size()) return std::nullopt;
    } else if ((c == 'e' || c == 'E') && any) {
      int exp = 0;
      size_t j = i + 1;
      bool eneg = false;
      if (j < s.size() && (s[j] == '-' || s[j] == '+')) { eneg = s[j] == '-'; ++j; }
      if (j >= s.size()) return std::nullopt;
      for (; j < s.size(); ++j) {
        if (s[j] < '0' || s[j] > '9' || exp > 1000) return std::nullopt;
        exp = exp * 10 + (s[j] - '0');
      }
      if (eneg) scale += exp; else scale -= exp;
      if (scale < 0) {
        if (sig - scale > 36) return std::nullopt;
        mant *= pow10(-scale);
        scale = 0;
      }
      if (scale > kMaxScale + 36) return std::nullopt;
      break;
    } else {
      return std::nullopt;
    }
  }
  if (!any) return std::nullopt;
  Decimal d{neg ? -mant : mant, scale};
  return fit(d);
}

Decimal Decimal::from_double(double v, int digits) {
  if (!std::isfinite(v)) return Decimal{};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  auto d = parse(buf);
  return d ? d->trimmed() : Decimal{};
}

std::string Decimal::to_string() const {
  i128 a = abs128(mant);
  std::string digits;
  do { digits.insert(digits.begin(), char('0' + int(a % 10))); a /= 10; } while (a > 0);
  while (int(digits.size()) <= scale) digits.insert(digits.begin(), '0');
  if (scale > 0) digits.insert(digits.end() - scale, '.');
  if (mant < 0 || (mant == 0 && negative_zero)) digits.insert(digits.begin(), '-');
  return digits;
}

double Decimal::to_double() const {
  return std::strtod(to_string().c_str(), nullptr);
}

Decimal Decimal::rescaled(int new_scale) const {
  if (new_scale == scale) return *this;
  if (new_scale > scale) return fit(Decimal{mant * pow10(new_scale - scale), new_scale});
  return Decimal{div_round(mant, scale - new_scale), new_scale};
}

Decimal Decimal::trimmed() const {
  Decimal d = *this;
  while (d.scale > 0 && d.mant % 10 == 0) { d.mant /= 10; --d.scale; }
  return d;
}

Decimal Decimal::truncated() const { return Decimal{mant / pow10(scale), 0}; }

Decimal Decimal::floor() const {
  Decimal t = truncated();
  if (mant < 0 && mant % pow10(scale) != 0) t.mant -= 1;
  return t;
}

Decimal Decimal::ceiling() const {
  Decimal t = truncated();
  if (mant > 0 && mant % pow10(scale) != 0) t.mant += 1;
  return t;
}

int compare(const Decimal& a, const Decimal& b) {
  int s = a.scale > b.scale ? a.scale : b.scale;
  // Compare at a common scale; when that would overflow, fall back to doubles.
  if (digits_of(a.mant) + (s - a.scale) < 38 && digits_of(b.mant) + (s - b.scale) < 38) {
    i128 x = a.mant * pow10(s - a.scale), y = b.mant * pow10(s - b.scale);
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  double x = a.to_double(), y = b.to_double();
  return x < y ? -1 : (x > y ? 1 : 0);
}

Decimal operator+(const Decimal& a, const Decimal& b) {
  int s = a.scale > b.scale ? a.scale : b.scale;
  Decimal x = a.rescaled(s), y = b.rescaled(s);
  if (x.scale != y.scale) {  // one side lost digits in fit(): align downwards
    s = x.scale < y.scale ? x.scale : y.scale;
    x = x.rescaled(s);
    y = y.rescaled(s);
  }
  return fit(Decimal{x.mant + y.mant, s});
}

Decimal operator-(const Decimal& a) { return Decimal{-a.mant, a.scale}; }
Decimal operator-(const Decimal& a, const Decimal& b) { return a + (-b); }

Decimal operator*(const Decimal& a, const Decimal& b) {
  Decimal x = a, y = b;
  // Shed fractional digits until the product fits in 128 bits.
  while (digits_of(x.mant) + digits_of(y.mant) > 37) {
    Decimal& big = (x.scale >= y.scale) ? x : y;
    if (big.scale == 0) break;
    big.mant = div_round(big.mant, 1);
    --big.scale;
  }
  return fit(Decimal{x.mant * y.mant, x.scale + y.scale});
}

std::optional<Decimal> divide(const Decimal& a, const Decimal& b) {
  if (b.mant == 0) return std::nullopt;
  // Result scale: 8 decimals at least (like common implementations), more when
  // the operands carry more.
  int target = a.scale > b.scale ? a.scale : b.scale;
  if (target < 8) target = 8;
  // a/b = (a.mant / b.mant) * 10^(b.scale - a.scale); we want mant at `target`+1 for rounding.
  int k = target + 1 - a.scale + b.scale;
  i128 num = a.mant;
  i128 den = b.mant;
  while (k > 0 && digits_of(num) < 37) { num *= 10; --k; }
  while (k > 0) { den = den / 10; --k; if (den == 0) return std::nullopt; }
  while (k < 0) { den *= 10; ++k; }
  i128 q = num / den;
  Decimal r{q, target + 1};
  r = r.rescaled(target);
  return r.trimmed().scale == 0 ? r.trimmed().rescaled(0) : r.trimmed();
}

}  // namespace espace::fhirpath
