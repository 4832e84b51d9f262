// Routing as data: the FHIR REST URL patterns and a two-pass matcher.
//
// Pass one matches strictly (every placeholder has valid syntax); pass two
// matches placeholders loosely (any segment that is not a '_' or '$' keyword),
// so "/Patient/not!an!id" is reported as a bad id rather than an unknown path.
#include "espace/http/routes.h"

#include <array>

namespace espace::http {

namespace {

constexpr Route kFhirRoutes[] = {
    {kGet, "/metadata", RouteKind::Capabilities},
    {kGet, "/health", RouteKind::Health},
    {kGet, "/_history", RouteKind::HistorySystem},
    {kPost, "/", RouteKind::BatchOrTransaction},
    {kGet, "/", RouteKind::SearchSystem},
    {kGet | kPost, "/${op}", RouteKind::OperationSystem},
    {kGet, "/{type}", RouteKind::SearchType},
    {kPost, "/{type}", RouteKind::Create},
    {kPut, "/{type}", RouteKind::ConditionalUpdate},
    {kDelete, "/{type}", RouteKind::ConditionalDelete},
    {kPatch, "/{type}", RouteKind::ConditionalPatch},
    {kPost, "/{type}/_search", RouteKind::SearchType},
    {kGet, "/{type}/_history", RouteKind::HistoryType},
    {kGet | kPost, "/{type}/${op}", RouteKind::OperationType},
    {kGet, "/{type}/{id}", RouteKind::Read},
    {kPut, "/{type}/{id}", RouteKind::Update},
    {kPatch, "/{type}/{id}", RouteKind::Patch},
    {kDelete, "/{type}/{id}", RouteKind::Delete},
    {kGet, "/{type}/{id}/_history", RouteKind::HistoryInstance},
    {kGet | kPost, "/{type}/{id}/${op}", RouteKind::OperationInstance},
    {kGet, "/{type}/{id}/*", RouteKind::SearchCompartment},
    {kGet, "/{type}/{id}/{compartment}", RouteKind::SearchCompartment},
    {kGet, "/{type}/{id}/_history/{vid}", RouteKind::VRead},
};

constexpr size_t kMaxSegments = 8;  // longer than any pattern: no need to split further
constexpr size_t kMaxEchoed = 64;   // cap on how much of a bad segment goes back in the error

unsigned method_bit(std::string_view method) {
  if (method == "GET") return kGet;
  if (method == "POST") return kPost;
  if (method == "PUT") return kPut;
  if (method == "PATCH") return kPatch;
  if (method == "DELETE") return kDelete;
  return 0;
}

std::string allow_value(unsigned methods) {
  static constexpr std::array<std::pair<unsigned, const char*>, 5> kNames = {
      {{kGet, "GET"}, {kPost, "POST"}, {kPut, "PUT"}, {kPatch, "PATCH"}, {kDelete, "DELETE"}}};
  std::string out;
  for (const auto& [bit, name] : kNames) {
    if (methods & bit) {
      if (!out.empty()) out += ", ";
      out += name;
    }
  }
  return out;
}

// A path split into its segments, without allocating.
struct Segments {
  std::array<std::string_view, kMaxSegments> items;
  size_t size = 0;
  std::string_view operator[](size_t i) const { return items[i]; }
};

// Splits "/a/b/c" into {"a","b","c"}; false for an empty segment ("//") or too many.
bool split_segments(std::string_view path, Segments* out) {
  out->size = 0;
  if (path.empty() || path.front() != '/') return false;
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  if (path == "/") return true;
  size_t pos = 1;
  while (true) {
    size_t slash = path.find('/', pos);
    std::string_view seg = path.substr(pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos);
    if (seg.empty()) return false;
    if (out->size == kMaxSegments) return false;
    out->items[out->size++] = seg;
    if (slash == std::string_view::npos) return true;
    pos = slash + 1;
  }
}

// Segments of a pattern: "/" has none, "/{type}/{id}" two.
size_t pattern_segment_count(std::string_view pattern) {
  if (pattern.size() <= 1) return 0;
  size_t n = 0;
  for (char c : pattern) n += c == '/';
  return n;
}

bool is_operation_name_syntax(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z'))) return false;
  for (char c : s) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

bool is_keyword(std::string_view seg) { return !seg.empty() && (seg.front() == '_' || seg.front() == '$'); }

std::string echo(std::string_view seg) {
  std::string s(seg.substr(0, kMaxEchoed));
  if (seg.size() > kMaxEchoed) s += "...";
  return s;
}

enum class Placeholder { Literal, Type, Id, VersionId, Compartment, Operation };

Placeholder classify(std::string_view pattern_segment) {
  if (pattern_segment == "{type}") return Placeholder::Type;
  if (pattern_segment == "{id}") return Placeholder::Id;
  if (pattern_segment == "{vid}") return Placeholder::VersionId;
  if (pattern_segment == "{compartment}") return Placeholder::Compartment;
  if (pattern_segment == "${op}") return Placeholder::Operation;
  return Placeholder::Literal;
}

// Checks one segment against one pattern segment. Strict mode validates the
// syntax; loose mode only the shape. On a strict match fills `m`.
bool segment_matches(std::string_view pat, std::string_view seg, bool strict, RouteMatch* m, std::string* why) {
  switch (classify(pat)) {
    case Placeholder::Literal:
      return pat == seg;
    case Placeholder::Operation:
      if (seg.size() < 1 || seg.front() != '$') return false;
      if (!strict) return true;
      if (!is_operation_name_syntax(seg.substr(1))) {
        if (why) *why = "'" + echo(seg) + "' is not a valid operation name";
        return false;
      }
      if (m) m->operation = std::string(seg.substr(1));
      return true;
    case Placeholder::Type:
    case Placeholder::Compartment: {
      if (is_keyword(seg)) return false;
      if (!strict) return true;
      if (!is_resource_type_syntax(seg)) {
        if (why) *why = "'" + echo(seg) + "' is not a valid resource type name";
        return false;
      }
      if (m) (classify(pat) == Placeholder::Type ? m->type : m->compartment) = std::string(seg);
      return true;
    }
    case Placeholder::Id:
    case Placeholder::VersionId: {
      if (is_keyword(seg)) return false;
      if (!strict) return true;
      if (!is_id_syntax(seg)) {
        if (why) {
          *why = "'" + echo(seg) + "' is not a valid " +
                 (classify(pat) == Placeholder::Id ? "resource id" : "version id") +
                 " (1-64 characters from A-Z a-z 0-9 - .)";
        }
        return false;
      }
      if (m) (classify(pat) == Placeholder::Id ? m->id : m->version_id) = std::string(seg);
      return true;
    }
  }
  return false;
}

bool route_matches(const Route& route, const Segments& segs, bool strict, RouteMatch* m, std::string* why) {
  // Walks the pattern's segments in place: no allocation per route tried.
  std::string_view pattern = route.pattern;
  if (pattern.empty() || pattern.front() != '/') return false;
  // Most routes differ from the path in length: rejected before any syntax check.
  if (pattern_segment_count(pattern) != segs.size) return false;
  pattern.remove_prefix(1);
  size_t i = 0;
  while (!pattern.empty()) {
    size_t slash = pattern.find('/');
    std::string_view pat = pattern.substr(0, slash);
    pattern = slash == std::string_view::npos ? std::string_view() : pattern.substr(slash + 1);
    if (i >= segs.size || !segment_matches(pat, segs[i], strict, m, why)) return false;
    ++i;
  }
  return i == segs.size;
}

}  // namespace

const char* route_kind_name(RouteKind kind) {
  switch (kind) {
    case RouteKind::NotFound: return "not-found";
    case RouteKind::NotAllowed: return "not-allowed";
    case RouteKind::BadId: return "bad-id";
    case RouteKind::Read: return "read";
    case RouteKind::VRead: return "vread";
    case RouteKind::Update: return "update";
    case RouteKind::Patch: return "patch";
    case RouteKind::Delete: return "delete";
    case RouteKind::HistoryInstance: return "history-instance";
    case RouteKind::HistoryType: return "history-type";
    case RouteKind::HistorySystem: return "history-system";
    case RouteKind::Create: return "create";
    case RouteKind::SearchType: return "search-type";
    case RouteKind::SearchSystem: return "search-system";
    case RouteKind::SearchCompartment: return "search-compartment";
    case RouteKind::Capabilities: return "capabilities";
    case RouteKind::Health: return "health";
    case RouteKind::BatchOrTransaction: return "batch-or-transaction";
    case RouteKind::OperationSystem: return "operation-system";
    case RouteKind::OperationType: return "operation-type";
    case RouteKind::OperationInstance: return "operation-instance";
    case RouteKind::ConditionalUpdate: return "conditional-update";
    case RouteKind::ConditionalDelete: return "conditional-delete";
    case RouteKind::ConditionalPatch: return "conditional-patch";
  }
  return "unknown";
}

std::span<const Route> fhir_routes() { return kFhirRoutes; }

bool is_resource_type_syntax(std::string_view s) {
  if (s.size() < 2 || s.size() > 64) return false;
  if (!(s[0] >= 'A' && s[0] <= 'Z')) return false;
  for (char c : s) {
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return false;
  }
  return true;
}

bool is_id_syntax(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

RouteMatch match_route(std::string_view method, std::string_view path) {
  return match_route(method, path, fhir_routes());
}

RouteMatch match_route(std::string_view method, std::string_view path, std::span<const Route> routes) {
  RouteMatch result;
  Segments segs;
  if (!split_segments(path, &segs)) {
    result.error = "the path has an empty segment or too many segments";
    return result;
  }
  const unsigned bit = method_bit(method);
  unsigned allowed = 0;
  for (const Route& route : routes) {
    if (!route_matches(route, segs, /*strict=*/true, nullptr, nullptr)) continue;
    if (route.methods & bit) {
      RouteMatch m;
      route_matches(route, segs, true, &m, nullptr);
      m.kind = route.kind;
      if (m.kind == RouteKind::SearchCompartment && m.compartment.empty()) m.compartment = "*";
      return m;
    }
    allowed |= route.methods;
  }
  if (allowed) {
    result.kind = RouteKind::NotAllowed;
    result.allow = allow_value(allowed);
    result.error = "method " + echo(method) + " is not allowed here; allowed: " + result.allow;
    return result;
  }
  // No strict match: if the shape is known, say which segment is malformed.
  // Prefer a route that accepts the method so the message fits the request.
  const Route* shaped = nullptr;
  for (const Route& route : routes) {
    if (!route_matches(route, segs, /*strict=*/false, nullptr, nullptr)) continue;
    if (!shaped || ((route.methods & bit) && !(shaped->methods & bit))) shaped = &route;
  }
  if (shaped) {
    std::string why;
    route_matches(*shaped, segs, true, nullptr, &why);
    result.kind = RouteKind::BadId;
    result.error = why.empty() ? "malformed path" : why;
    return result;
  }
  result.error = "unknown path";
  return result;
}

}  // namespace espace::http
