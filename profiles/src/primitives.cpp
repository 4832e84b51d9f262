// Primitive value formats, written out by hand from the R4 regexes
// (StructureDefinition-<type>.json, extension "regex" on <type>.value) so
// that checking is linear, allocation-free and cannot blow the stack; the
// tests compare each checker with the spec's regex on sample values. Dates
// are also checked against the calendar, which no regex does, and strings
// against the control-character rule of datatypes.html#string.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "espace/profiles/validator.h"

namespace espace::profiles {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
// ECMAScript \s restricted to ASCII (the spec's regexes are applied to ASCII
// structure; non-ASCII text is allowed in strings).
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Reads exactly n digits at s[*i]; returns false otherwise.
bool digits(std::string_view s, size_t* i, size_t n, int* value) {
  if (*i + n > s.size()) return false;
  int v = 0;
  for (size_t k = 0; k < n; ++k) {
    char c = s[*i + k];
    if (!is_digit(c)) return false;
    v = v * 10 + (c - '0');
  }
  *i += n;
  *value = v;
  return true;
}

bool leap(int year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

int days_in_month(int year, int month) {
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && leap(year) ? 29 : kDays[month - 1];
}

// YYYY, YYYY-MM or YYYY-MM-DD at s[*i]; *parts = 1, 2 or 3.
std::string date_part(std::string_view s, size_t* i, int* parts) {
  int year, month, day;
  if (!digits(s, i, 4, &year)) return "the year must have four digits";
  if (year == 0) return "year 0000 does not exist";
  *parts = 1;
  if (*i == s.size() || s[*i] != '-') return "";
  ++*i;
  if (!digits(s, i, 2, &month)) return "the month must have two digits";
  if (month < 1 || month > 12) return "month " + std::to_string(month) + " does not exist";
  *parts = 2;
  if (*i == s.size() || s[*i] != '-') return "";
  ++*i;
  if (!digits(s, i, 2, &day)) return "the day must have two digits";
  if (day < 1 || day > days_in_month(year, month))
    return "day " + std::to_string(day) + " does not exist in " + std::to_string(year) + "-" +
           (month < 10 ? "0" : "") + std::to_string(month);
  *parts = 3;
  return "";
}

// hh:mm:ss(.fff)? at s[*i].
std::string time_part(std::string_view s, size_t* i) {
  int h, m, sec;
  if (!digits(s, i, 2, &h) || *i == s.size() || s[*i] != ':') return "the time must be hh:mm:ss";
  ++*i;
  if (!digits(s, i, 2, &m) || *i == s.size() || s[*i] != ':') return "the time must be hh:mm:ss";
  ++*i;
  if (!digits(s, i, 2, &sec)) return "the time must be hh:mm:ss";
  if (h > 23) return "hour " + std::to_string(h) + " does not exist";
  if (m > 59) return "minute " + std::to_string(m) + " does not exist";
  if (sec > 60) return "second " + std::to_string(sec) + " does not exist";
  if (*i < s.size() && s[*i] == '.') {
    ++*i;
    size_t start = *i;
    while (*i < s.size() && is_digit(s[*i])) ++*i;
    if (*i == start) return "a decimal point in the seconds must be followed by digits";
  }
  return "";
}

// Z or +hh:mm / -hh:mm (up to 14:00) ending the value.
std::string zone_part(std::string_view s, size_t* i) {
  if (*i == s.size()) return "a time zone (Z or +hh:mm) is required with a time";
  if (s[*i] == 'Z') {
    ++*i;
    return "";
  }
  if (s[*i] != '+' && s[*i] != '-') return "a time zone (Z or +hh:mm) is required with a time";
  ++*i;
  int h, m;
  if (!digits(s, i, 2, &h) || *i == s.size() || s[*i] != ':' || (++*i, !digits(s, i, 2, &m)))
    return "the time zone must be +hh:mm or -hh:mm";
  if (h > 14 || m > 59 || (h == 14 && m != 0)) return "time zone offset out of range";
  return "";
}

std::string end(std::string_view s, size_t i) {
  return i == s.size() ? std::string() : "unexpected text after position " + std::to_string(i);
}

std::string check_date(std::string_view s) {
  size_t i = 0;
  int parts;
  if (std::string e = date_part(s, &i, &parts); !e.empty()) return e;
  return end(s, i);
}

std::string check_date_time(std::string_view s, bool instant) {
  size_t i = 0;
  int parts;
  if (std::string e = date_part(s, &i, &parts); !e.empty()) return e;
  if (i == s.size()) return instant && parts < 3 ? "an instant needs a full date and time" : (instant ? "an instant needs a time" : "");
  if (s[i] != 'T') return end(s, i);
  if (parts < 3) return "a time needs a full date";
  ++i;
  if (std::string e = time_part(s, &i); !e.empty()) return e;
  if (std::string e = zone_part(s, &i); !e.empty()) return e;
  return end(s, i);
}

std::string check_time(std::string_view s) {
  size_t i = 0;
  if (std::string e = time_part(s, &i); !e.empty()) return e;
  return end(s, i);
}

// -?(0|[1-9][0-9]*) with optional sign handling by the caller.
bool natural(std::string_view s, size_t* i) {
  if (*i >= s.size() || !is_digit(s[*i])) return false;
  if (s[*i] == '0') {
    ++*i;
    return true;
  }
  while (*i < s.size() && is_digit(s[*i])) ++*i;
  return true;
}

std::string check_integer(std::string_view s, bool allow_sign, bool allow_zero) {
  size_t i = 0;
  if (allow_sign && i < s.size() && s[i] == '-') ++i;
  if (!natural(s, &i) || i != s.size()) return "not an integer (digits without leading zeros)";
  if (!allow_zero && s == "0") return "must be 1 or more";
  return "";
}

std::string check_decimal(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  if (!natural(s, &i)) return "not a decimal number";
  if (i < s.size() && s[i] == '.') {
    ++i;
    size_t start = i;
    while (i < s.size() && is_digit(s[i])) ++i;
    if (i == start) return "a decimal point must be followed by digits";
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    size_t start = i;
    while (i < s.size() && is_digit(s[i])) ++i;
    if (i == start) return "an exponent needs digits";
  }
  return i == s.size() ? "" : "not a decimal number";
}

std::string check_string(std::string_view s) {
  if (s.empty()) return "must not be empty";
  bool control = false;  // no early exit: the loop vectorises
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    control |= u < 0x20 && c != '\t' && c != '\r' && c != '\n';
  }
  if (control) return "contains a control character";
  return "";
}

std::string check_code(std::string_view s) {
  if (s.empty()) return "must not be empty";
  if (is_space(s.front()) || is_space(s.back())) return "must not start or end with white space";
  for (size_t i = 0; i + 1 < s.size(); ++i)
    if (is_space(s[i]) && is_space(s[i + 1])) return "must not contain several white space characters in a row";
  return "";
}

std::string check_id(std::string_view s) {
  if (s.empty() || s.size() > 64) return "must be 1 to 64 characters";
  for (char c : s)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '.'))
      return "may only contain letters, digits, '-' and '.'";
  return "";
}

