#include <catch2/catch.hpp>

#include "espace/http/routes.h"

using espace::http::match_route;
using espace::http::RouteKind;
using espace::http::RouteMatch;

TEST_CASE("system-level routes", "[routes]") {
  CHECK(match_route("GET", "/metadata").kind == RouteKind::Capabilities);
  CHECK(match_route("GET", "/health").kind == RouteKind::Health);
  CHECK(match_route("GET", "/").kind == RouteKind::SearchSystem);
  CHECK(match_route("POST", "/").kind == RouteKind::BatchOrTransaction);
  CHECK(match_route("GET", "/_history").kind == RouteKind::HistorySystem);
  RouteMatch op = match_route("POST", "/$validate-code");
  CHECK(op.kind == RouteKind::OperationSystem);
  CHECK(op.operation == "validate-code");
  CHECK(match_route("GET", "/$meta").kind == RouteKind::OperationSystem);
}

TEST_CASE("type-level routes", "[routes]") {
  RouteMatch m = match_route("GET", "/Patient");
  CHECK(m.kind == RouteKind::SearchType);
  CHECK(m.type == "Patient");
  CHECK(match_route("POST", "/Patient").kind == RouteKind::Create);
  CHECK(match_route("PUT", "/Patient").kind == RouteKind::ConditionalUpdate);
  CHECK(match_route("DELETE", "/Patient").kind == RouteKind::ConditionalDelete);
  CHECK(match_route("PATCH", "/Patient").kind == RouteKind::ConditionalPatch);
  CHECK(match_route("POST", "/Patient/_search").kind == RouteKind::SearchType);
  CHECK(match_route("GET", "/Observation/_history").kind == RouteKind::HistoryType);
  m = match_route("GET", "/Patient/$match");
  CHECK(m.kind == RouteKind::OperationType);
  CHECK(m.type == "Patient");
  CHECK(m.operation == "match");
  // A trailing slash is tolerated.
  CHECK(match_route("GET", "/Patient/").kind == RouteKind::SearchType);
}

TEST_CASE("instance-level routes and captures", "[routes]") {
  RouteMatch m = match_route("GET", "/Patient/pat-1.a");
  CHECK(m.kind == RouteKind::Read);
  CHECK(m.type == "Patient");
  CHECK(m.id == "pat-1.a");
  CHECK(match_route("PUT", "/Patient/1").kind == RouteKind::Update);
  CHECK(match_route("PATCH", "/Patient/1").kind == RouteKind::Patch);
  CHECK(match_route("DELETE", "/Patient/1").kind == RouteKind::Delete);
  CHECK(match_route("GET", "/Patient/1/_history").kind == RouteKind::HistoryInstance);
  m = match_route("GET", "/Patient/1/_history/3");
  CHECK(m.kind == RouteKind::VRead);
  CHECK(m.id == "1");
  CHECK(m.version_id == "3");
  m = match_route("POST", "/Patient/1/$everything");
  CHECK(m.kind == RouteKind::OperationInstance);
  CHECK(m.operation == "everything");
  m = match_route("GET", "/Patient/1/Observation");
  CHECK(m.kind == RouteKind::SearchCompartment);
  CHECK(m.compartment == "Observation");
  m = match_route("GET", "/Patient/1/*");
  CHECK(m.kind == RouteKind::SearchCompartment);
  CHECK(m.compartment == "*");
  // Words that look like keywords elsewhere are fine as ids.
  m = match_route("GET", "/Patient/metadata");
  CHECK(m.kind == RouteKind::Read);
  CHECK(m.id == "metadata");
}

