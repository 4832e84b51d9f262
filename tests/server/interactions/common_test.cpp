// Helpers of the interactions layer: dates, ETags, ids, prepared bodies.
#include <catch2/catch.hpp>
#include <memory>
#include <set>

#include "../../../server/interactions/src/common.h"
#include "espace/fhir/json.h"
#include "model_fixture.h"

using namespace espace::interactions;


TEST_CASE("FHIR dateTime parsing for _since, with partial precision and offsets", "[interactions]") {
  int64_t us = 0;
  REQUIRE(parse_fhir_datetime("1970-01-01T00:00:00Z", &us));
  CHECK(us == 0);
  REQUIRE(parse_fhir_datetime("1970-01-01T01:00:00+01:00", &us));
  CHECK(us == 0);
  REQUIRE(parse_fhir_datetime("1970-01-02", &us));
  CHECK(us == 86400LL * 1000000);
  REQUIRE(parse_fhir_datetime("2026", &us));
  int64_t y2026 = us;
  REQUIRE(parse_fhir_datetime("2026-01-01T00:00:00.5Z", &us));
  CHECK(us == y2026 + 500000);
  REQUIRE(parse_fhir_datetime("2000-02-29T12:00:00.123456Z", &us));
  CHECK(format_instant(us) == "2000-02-29T12:00:00.123456Z");
  CHECK_FALSE(parse_fhir_datetime("2026-13-01", &us));
  CHECK_FALSE(parse_fhir_datetime("yesterday", &us));
  CHECK_FALSE(parse_fhir_datetime("2026-01-01T25:00:00Z", &us));
  CHECK_FALSE(parse_fhir_datetime("2026-01-01T10:00:00+1", &us));
}

TEST_CASE("instants keep every field at its width, before 1970 and past year 9999 too", "[interactions]") {
  CHECK(format_instant(0) == "1970-01-01T00:00:00.000000Z");
  CHECK(format_instant(7) == "1970-01-01T00:00:00.000007Z");
  CHECK(format_instant(-1) == "1969-12-31T23:59:59.999999Z");
  int64_t us = 0;
  REQUIRE(parse_fhir_datetime("0001-01-01T00:00:00Z", &us));
  CHECK(format_instant(us) == "0001-01-01T00:00:00.000000Z");
  REQUIRE(parse_fhir_datetime("9999-12-31T23:59:59.999999Z", &us));
  CHECK(format_instant(us) == "9999-12-31T23:59:59.999999Z");
  CHECK(format_instant(us + 1) == "10000-01-01T00:00:00.000000Z");
}

TEST_CASE("UUIDs are written 8-4-4-4-12 in lower-case hex", "[interactions]") {
  const unsigned char bytes[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                   0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};
  CHECK(uuid_text(bytes) == "01234567-89ab-cdef-fedc-ba9876543210");
  const std::string id = new_id();
  REQUIRE(id.size() == 36);
  CHECK(id[14] == '4');  // version 4
}

TEST_CASE("HTTP dates round-trip at second precision", "[interactions]") {
  int64_t us = 0;
  REQUIRE(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", &us));
  CHECK(format_http_date(us) == "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK_FALSE(parse_http_date("06/11/1994", &us));
}

TEST_CASE("ETags: weak, strong and bare versions", "[interactions]") {
  int64_t v = 0;
  CHECK(make_etag(3) == "W/\"3\"");
  REQUIRE(parse_etag("W/\"12\"", &v));
  CHECK(v == 12);
  REQUIRE(parse_etag("\"7\"", &v));
  CHECK(v == 7);
  REQUIRE(parse_etag("5", &v));
  CHECK(v == 5);
  CHECK_FALSE(parse_etag("W/\"abc\"", &v));
  CHECK_FALSE(parse_etag("", &v));
}

TEST_CASE("server ids are random UUIDs and valid FHIR ids", "[interactions]") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id = new_id();
    CHECK(id.size() == 36);
    CHECK(id[14] == '4');
    CHECK(is_valid_id(id));
    CHECK(seen.insert(id).second);
  }
  CHECK_FALSE(is_valid_id(""));
  CHECK_FALSE(is_valid_id("a/b"));
  CHECK_FALSE(is_valid_id(std::string(65, 'a')));
}

TEST_CASE("a prepared body gets its version and time filled in without re-serializing", "[interactions]") {
  espace::fhir::Node node;
  REQUIRE(espace::fhir::parse_json(test_definitions(),
                                   R"({"resourceType":"Patient","id":"old","meta":{"versionId":"9","source":"#x",)"
                                   R"("tag":[{"code":"a"}]},"extension":[{"url":"http://x","valueString":"\"versionId\":\"V\u0001\""}],)"
                                   R"("name":[{"family":"Dupont"}]})",
                                   &node)
              .is_ok());
  PreparedBody body;
  REQUIRE(PreparedBody::prepare(node, "new-id", &body).is_ok());
  std::string json = body.finalize(4, 0);
  espace::fhir::Node back;
  REQUIRE(espace::fhir::parse_json(test_definitions(), json, &back).is_ok());
  CHECK(espace::fhir::resource_id(back) == "new-id");
  const espace::fhir::Node* meta = back.child("meta");
  REQUIRE(meta);
  CHECK(meta->child_value("versionId") == "4");
  CHECK(meta->child_value("lastUpdated") == "1970-01-01T00:00:00.000000Z");
  CHECK(meta->child_value("source") == "#x");
  // A string that merely looks like the placeholder is left alone.
  CHECK(json.find(R"(\"versionId\":\"V\u0001\")") != std::string::npos);
  CHECK(back.child("extension")->child_value("valueString") == "\"versionId\":\"V\x01\"");
}

TEST_CASE("identifier tokens are indexed for conditional interactions", "[interactions]") {
  espace::fhir::Node node;
  REQUIRE(espace::fhir::parse_json(test_definitions(),
                                   R"({"resourceType":"Patient","identifier":[{"system":"urn:a","value":"1"},)"
                                   R"({"value":"2"},{"system":"urn:b"}]})",
                                   &node)
              .is_ok());
  std::vector<espace::storage::IndexEntry> rows;
  for (auto& row : index_entries(test_definitions(), node))
    if (row.param == "identifier" && row.kind == "token") rows.push_back(row);
  REQUIRE(rows.size() == 2);
  std::set<std::pair<std::string, std::string>> pairs;
  for (auto& row : rows) pairs.emplace(row.system, row.value);
  // The identifier without a value is not indexed; one without a system keeps an empty system.
  CHECK(pairs == std::set<std::pair<std::string, std::string>>{{"urn:a", "1"}, {"", "2"}});
}
