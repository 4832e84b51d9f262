#include <catch2/catch.hpp>

#include "espace/http/message.h"

using espace::http::Headers;
using espace::http::parse_target;
using espace::http::percent_decode;
using espace::http::percent_encode;

namespace {
using Query = std::vector<std::pair<std::string, std::string>>;
}

TEST_CASE("Headers compare names case-insensitively and keep repeats", "[message]") {
  Headers h;
  h.add("Content-Type", "application/fhir+json");
  h.add("X-Tag", "a");
  h.add("x-tag", "b");
  REQUIRE(h.find("content-type") != nullptr);
  CHECK(*h.find("CONTENT-TYPE") == "application/fhir+json");
  CHECK(h.get("X-TAG") == "a");
  CHECK(h.find("Accept") == nullptr);
  CHECK(h.get("Accept").empty());
  CHECK(h.items().size() == 3);

  h.set("X-TAG", "c");
  CHECK(h.items().size() == 2);
  CHECK(h.get("x-tag") == "c");

  h.remove("content-TYPE");
  CHECK(h.find("Content-Type") == nullptr);
  CHECK(h.items().size() == 1);
}

TEST_CASE("parse_target splits path and query and decodes both", "[message]") {
  std::string path;
  Query query;
  REQUIRE(parse_target("/Patient?name=Jos%C3%A9+Mar%C3%ADa&birthdate=ge2000-01-01&_count=10", &path, &query));
  CHECK(path == "/Patient");
  REQUIRE(query.size() == 3);
  CHECK(query[0] == std::make_pair(std::string("name"), std::string("José María")));
  CHECK(query[1] == std::make_pair(std::string("birthdate"), std::string("ge2000-01-01")));
  CHECK(query[2] == std::make_pair(std::string("_count"), std::string("10")));
}

TEST_CASE("parse_target keeps '+' in the path and repeated parameters in order", "[message]") {
  std::string path;
  Query query;
  REQUIRE(parse_target("/a+b/c%20d?x=1&x=2&flag&&y=", &path, &query));
  CHECK(path == "/a+b/c d");
  REQUIRE(query.size() == 4);
  CHECK(query[0].first == "x");
  CHECK(query[0].second == "1");
  CHECK(query[1].second == "2");
  CHECK(query[2].first == "flag");
  CHECK(query[2].second.empty());
  CHECK(query[3].first == "y");
  CHECK(query[3].second.empty());
}

TEST_CASE("parse_target decodes encoded separators inside query values", "[message]") {
  std::string path;
  Query query;
  REQUIRE(parse_target("/Observation?code=http%3A%2F%2Floinc.org%7C1234-5%26x%3Dy", &path, &query));
  REQUIRE(query.size() == 1);
  CHECK(query[0].second == "http://loinc.org|1234-5&x=y");
}

TEST_CASE("parse_target accepts absolute-form targets", "[message]") {
  std::string path;
  Query query;
  REQUIRE(parse_target("http://example.org:8080/fhir/Patient/1?_format=xml", &path, &query));
  CHECK(path == "/fhir/Patient/1");
  REQUIRE(query.size() == 1);
  CHECK(query[0].second == "xml");
  REQUIRE(parse_target("https://example.org", &path, &query));
  CHECK(path == "/");
}

TEST_CASE("parse_target rejects malformed targets", "[message]") {
  std::string path = "unchanged";
  Query query;
  CHECK_FALSE(parse_target("", &path, &query));
  CHECK_FALSE(parse_target("Patient/1", &path, &query));
  CHECK_FALSE(parse_target("*", &path, &query));
  CHECK_FALSE(parse_target("/Patient/%zz", &path, &query));
  CHECK_FALSE(parse_target("/Patient/%4", &path, &query));
  CHECK_FALSE(parse_target("/Patient?name=%", &path, &query));
  CHECK_FALSE(parse_target("/Patient?name=a%00b", &path, &query));
  CHECK_FALSE(parse_target("/Patient%00/1", &path, &query));
  CHECK_FALSE(parse_target(std::string_view("/Patient\0x", 10), &path, &query));
  // An encoded slash would smuggle a segment past the router.
  CHECK_FALSE(parse_target("/Patient/1%2F_history", &path, &query));
  CHECK_FALSE(parse_target("/Patient/1%2f_history", &path, &query));
}

TEST_CASE("percent_decode and percent_encode round-trip", "[message]") {
  const std::string original = "a b/c?d=e&f+g|h%i\xC3\xA9~._-";
  std::string encoded = percent_encode(original);
  CHECK(encoded == "a%20b%2Fc%3Fd%3De%26f%2Bg%7Ch%25i%C3%A9~._-");
  bool ok = false;
  CHECK(percent_decode(encoded, true, &ok) == original);
  CHECK(ok);
  CHECK(percent_decode("a+b", true, &ok) == "a b");
  CHECK(percent_decode("a+b", false, &ok) == "a+b");
  percent_decode("%G0", false, &ok);
  CHECK_FALSE(ok);
}
