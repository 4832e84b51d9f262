// Regular expressions for matches(), matchesFull() and replaceMatches().
//
// FHIRPath patterns are written in the ECMAScript/PCRE style; they are
// translated to POSIX extended syntax and run by the C library's matcher,
// which works on state sets: no backtracking, so no exponential blow-up on
// patterns like '^[^\s]+(\s[^\s]+)*$' (used by R4 itself) and no recursion
// per input character (std::regex overflows the stack on long inputs).
// Unsupported: back-references and look-around (refused with an error),
// lazy quantifiers (run greedy, which gives the same answer for matches()).
#include "regex_posix.h"

#include <regex.h>

namespace espace::fhirpath {

namespace {

constexpr size_t kMaxPattern = 2000;

void append_utf8(std::string& out, unsigned cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

bool hex4(std::string_view p, size_t i, unsigned* cp) {
  if (i + 4 > p.size()) return false;
  unsigned v = 0;
  for (size_t k = i; k < i + 4; ++k) {
    char c = p[k];
    v *= 16;
    if (c >= '0' && c <= '9') v += unsigned(c - '0');
    else if (c >= 'a' && c <= 'f') v += unsigned(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v += unsigned(c - 'A' + 10);
    else return false;
  }
  *cp = v;
  return true;
}

// A bracket expression "[...]" starting at p[i] == '['; sets *end past ']'.
bool translate_class(std::string_view p, size_t i, size_t* end, std::string* out, std::string* error) {
  std::string body;
  bool negate = false, close_bracket = false, dash = false;
  ++i;
  if (i < p.size() && p[i] == '^') { negate = true; ++i; }
  bool first = true;
  for (; i < p.size(); ++i) {
    char c = p[i];
    if (c == ']' && !first) break;
    first = false;
    if (c == '\\' && i + 1 < p.size()) {
      char e = p[++i];
      switch (e) {
        case 'd': body += "0-9"; break;
        case 's': body += "[:space:]"; break;
        case 'w': body += "[:alnum:]_"; break;
        case 'D': case 'S': case 'W':
          *error = "negated class shorthand inside [] is not supported";
          return false;
        case 'n': body.push_back('\n'); break;
        case 't': body.push_back('\t'); break;
        case 'r': body.push_back('\r'); break;
        case 'f': body.push_back('\f'); break;
        case ']': close_bracket = true; break;
        case '-': dash = true; break;
        case 'u': {
          unsigned cp;
          if (!hex4(p, i + 1, &cp)) { *error = "invalid \\u escape"; return false; }
          append_utf8(body, cp);
          i += 4;
          break;
        }
        default: body.push_back(e);  // \\ \. \/ ... are the character itself
      }
      continue;
    }
    if (c == ']') { close_bracket = true; continue; }
    if (c == '-' && (i + 1 < p.size() && p[i + 1] == ']')) { dash = true; continue; }
    if (c == '-' && body.empty()) { dash = true; continue; }
    body.push_back(c);
  }
  if (i >= p.size()) {
    *error = "unterminated [ in the regular expression";
    return false;
  }
  *end = i + 1;
  // POSIX: ']' must come first and '-' last to be literal.
  *out += '[';
  if (negate) *out += '^';
  if (close_bracket) *out += ']';
  *out += body;
  if (dash) *out += '-';
  *out += ']';
  return true;
}

bool translate(std::string_view p, std::string* out, std::string* error) {
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '[') {
      size_t end;
      if (!translate_class(p, i, &end, out, error)) return false;
      i = end - 1;
      continue;
    }
    if (c == '\\') {
      if (i + 1 >= p.size()) { *error = "trailing backslash in the regular expression"; return false; }
      char e = p[++i];
      switch (e) {
        case 'd': *out += "[0-9]"; break;
        case 'D': *out += "[^0-9]"; break;
        case 's': *out += "[[:space:]]"; break;
        case 'S': *out += "[^[:space:]]"; break;
        case 'w': *out += "[[:alnum:]_]"; break;
        case 'W': *out += "[^[:alnum:]_]"; break;
        case 'b': *out += "\\b"; break;
        case 'B': *out += "\\B"; break;
        case 'n': *out += '\n'; break;
        case 't': *out += '\t'; break;
        case 'r': *out += '\r'; break;
        case 'f': *out += '\f'; break;
        case 'u': {
          unsigned cp;
          if (!hex4(p, i + 1, &cp)) { *error = "invalid \\u escape"; return false; }
          std::string bytes;
          append_utf8(bytes, cp);
          for (char b : bytes) {
            if (std::string_view(".[]()*+?{}|^$\\").find(b) != std::string_view::npos) *out += '\\';
            *out += b;
          }
          i += 4;
          break;
        }
        default:
          if (e >= '1' && e <= '9') { *error = "back-references are not supported"; return false; }
          if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z')) {
            *error = std::string("unsupported escape \\") + e;
            return false;
          }
          *out += '\\';
          *out += e;
      }
      continue;
    }
    if (c == '(' && i + 1 < p.size() && p[i + 1] == '?') {
      if (i + 2 < p.size() && p[i + 2] == ':') {
        *out += '(';
        i += 2;
        continue;
      }
      *error = "look-around and inline flags are not supported";
      return false;
    }
    // Lazy quantifiers (*? +? ?? }?) run greedy.
    if (c == '?' && i > 0 && (p[i - 1] == '*' || p[i - 1] == '+' || p[i - 1] == '?' || p[i - 1] == '}') &&
        !(i > 1 && p[i - 2] == '\\')) {
      continue;
    }
    *out += c;
  }
  return true;
}

}  // namespace

