#include <catch2/catch.hpp>

#include <optional>

#include "espace/http/negotiation.h"

using espace::fhir::ErrorCategory;
using espace::http::BodyKind;
using espace::http::choose_response_format;
using espace::http::Format;

namespace {

// The chosen format, or nullopt when the negotiation fails with 406.
std::optional<Format> choose(const char* format_param, std::string_view accept) {
  std::string param = format_param ? format_param : "";
  Format f = Format::Json;
  espace::fhir::Status st = choose_response_format(format_param ? &param : nullptr, accept, &f);
  if (!st) {
    REQUIRE(st.category() == ErrorCategory::NotAcceptable);
    return std::nullopt;
  }
  return f;
}

std::optional<BodyKind> body_kind(std::string_view content_type) {
  BodyKind k = BodyKind::Json;
  espace::fhir::Status st = espace::http::request_body_kind(content_type, &k);
  if (!st) {
    REQUIRE(st.category() == ErrorCategory::UnsupportedMedia);
    return std::nullopt;
  }
  return k;
}

}  // namespace

TEST_CASE("_format values", "[negotiation]") {
  struct Row {
    const char* param;
    std::optional<Format> expected;
  };
  const Row rows[] = {
      {"json", Format::Json},
      {"JSON", Format::Json},
      {"xml", Format::Xml},
      {"application/fhir+json", Format::Json},
      {"application/fhir json", Format::Json},  // an unencoded '+' decoded to a space
      {"application/json", Format::Json},
      {"application/fhir+xml", Format::Xml},
      {"application/xml", Format::Xml},
      {"text/xml", Format::Xml},
      {"application/fhir+json; charset=utf-8", Format::Json},
      {"application/fhir+xml;fhirVersion=4.0", Format::Xml},
      {"application/fhir+json; fhirVersion=3.0", std::nullopt},
      {"application/fhir+json; charset=iso-8859-1", std::nullopt},
      {"html", std::nullopt},
      {"text/html", std::nullopt},
      {"turtle", std::nullopt},
  };
  for (const Row& row : rows) {
    INFO(row.param);
    CHECK(choose(row.param, "") == row.expected);
  }
}

TEST_CASE("_format wins over Accept", "[negotiation]") {
  CHECK(choose("xml", "application/fhir+json") == Format::Xml);
  CHECK(choose("json", "application/fhir+xml") == Format::Json);
  CHECK(choose("text/html", "application/fhir+json") == std::nullopt);
}

TEST_CASE("Accept with q-values and wildcards", "[negotiation]") {
  struct Row {
    const char* accept;
    std::optional<Format> expected;
  };
  const Row rows[] = {
      {"", Format::Json},
      {"*/*", Format::Json},
      {"application/fhir+xml", Format::Xml},
      {"application/fhir+json", Format::Json},
      {"application/xml", Format::Xml},
      {"text/xml", Format::Xml},
      {"application/json", Format::Json},
      {"APPLICATION/FHIR+XML", Format::Xml},
      {"application/fhir+xml, */*", Format::Xml},  // explicit beats wildcard at equal q
      {"application/fhir+json;q=0.5, application/fhir+xml;q=0.9", Format::Xml},
      {"application/fhir+json;q=0.9, application/fhir+xml;q=0.5", Format::Json},
      {"text/*", Format::Xml},
      {"application/*", Format::Json},
      {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", Format::Xml},
      {"application/json;q=0, */*", Format::Json},  // fhir+json is still acceptable via */*
      {"application/fhir+json;q=0, application/json;q=0, */*;q=0.1", Format::Xml},
      {"*/*;q=0", std::nullopt},
      {"text/html", std::nullopt},
      {"image/png, text/plain;q=0.5", std::nullopt},
      {"application/fhir+json; fhirVersion=3.0", std::nullopt},
      {"application/fhir+json; fhirVersion=4.0", Format::Json},
      {"application/fhir+xml; charset=utf-8", Format::Xml},
      {";;;garbage", Format::Json},  // unparseable Accept is treated as absent
  };
  for (const Row& row : rows) {
    INFO(row.accept);
    CHECK(choose(nullptr, row.accept) == row.expected);
  }
}

TEST_CASE("negotiate_response reads _format, _pretty and Accept from a request", "[negotiation]") {
  espace::http::Request r;
  r.query = {{"_pretty", "true"}, {"_format", "xml"}};
  r.headers.add("Accept", "application/fhir+json");
  espace::http::ResponseFormat fmt;
  REQUIRE(espace::http::negotiate_response(r, &fmt));
  CHECK(fmt.format == Format::Xml);
  CHECK(fmt.pretty);

  r.query = {{"_pretty", "false"}};
  REQUIRE(espace::http::negotiate_response(r, &fmt));
  CHECK(fmt.format == Format::Json);
  CHECK_FALSE(fmt.pretty);

  r.query = {{"_pretty", "yes"}};
  espace::fhir::Status st = espace::http::negotiate_response(r, &fmt);
  CHECK(st.category() == ErrorCategory::Invalid);

  r.query.clear();
  r.headers.set("Accept", "text/html");
  CHECK(espace::http::negotiate_response(r, &fmt).category() == ErrorCategory::NotAcceptable);
}

TEST_CASE("request body kinds from Content-Type", "[negotiation]") {
  CHECK(body_kind("application/fhir+json") == BodyKind::Json);
  CHECK(body_kind("application/json; charset=UTF-8") == BodyKind::Json);
  CHECK(body_kind("application/fhir+json;charset=\"utf-8\";fhirVersion=4.0") == BodyKind::Json);
  CHECK(body_kind("application/fhir+xml") == BodyKind::Xml);
  CHECK(body_kind("application/xml") == BodyKind::Xml);
  CHECK(body_kind("text/xml;charset=utf-8") == BodyKind::Xml);
  CHECK(body_kind("application/json-patch+json") == BodyKind::JsonPatch);
  CHECK(body_kind("application/x-www-form-urlencoded") == BodyKind::FormUrlEncoded);
  CHECK(body_kind("") == std::nullopt);
  CHECK(body_kind("application/fhir+json; charset=iso-8859-1") == std::nullopt);
  CHECK(body_kind("application/fhir+json; fhirVersion=1.0") == std::nullopt);
  CHECK(body_kind("text/plain") == std::nullopt);
  CHECK(body_kind("json") == std::nullopt);  // the _format shorthand is not a media type
  CHECK(body_kind("application/") == std::nullopt);
}

TEST_CASE("parse_media_type", "[negotiation]") {
  espace::http::MediaType m;
  REQUIRE(espace::http::parse_media_type(" Application/FHIR+json ; Charset = \"UTF-8\" ; q=0.5", &m));
  CHECK(m.type == "application");
  CHECK(m.subtype == "fhir+json");
  REQUIRE(m.param("charset") != nullptr);
  CHECK(*m.param("charset") == "UTF-8");
  CHECK(*m.param("q") == "0.5");
  CHECK_FALSE(espace::http::parse_media_type("noslash", &m));
  CHECK_FALSE(espace::http::parse_media_type("a/b; novalue", &m));
  CHECK_FALSE(espace::http::parse_media_type("a/b; x=\"unterminated", &m));
}

TEST_CASE("content types written for each format", "[negotiation]") {
  CHECK(std::string(espace::http::content_type(Format::Json)) == "application/fhir+json; charset=utf-8");
  CHECK(std::string(espace::http::content_type(Format::Xml)) == "application/fhir+xml; charset=utf-8");
}
