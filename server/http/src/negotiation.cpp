// Content negotiation: _format / Accept for responses, Content-Type for bodies.
#include "espace/http/negotiation.h"

#include <cstdlib>

namespace espace::http {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}


// Parameters that FHIR and HTTP give a meaning to; others are ignored.
bool params_acceptable(const MediaType& m) {
  if (const std::string* cs = m.param("charset")) {
    std::string v = lower(*cs);
    if (v != "utf-8" && v != "utf8") return false;
  }
  if (const std::string* v = m.param("fhirversion")) {
    if (*v != "4.0" && v->rfind("4.0.", 0) != 0) return false;
  }
  return true;
}

struct Candidate {
  const char* type;
  const char* subtype;
  Format format;
};
constexpr Candidate kCandidates[] = {
    {"application", "fhir+json", Format::Json}, {"application", "json", Format::Json},
    {"application", "fhir+xml", Format::Xml},   {"application", "xml", Format::Xml},
    {"text", "xml", Format::Xml},
};

bool fhir_format_of(const MediaType& m, Format* out) {
  for (const Candidate& c : kCandidates) {
    if (m.type == c.type && m.subtype == c.subtype) {
      *out = c.format;
      return true;
    }
  }
  return false;
}

fhir::Status not_acceptable(std::string diagnostics) {
  return fhir::Status::error(fhir::ErrorCategory::NotAcceptable, "not-supported", std::move(diagnostics));
}

fhir::Status unsupported_media(std::string diagnostics) {
  return fhir::Status::error(fhir::ErrorCategory::UnsupportedMedia, "not-supported", std::move(diagnostics));
}

std::string echo(std::string_view s) {
  constexpr size_t kMax = 100;
  std::string out(s.substr(0, kMax));
  if (s.size() > kMax) out += "...";
  return out;
}

}  // namespace

const char* content_type(Format f) {
  return f == Format::Xml ? "application/fhir+xml; charset=utf-8" : "application/fhir+json; charset=utf-8";
}

const std::string* MediaType::param(std::string_view name) const {
  for (const auto& [n, v] : params) {
    if (n == name) return &v;
  }
  return nullptr;
}

bool parse_media_type(std::string_view text, MediaType* out) {
  MediaType m;
  size_t semi = text.find(';');
  std::string_view main = trim(text.substr(0, semi));
  size_t slash = main.find('/');
  if (slash == std::string_view::npos) return false;
  std::string_view type = main.substr(0, slash), subtype = main.substr(slash + 1);
  if (!is_token(type) || !is_token(subtype)) return false;
  m.type = lower(type);
  m.subtype = lower(subtype);
  std::string_view rest = semi == std::string_view::npos ? std::string_view() : text.substr(semi + 1);
  while (true) {
    rest = trim(rest);
    if (rest.empty()) break;
    if (rest.front() == ';') {  // tolerate empty parameters ("a/b;;c=d", trailing ';')
      rest.remove_prefix(1);
      continue;
    }
    size_t eq = rest.find('=');
    if (eq == std::string_view::npos) return false;
    std::string_view name = trim(rest.substr(0, eq));
    rest = trim(rest.substr(eq + 1));
    std::string_view value;
    if (!rest.empty() && rest.front() == '"') {
      size_t close = rest.find('"', 1);
      if (close == std::string_view::npos) return false;
      value = rest.substr(1, close - 1);
      rest = trim(rest.substr(close + 1));
      if (!rest.empty() && rest.front() != ';') return false;
    } else {
      size_t next = rest.find(';');
      value = trim(rest.substr(0, next));
      rest = next == std::string_view::npos ? std::string_view() : rest.substr(next);
    }
    if (!is_token(name)) return false;
    m.params.emplace_back(lower(name), std::string(value));
  }
  *out = std::move(m);
  return true;
}

bool format_of_media_type(std::string_view text, Format* out) {
  std::string_view t = trim(text);
  std::string lowered = lower(t);
  if (lowered == "json") {
    *out = Format::Json;
    return true;
  }
  if (lowered == "xml") {
    *out = Format::Xml;
    return true;
  }
  MediaType m;
  if (!parse_media_type(t, &m) || !params_acceptable(m)) return false;
  return fhir_format_of(m, out);
}