std::string check_uri(std::string_view s) {
  // White space is all at or below ' ': one comparison per character in the common case.
  for (char c : s)
    if (static_cast<unsigned char>(c) <= ' ' && is_space(c)) return "must not contain white space";
  return "";
}

std::string check_oid(std::string_view s) {
  constexpr std::string_view kPrefix = "urn:oid:";
  if (!s.starts_with(kPrefix)) return "must start with urn:oid:";
  size_t i = kPrefix.size();
  if (i >= s.size() || s[i] < '0' || s[i] > '2') return "the first arc must be 0, 1 or 2";
  ++i;
  int arcs = 0;
  while (i < s.size()) {
    if (s[i] != '.') return "arcs are numbers separated by '.'";
    ++i;
    if (!natural(s, &i)) return "arcs are numbers without leading zeros";
    ++arcs;
  }
  return arcs ? "" : "needs at least two arcs";
}

std::string check_uuid(std::string_view s) {
  constexpr std::string_view kPrefix = "urn:uuid:";
  if (!s.starts_with(kPrefix)) return "must start with urn:uuid:";
  std::string_view u = s.substr(kPrefix.size());
  if (u.size() != 36) return "must be urn:uuid: and 36 characters (lower-case hex 8-4-4-4-12)";
  for (size_t i = 0; i < u.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    char c = u[i];
    if (dash ? c != '-' : !(is_digit(c) || (c >= 'a' && c <= 'f')))
      return "must be urn:uuid: and lower-case hex 8-4-4-4-12";
  }
  return "";
}

