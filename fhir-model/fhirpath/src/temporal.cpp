// Date, DateTime and Time with partial precision (N1 §4.1 and §6.1 on
// comparison of values with different precision).
#include <cstdio>

#include "espace/fhirpath/value.h"
#include "temporal_ops.h"

namespace espace::fhirpath {

namespace {

bool digits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

// Parses "hh[:mm[:ss[.fff]]]" at pos into t; returns the position after it, or npos.
size_t parse_clock(std::string_view s, size_t pos, Temporal* t, Precision base) {
  int v;
  if (!digits(s, pos, 2, &v) || v > 23) return std::string_view::npos;
  t->hour = uint8_t(v);
  t->precision = base;  // Hour
  pos += 2;
  if (pos < s.size() && s[pos] == ':') {
    if (!digits(s, pos + 1, 2, &v) || v > 59) return std::string_view::npos;
    t->minute = uint8_t(v);
    t->precision = Precision::Minute;
    pos += 3;
    if (pos < s.size() && s[pos] == ':') {
      if (!digits(s, pos + 1, 2, &v) || v > 60) return std::string_view::npos;
      t->second = uint8_t(v > 59 ? 59 : v);
      t->precision = Precision::Second;
      pos += 3;
      if (pos < s.size() && s[pos] == '.') {
        ++pos;
        size_t start = pos;
        int ms = 0, n = 0;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
          if (n < 3) { ms = ms * 10 + (s[pos] - '0'); ++n; }
          ++pos;
        }
        if (pos == start) return std::string_view::npos;
        while (n < 3) { ms *= 10; ++n; }
        t->millisecond = uint16_t(ms);
        t->precision = Precision::Millisecond;
      }
    }
  }
  return pos;
}

size_t parse_date_part(std::string_view s, Temporal* t) {
  int v;
  if (!digits(s, 0, 4, &v)) return std::string_view::npos;
  t->year = int16_t(v);
  t->precision = Precision::Year;
  size_t pos = 4;
  if (pos < s.size() && s[pos] == '-') {
    if (!digits(s, pos + 1, 2, &v) || v < 1 || v > 12) return std::string_view::npos;
    t->month = uint8_t(v);
    t->precision = Precision::Month;
    pos += 3;
    if (pos < s.size() && s[pos] == '-') {
      if (!digits(s, pos + 1, 2, &v) || v < 1 || v > days_in_month(t->year, t->month))
        return std::string_view::npos;
      t->day = uint8_t(v);
      t->precision = Precision::Day;
      pos += 3;
    }
  }
  return pos;
}

void two(std::string& out, int v) {
  out.push_back(char('0' + v / 10));
  out.push_back(char('0' + v % 10));
}

}  // namespace

int days_in_month(int year, int month) {
  static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month == 2 && ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0)) return 29;
  return d[(month - 1) % 12];
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void civil_from_days(int64_t z, int* y, int* m, int* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t yy = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = int(doy - (153 * mp + 2) / 5 + 1);
  *m = int(mp < 10 ? mp + 3 : mp - 9);
  *y = int(yy + (*m <= 2));
}

int64_t to_epoch_ms(const Temporal& t) {
  int64_t days = t.kind == TemporalKind::Time ? 0 : days_from_civil(t.year, t.month, t.day);
  return ((days * 24 + t.hour) * 60 + t.minute) * 60000 + int64_t(t.second) * 1000 + t.millisecond;
}

void from_epoch_ms(int64_t ms, Temporal* t) {
  int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
  int64_t rest = ms - days * 86400000;
  if (t->kind != TemporalKind::Time) {
    int y, m, d;
    civil_from_days(days, &y, &m, &d);
    t->year = int16_t(y);
    t->month = uint8_t(m);
    t->day = uint8_t(d);
  }
  t->hour = uint8_t(rest / 3600000);
  t->minute = uint8_t(rest / 60000 % 60);
  t->second = uint8_t(rest / 1000 % 60);
  t->millisecond = uint16_t(rest % 1000);
}

std::optional<Temporal> Temporal::parse_date(std::string_view s) {
  Temporal t;
  t.kind = TemporalKind::Date;
  size_t pos = parse_date_part(s, &t);
  if (pos != s.size()) return std::nullopt;
  return t;
}