struct Regex::Impl {
  regex_t re;
  int groups = 0;
};

Regex::~Regex() {
  if (impl_) {
    regfree(&impl_->re);
    delete impl_;
  }
}

bool Regex::compile(std::string_view pattern, bool full, std::string* error) {
  if (pattern.size() > kMaxPattern) {
    *error = "regular expression longer than " + std::to_string(kMaxPattern) + " characters";
    return false;
  }
  std::string ere;
  if (!translate(pattern, &ere, error)) return false;
  if (full) ere = "^(" + ere + ")$";
  auto* impl = new Impl();
  int rc = regcomp(&impl->re, ere.c_str(), REG_EXTENDED);
  if (rc != 0) {
    char buf[256];
    regerror(rc, &impl->re, buf, sizeof buf);
    *error = std::string("invalid regular expression: ") + buf;
    delete impl;
    return false;
  }
  impl->groups = int(impl->re.re_nsub);
  impl_ = impl;
  return true;
}

// REG_STARTEND (glibc) lets the subject hold NULs and avoids copying.
static bool exec_at(const regex_t& re, const std::string& s, size_t from, regmatch_t* m, size_t nm) {
  m[0].rm_so = regoff_t(from);
  m[0].rm_eo = regoff_t(s.size());
  int flags = REG_STARTEND | (from > 0 ? REG_NOTBOL : 0);
  return regexec(&re, s.c_str(), nm, m, flags) == 0;
}

bool Regex::search(const std::string& subject) const {
  regmatch_t m[1];
  return exec_at(impl_->re, subject, 0, m, 1);
}

std::string Regex::replace_all(const std::string& subject, const std::string& replacement) const {
  std::string out;
  std::vector<regmatch_t> m(size_t(impl_->groups) + 1);
  size_t pos = 0;
  while (pos <= subject.size()) {
    if (!exec_at(impl_->re, subject, pos, m.data(), m.size())) break;
    size_t so = size_t(m[0].rm_so), eo = size_t(m[0].rm_eo);
    out.append(subject, pos, so - pos);
    // $n in the replacement stands for group n.
    for (size_t i = 0; i < replacement.size(); ++i) {
      char c = replacement[i];
      if (c == '$' && i + 1 < replacement.size() && replacement[i + 1] >= '0' && replacement[i + 1] <= '9') {
        size_t g = size_t(replacement[++i] - '0');
        if (g < m.size() && m[g].rm_so >= 0) out.append(subject, size_t(m[g].rm_so), size_t(m[g].rm_eo - m[g].rm_so));
        continue;
      }
      out.push_back(c);
    }
    if (eo == so) {  // empty match: keep one character and move on
      if (so < subject.size()) out.push_back(subject[so]);
      pos = so + 1;
    } else {
      pos = eo;
    }
  }
  if (pos < subject.size()) out.append(subject, pos, std::string::npos);
  return out;
}

}  // namespace espace::fhirpath