TEST_CASE("malformed types and ids are reported as bad ids", "[routes]") {
  RouteMatch m = match_route("GET", "/Patient/bad!id");
  CHECK(m.kind == RouteKind::BadId);
  CHECK(m.error.find("bad!id") != std::string::npos);
  CHECK(match_route("GET", "/Patient/" + std::string(65, 'a')).kind == RouteKind::BadId);
  CHECK(match_route("GET", "/Patient/" + std::string(64, 'a')).kind == RouteKind::Read);
  CHECK(match_route("PUT", "/Patient/a_b").kind == RouteKind::BadId);
  CHECK(match_route("GET", "/patient").kind == RouteKind::BadId);
  CHECK(match_route("GET", "/Pat1ent/1").kind == RouteKind::BadId);
  CHECK(match_route("GET", "/Patient/1/_history/v 1").kind == RouteKind::BadId);
  CHECK(match_route("GET", "/Patient/1/observation").kind == RouteKind::BadId);
  CHECK(match_route("POST", "/$").kind == RouteKind::BadId);
  CHECK(match_route("POST", "/Patient/$bad op").kind == RouteKind::BadId);
}

TEST_CASE("unknown paths are not found", "[routes]") {
  CHECK(match_route("GET", "/_unknown").kind == RouteKind::NotFound);
  CHECK(match_route("GET", "/Patient/_unknown").kind == RouteKind::NotFound);
  CHECK(match_route("GET", "/Patient/1/_history/2/extra").kind == RouteKind::NotFound);
  CHECK(match_route("GET", "/Patient//1").kind == RouteKind::NotFound);
  CHECK(match_route("GET", "").kind == RouteKind::NotFound);
  CHECK(match_route("GET", "/a/b/c/d/e/f/g/h/i/j").kind == RouteKind::NotFound);
}

TEST_CASE("a known path with the wrong method is not allowed, with Allow", "[routes]") {
  RouteMatch m = match_route("DELETE", "/metadata");
  CHECK(m.kind == RouteKind::NotAllowed);
  CHECK(m.allow == "GET");
  m = match_route("GET", "/Patient/_search");
  CHECK(m.kind == RouteKind::NotAllowed);
  CHECK(m.allow == "POST");
  m = match_route("POST", "/Patient/1");
  CHECK(m.kind == RouteKind::NotAllowed);
  CHECK(m.allow == "GET, PUT, PATCH, DELETE");
  m = match_route("OPTIONS", "/Patient");
  CHECK(m.kind == RouteKind::NotAllowed);
  CHECK(m.allow == "GET, POST, PUT, PATCH, DELETE");
  m = match_route("DELETE", "/Patient/1/_history/2");
  CHECK(m.kind == RouteKind::NotAllowed);
  CHECK(m.allow == "GET");
  CHECK(match_route("PUT", "/").allow == "GET, POST");
  CHECK(match_route("delete", "/Patient/1").kind == RouteKind::NotAllowed);  // methods are case-sensitive
}

TEST_CASE("a custom table is matched the same way", "[routes]") {
  using namespace espace::http;
  static constexpr Route kTable[] = {{kGet, "/things/{id}", RouteKind::Read}, {kPost, "/things", RouteKind::Create}};
  RouteMatch m = match_route("GET", "/things/x1", kTable);
  CHECK(m.kind == RouteKind::Read);
  CHECK(m.id == "x1");
  CHECK(match_route("GET", "/things", kTable).kind == RouteKind::NotAllowed);
  CHECK(match_route("GET", "/Patient", kTable).kind == RouteKind::NotFound);
}

TEST_CASE("syntax helpers", "[routes]") {
  using namespace espace::http;
  CHECK(is_resource_type_syntax("Patient"));
  CHECK_FALSE(is_resource_type_syntax("P"));
  CHECK_FALSE(is_resource_type_syntax("patient"));
  CHECK_FALSE(is_resource_type_syntax("Patient1"));
  CHECK(is_id_syntax("A-z.0"));
  CHECK_FALSE(is_id_syntax(""));
  CHECK_FALSE(is_id_syntax("a/b"));
  CHECK_FALSE(is_id_syntax(std::string(65, '1')));
}