std::optional<Temporal> Temporal::parse_datetime(std::string_view s) {
  Temporal t;
  t.kind = TemporalKind::DateTime;
  size_t pos = parse_date_part(s, &t);
  if (pos == std::string_view::npos) return std::nullopt;
  if (pos < s.size() && s[pos] == 'T') {
    ++pos;
    if (pos < s.size() && t.precision == Precision::Day && s[pos] >= '0' && s[pos] <= '9') {
      pos = parse_clock(s, pos, &t, Precision::Hour);
      if (pos == std::string_view::npos) return std::nullopt;
    }
  }
  if (pos < s.size() && t.precision >= Precision::Hour) {
    if (s[pos] == 'Z') {
      t.has_tz = true;
      ++pos;
    } else if (s[pos] == '+' || s[pos] == '-') {
      int h, m;
      if (!digits(s, pos + 1, 2, &h) || pos + 3 >= s.size() || s[pos + 3] != ':' || !digits(s, pos + 4, 2, &m) ||
          h > 14 || m > 59)
        return std::nullopt;
      t.has_tz = true;
      t.tz_minutes = int16_t((s[pos] == '-' ? -1 : 1) * (h * 60 + m));
      pos += 6;
    }
  }
  if (pos != s.size()) return std::nullopt;
  return t;
}

std::optional<Temporal> Temporal::parse_time(std::string_view s) {
  Temporal t;
  t.kind = TemporalKind::Time;
  t.year = 0;
  size_t pos = parse_clock(s, 0, &t, Precision::Hour);
  if (pos != s.size()) return std::nullopt;
  return t;
}

std::string Temporal::to_string() const {
  std::string out;
  if (kind != TemporalKind::Time) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04d", int(year));
    out = buf;
    if (precision >= Precision::Month) { out.push_back('-'); two(out, month); }
    if (precision >= Precision::Day) { out.push_back('-'); two(out, day); }
    if (kind == TemporalKind::Date || precision < Precision::Hour) return out;
    out.push_back('T');
  }
  two(out, hour);
  if (precision >= Precision::Minute) { out.push_back(':'); two(out, minute); }
  if (precision >= Precision::Second) { out.push_back(':'); two(out, second); }
  if (precision >= Precision::Millisecond) {
    char buf[8];
    std::snprintf(buf, sizeof buf, ".%03d", int(millisecond));
    out += buf;
  }
  if (kind == TemporalKind::DateTime && has_tz) {
    if (tz_minutes == 0) {
      out.push_back('Z');
    } else {
      int m = tz_minutes < 0 ? -tz_minutes : tz_minutes;
      out.push_back(tz_minutes < 0 ? '-' : '+');
      two(out, m / 60);
      out.push_back(':');
      two(out, m % 60);
    }
  }
  return out;
}

Value Value::of_temporal(const Temporal& t) {
  Value v;
  v.kind_ = t.kind == TemporalKind::Date ? ValueKind::Date
            : t.kind == TemporalKind::DateTime ? ValueKind::DateTime : ValueKind::Time;
  v.u_.t = t;
  return v;
}

// Seconds and milliseconds count as one precision (N1: "seconds are a decimal").
static int level(Precision p) { return p == Precision::Millisecond ? int(Precision::Second) : int(p); }

std::optional<int> compare(const Temporal& a0, const Temporal& b0) {
  Temporal a = a0, b = b0;
  bool timed = a.precision >= Precision::Hour && b.precision >= Precision::Hour;
  if (timed && a.kind != TemporalKind::Time) {
    if (a.has_tz != b.has_tz) return std::nullopt;
    if (a.has_tz && a.tz_minutes != b.tz_minutes) {
      from_epoch_ms(to_epoch_ms(a) - int64_t(a.tz_minutes) * 60000, &a);
      from_epoch_ms(to_epoch_ms(b) - int64_t(b.tz_minutes) * 60000, &b);
    }
  }
  int la = level(a.precision), lb = level(b.precision);
  int common = la < lb ? la : lb;
  int64_t ca[6] = {a.year, a.month, a.day, a.hour, a.minute, int64_t(a.second) * 1000 + a.millisecond};
  int64_t cb[6] = {b.year, b.month, b.day, b.hour, b.minute, int64_t(b.second) * 1000 + b.millisecond};
  int first = a.kind == TemporalKind::Time ? int(Precision::Hour) : int(Precision::Year);
  for (int lv = first; lv <= common; ++lv) {
    if (ca[lv - 1] != cb[lv - 1]) return ca[lv - 1] < cb[lv - 1] ? -1 : 1;
  }
  if (la != lb) return std::nullopt;
  return 0;
}

}  // namespace espace::fhirpath