fhir::Status choose_response_format(const std::string* format_param, std::string_view accept, Format* out) {
  if (format_param && !trim(*format_param).empty()) {
    // An unencoded '+' in "_format=application/fhir+json" arrives as a space
    // after query decoding; restore it in the type part.
    std::string value(trim(*format_param));
    size_t semi = value.find(';');
    for (size_t i = 0; i < value.size() && i < semi; ++i) {
      if (value[i] == ' ') value[i] = '+';
    }
    if (format_of_media_type(value, out)) return fhir::Status::ok();
    return not_acceptable("_format '" + echo(*format_param) + "' is not supported; use json or xml");
  }
  if (trim(accept).empty()) {
    *out = Format::Json;
    return fhir::Status::ok();
  }
  // For each concrete type the most specific matching range decides its q
  // (RFC 9110 12.5.1); a format's score is its best type's.
  struct Score {
    double q = -1;
    int specificity = 0;
  };
  constexpr size_t kCount = sizeof(kCandidates) / sizeof(kCandidates[0]);
  Score per_type[kCount];
  bool any_range = false;
  size_t pos = 0;
  while (pos <= accept.size()) {
    size_t comma = accept.find(',', pos);
    std::string_view item = accept.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    pos = comma == std::string_view::npos ? accept.size() + 1 : comma + 1;
    MediaType range;
    if (trim(item).empty() || !parse_media_type(item, &range)) continue;
    double q = 1.0;
    if (const std::string* qs = range.param("q")) {
      char* end = nullptr;
      q = std::strtod(qs->c_str(), &end);
      if (qs->empty() || end != qs->c_str() + qs->size() || !(q >= 0 && q <= 1)) continue;
    }
    any_range = true;
    if (!params_acceptable(range)) continue;
    for (size_t i = 0; i < kCount; ++i) {
      const Candidate& c = kCandidates[i];
      int specificity = 0;
      if (range.type == c.type && range.subtype == c.subtype) {
        specificity = 3;
      } else if (range.type == c.type && range.subtype == "*") {
        specificity = 2;
      } else if (range.type == "*" && range.subtype == "*") {
        specificity = 1;
      }
      if (specificity == 0) continue;
      Score& s = per_type[i];
      if (specificity > s.specificity || (specificity == s.specificity && q > s.q)) {
        s.q = q;
        s.specificity = specificity;
      }
    }
  }
  Score json, xml;
  for (size_t i = 0; i < kCount; ++i) {
    Score& s = kCandidates[i].format == Format::Json ? json : xml;
    const Score& t = per_type[i];
    if (t.q > s.q || (t.q == s.q && t.specificity > s.specificity)) s = t;
  }
  if (!any_range) {
    *out = Format::Json;  // an unparseable Accept is treated as absent
    return fhir::Status::ok();
  }
  if (json.q <= 0 && xml.q <= 0) {
    return not_acceptable("none of the media types in Accept is supported; use application/fhir+json or "
                          "application/fhir+xml");
  }
  bool pick_xml = xml.q > json.q || (xml.q == json.q && xml.specificity > json.specificity);
  *out = pick_xml ? Format::Xml : Format::Json;
  return fhir::Status::ok();
}

fhir::Status negotiate_response(const Request& request, ResponseFormat* out) {
  const std::string* format_param = nullptr;
  const std::string* pretty_param = nullptr;
  for (const auto& [name, value] : request.query) {
    if (name == "_format" && !format_param) format_param = &value;
    if (name == "_pretty" && !pretty_param) pretty_param = &value;
  }
  ResponseFormat result;
  if (pretty_param) {
    if (*pretty_param == "true") {
      result.pretty = true;
    } else if (*pretty_param != "false") {
      return fhir::Status::error(fhir::ErrorCategory::Invalid, "value",
                                 "_pretty must be true or false, not '" + echo(*pretty_param) + "'");
    }
  }
  fhir::Status st = choose_response_format(format_param, request.headers.get("Accept"), &result.format);
  if (!st) return st;
  *out = result;
  return fhir::Status::ok();
}

fhir::Status request_body_kind(std::string_view content_type_header, BodyKind* out) {
  if (trim(content_type_header).empty()) {
    return unsupported_media("a request body needs a Content-Type, e.g. application/fhir+json");
  }
  MediaType m;
  if (!parse_media_type(content_type_header, &m)) {
    return unsupported_media("Content-Type '" + echo(content_type_header) + "' is malformed");
  }
  if (!params_acceptable(m)) {
    return unsupported_media("Content-Type '" + echo(content_type_header) +
                             "' asks for a charset other than UTF-8 or a FHIR version other than 4.0");
  }
  Format f;
  if (fhir_format_of(m, &f)) {
    *out = f == Format::Json ? BodyKind::Json : BodyKind::Xml;
    return fhir::Status::ok();
  }
  if (m.type == "application" && m.subtype == "json-patch+json") {
    *out = BodyKind::JsonPatch;
    return fhir::Status::ok();
  }
  if (m.type == "application" && m.subtype == "x-www-form-urlencoded") {
    *out = BodyKind::FormUrlEncoded;
    return fhir::Status::ok();
  }
  return unsupported_media("Content-Type '" + echo(content_type_header) + "' is not supported");
}

}  // namespace espace::http