// Classes of the bytes in base64Binary values (a table: documents of
// megabytes are checked here).
enum Base64Class : uint8_t { kNotBase64 = 0, kBase64Char = 1, kBase64Space = 2 };
const std::array<uint8_t, 256>& base64_classes() {
  static const std::array<uint8_t, 256> table = [] {
    std::array<uint8_t, 256> t{};
    for (int c = 0; c < 256; ++c) {
      const char ch = static_cast<char>(c);
      if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || is_digit(ch) || ch == '+' || ch == '/' || ch == '=')
        t[c] = kBase64Char;
      else if (is_space(ch))
        t[c] = kBase64Space;
    }
    return t;
  }();
  return table;
}

// Length of the run of whole 16-byte blocks of base64 characters at the
// start of s (SSE2; 0 elsewhere): a document's data is checked here.
size_t base64_block_run(std::string_view s) {
  size_t n = 0;
#if defined(__SSE2__)
  auto in_range = [](__m128i x, char low, char high) {
    return _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(static_cast<char>(low - 1))),
                         _mm_cmplt_epi8(x, _mm_set1_epi8(static_cast<char>(high + 1))));
  };
  for (; s.size() - n >= 16; n += 16) {
    // Bytes from 0x80 are negative as signed and fall in no range.
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + n));
    const __m128i symbols = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('+')),
                                                      _mm_cmpeq_epi8(x, _mm_set1_epi8('/'))),
                                         _mm_cmpeq_epi8(x, _mm_set1_epi8('=')));
    const __m128i ok = _mm_or_si128(_mm_or_si128(in_range(x, 'A', 'Z'), in_range(x, 'a', 'z')),
                                    _mm_or_si128(in_range(x, '0', '9'), symbols));
    if (_mm_movemask_epi8(ok) != 0xFFFF) break;
  }
#endif
  return n;
}

std::string check_base64(std::string_view s) {
  // (\s*([0-9a-zA-Z\+/=]){4}\s*)+ : white space only between groups of four.
  const std::array<uint8_t, 256>& cls = base64_classes();
  auto class_at = [&](size_t i) { return cls[static_cast<unsigned char>(s[i])]; };
  size_t in_group = 0, groups = 0;
  for (size_t i = 0; i < s.size();) {
    if (in_group == 0) {
      const size_t run = base64_block_run(s.substr(i));
      i += run;
      groups += run / 4;
      if (i == s.size()) break;
    }
    // A whole group of four at once (the common case: unbroken base64).
    if (in_group == 0 && s.size() - i >= 4 &&
        (class_at(i) & class_at(i + 1) & class_at(i + 2) & class_at(i + 3)) == kBase64Char) {
      i += 4;
      ++groups;
      continue;
    }
    const uint8_t c = class_at(i++);
    if (c == kBase64Space) {
      if (in_group != 0) return "white space inside a group of four base64 characters";
      continue;
    }
    if (c == kNotBase64) return "not a base64 character";
    if (++in_group == 4) {
      in_group = 0;
      ++groups;
    }
  }
  if (in_group != 0) return "base64 length must be a multiple of four";
  return groups ? "" : "must not be empty";
}

}  // namespace

std::string check_primitive(std::string_view type, std::string_view v) {
  switch (type.empty() ? 0 : type[0]) {
    case 'b':
      if (type == "boolean") return v == "true" || v == "false" ? "" : "must be true or false";
      if (type == "base64Binary") return check_base64(v);
      break;
    case 'c':
      if (type == "code") return check_code(v);
      if (type == "canonical") return check_uri(v);
      break;
    case 'd':
      if (type == "date") return check_date(v);
      if (type == "dateTime") return check_date_time(v, false);
      if (type == "decimal") return check_decimal(v);
      break;
    case 'i':
      if (type == "integer") return check_integer(v, true, true);
      if (type == "id") return check_id(v);
      if (type == "instant") return check_date_time(v, true);
      break;
    case 'm':
      if (type == "markdown") return check_string(v);
      break;
    case 'o':
      if (type == "oid") return check_oid(v);
      break;
    case 'p':
      if (type == "positiveInt") return check_integer(v, false, false);
      break;
    case 's':
      if (type == "string") return check_string(v);
      break;
    case 't':
      if (type == "time") return check_time(v);
      break;
    case 'u':
      if (type == "uri" || type == "url") return check_uri(v);
      if (type == "unsignedInt") return check_integer(v, false, true);
      if (type == "uuid") return check_uuid(v);
      break;
    default:
      break;
  }
  return "";
}

}  // namespace espace::profiles
