// FHIR RESTful URL patterns (hl7.org/fhir/R4/http.html) as a table of data,
// and a matcher from (method, decoded path) to the interaction it names.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace espace::http {

enum class RouteKind {
  // Outcomes that are not interactions:
  NotFound,    // no pattern has this shape -> 404
  NotAllowed,  // the path is known but not with this method -> 405 with RouteMatch::allow
  BadId,       // the shape is known but a type / id / version / name is malformed -> 400
  // Interactions:
  Read,
  VRead,
  Update,
  Patch,
  Delete,
  HistoryInstance,
  HistoryType,
  HistorySystem,
  Create,
  SearchType,
  SearchSystem,
  SearchCompartment,
  Capabilities,
  Health,
  BatchOrTransaction,
  OperationSystem,
  OperationType,
  OperationInstance,
  ConditionalUpdate,
  ConditionalDelete,
  ConditionalPatch,
};

const char* route_kind_name(RouteKind kind);

// Methods as a bit set so a route can accept several.
enum Method : unsigned {
  kGet = 1u << 0,
  kPost = 1u << 1,
  kPut = 1u << 2,
  kPatch = 1u << 3,
  kDelete = 1u << 4,
};

// One row of the routing table. Pattern segments: a literal ("metadata",
// "_history", "_search", "*"), or a placeholder: {type}, {id}, {vid},
// {compartment} (a resource type name), ${op} (an operation name after '$').
struct Route {
  unsigned methods;
  std::string_view pattern;
  RouteKind kind;
};

// The table the server routes with, in priority order.
std::span<const Route> fhir_routes();

struct RouteMatch {
  RouteKind kind = RouteKind::NotFound;
  std::string type;         // {type}
  std::string id;           // {id}
  std::string version_id;   // {vid}
  std::string operation;    // ${op} without the '$'
  std::string compartment;  // {compartment}, or "*" for all compartment members
  std::string allow;        // NotAllowed: the Allow header value, e.g. "GET, POST"
  std::string error;        // NotFound / BadId: what was wrong, for the OperationOutcome
};

// Matches against `routes` (the FHIR table by default). `path` is the decoded
// path without the query string. A single trailing '/' is ignored.
RouteMatch match_route(std::string_view method, std::string_view path);
RouteMatch match_route(std::string_view method, std::string_view path, std::span<const Route> routes);

// Syntax checks used by the matcher, exposed for other layers.
bool is_resource_type_syntax(std::string_view s);  // [A-Z][A-Za-z]+
bool is_id_syntax(std::string_view s);             // [A-Za-z0-9\-\.]{1,64}

}  // namespace espace::http
