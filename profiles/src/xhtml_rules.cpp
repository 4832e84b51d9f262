// Narrative content rules txt-1 and txt-2 (hl7.org/fhir/R4/narrative.html).
// The R4 expressions are just htmlChecks(), which the FHIRPath engine leaves
// to the validator. Input is the div as re-serialised by libxml2 after
// check_xhtml_div(): well-formed, character references decoded, so a tag
// scanner sees what a browser would.
#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

#include "xhtml_rules.h"

namespace espace::profiles {

namespace {

// HTML 4.0 chapters 7-11 and 15 formatting elements, <a> and <img>
// (what txt-1 allows). Document-level and active elements (script, style,
// form controls, object, iframe, base, link, meta) are not in the list.
constexpr std::string_view kAllowedElements[] = {
    "a",     "abbr",   "acronym", "address", "area",  "b",      "bdo",   "big",   "blockquote", "br",
    "caption", "cite", "code",    "col",     "colgroup", "dd",  "del",   "dfn",   "div",        "dl",
    "dt",    "em",     "h1",      "h2",      "h3",    "h4",     "h5",    "h6",    "hr",         "i",
    "img",   "ins",    "kbd",     "li",      "map",   "ol",     "p",     "pre",   "q",          "s",
    "samp",  "small",  "span",    "strike",  "strong", "sub",   "sup",   "table", "tbody",      "td",
    "tfoot", "th",     "thead",   "tr",      "tt",    "u",      "ul",    "var",   "font",       "center"};

bool allowed_element(std::string_view name) {
  return std::find(std::begin(kAllowedElements), std::end(kAllowedElements), name) != std::end(kAllowedElements);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A URL scheme that runs code or smuggles content.
bool dangerous_url(std::string_view element, std::string_view value) {
  std::string v;
  for (char c : value)
    if (!std::isspace(static_cast<unsigned char>(c)) && static_cast<unsigned char>(c) >= 0x20) v.push_back(c);
  v = lower(v);
  if (v.starts_with("javascript:") || v.starts_with("vbscript:")) return true;
  if (v.starts_with("data:")) return !(element == "img" && v.starts_with("data:image/"));
  return false;
}

bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ':' || c == '.'; }

}  // namespace

std::string narrative_rule_violation(std::string_view x, bool* has_content) {
  *has_content = false;
  size_t i = 0;
  int depth = 0;  // inside the outer div: text counts as content
  while (i < x.size()) {
    char c = x[i];
    if (c != '<') {
      if (!std::isspace(static_cast<unsigned char>(c)) && depth > 0) *has_content = true;
      ++i;
      continue;
    }
    if (x.compare(i, 4, "<!--") == 0) {
      size_t end = x.find("-->", i + 4);
      i = end == std::string_view::npos ? x.size() : end + 3;
      continue;
    }
    if (x.compare(i, 9, "<![CDATA[") == 0) {
      size_t end = x.find("]]>", i + 9);
      std::string_view body = x.substr(i + 9, (end == std::string_view::npos ? x.size() : end) - i - 9);
      if (std::any_of(body.begin(), body.end(), [](char ch) { return !std::isspace(static_cast<unsigned char>(ch)); }))
        *has_content = true;
      i = end == std::string_view::npos ? x.size() : end + 3;
      continue;
    }
    if (x.compare(i, 2, "<?") == 0 || x.compare(i, 2, "<!") == 0) {
      return "processing instructions and declarations are not allowed in a narrative";
    }
    bool closing = i + 1 < x.size() && x[i + 1] == '/';
    size_t p = i + (closing ? 2 : 1);
    size_t start = p;
    while (p < x.size() && name_char(x[p])) ++p;
    std::string name = lower(x.substr(start, p - start));
    if (size_t colon = name.find(':'); colon != std::string::npos) name = name.substr(colon + 1);
    if (closing) {
      --depth;
      size_t end = x.find('>', p);
      i = end == std::string_view::npos ? x.size() : end + 1;
      continue;
    }
    if (!allowed_element(name)) return "element <" + name + "> is not allowed in a narrative";
    if (name == "img" || name == "br" || name == "hr" || name == "area" || name == "col") *has_content = true;
    // Attributes up to '>' or '/>'.
    bool self_closing = false;
    while (p < x.size()) {
      while (p < x.size() && std::isspace(static_cast<unsigned char>(x[p]))) ++p;
      if (p >= x.size()) break;
      if (x[p] == '>') {
        ++p;
        break;
      }
      if (x[p] == '/' && p + 1 < x.size() && x[p + 1] == '>') {
        self_closing = true;
        p += 2;
        break;
      }
      size_t a = p;
      while (p < x.size() && name_char(x[p])) ++p;
      if (p == a) return "malformed attribute in <" + name + ">";
      std::string attr = lower(x.substr(a, p - a));
      while (p < x.size() && std::isspace(static_cast<unsigned char>(x[p]))) ++p;
      std::string_view value;
      if (p < x.size() && x[p] == '=') {
        ++p;
        while (p < x.size() && std::isspace(static_cast<unsigned char>(x[p]))) ++p;
        if (p < x.size() && (x[p] == '"' || x[p] == '\'')) {
          char q = x[p];
          size_t end = x.find(q, p + 1);
          if (end == std::string_view::npos) return "unterminated attribute value in <" + name + ">";
          value = x.substr(p + 1, end - p - 1);
          p = end + 1;
        }
      }
      if (attr.starts_with("on")) return "event attribute '" + attr + "' is not allowed in a narrative";
      if ((attr == "href" || attr == "src" || attr == "xlink:href" || attr == "action" || attr == "background") &&
          dangerous_url(name, value))
        return "attribute '" + attr + "' of <" + name + "> uses a URL scheme that is not allowed in a narrative";
    }
    if (!self_closing) ++depth;
    i = p;
  }
  return "";
}

}  // namespace espace::profiles
