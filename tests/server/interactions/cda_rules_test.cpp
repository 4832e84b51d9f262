// CDA building blocks: the hardened XML reader, the XPath subset, value
// formats (INS key, RPPS, FINESS, TS), SHA-1/base64, and rule tables loaded
// from JSON text.
#include <catch2/catch.hpp>

#include <string>

#include "../../../server/interactions/src/documents/cda_codec.h"
#include "../../../server/interactions/src/documents/cda_path.h"
#include "../../../server/interactions/src/documents/cda_rules.h"
#include "../../../server/interactions/src/documents/cda_xml.h"

using namespace espace::interactions::cda;

namespace {

std::unique_ptr<XmlElement> parse_ok(const std::string& xml) {
  std::unique_ptr<XmlElement> root;
  auto s = parse_cda_xml(xml, &root);
  INFO(s.message());
  REQUIRE(s.is_ok());
  return root;
}

std::string parse_error_id(const std::string& xml, const XmlLimits& limits = {}) {
  std::unique_ptr<XmlElement> root;
  auto s = parse_cda_xml(xml, &root, limits);
  if (s.is_ok()) return "ok";
  return s.issues().front().message_id;
}

std::string hex(const std::array<uint8_t, 20>& d) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (uint8_t b : d) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

const char* kSmall = R"(<?xml version="1.0"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:x="urn:other">
  <id root="1.2.3" extension="A1"/>
  <author><assignedAuthor><id root="9.9"/><id root="1.2.250.1.71.4.2.1" extension="810001234565"/></assignedAuthor></author>
  <author><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="810007654328"/></assignedAuthor></author>
  <x:author><x:assignedAuthor/></x:author>
  <value xsi:type="PQ" value="3"/>
  <title>  Compte   rendu &amp; suite </title>
</ClinicalDocument>)";

}  // namespace

TEST_CASE("CDA XML: namespaces, xsi:type, entities of the XML spec, whitespace", "[cda]") {
  auto root = parse_ok(kSmall);
  CHECK(root->name == "ClinicalDocument");
  CHECK(root->in_hl7);
  Path p;
  REQUIRE(parse_path("/ClinicalDocument/value/@xsi:type", &p).is_ok());
  auto r = evaluate_path(p, *root, "/ClinicalDocument");
  REQUIRE(r.matches.size() == 1);
  CHECK(r.matches[0].value == "PQ");
  REQUIRE(parse_path("/ClinicalDocument/title", &p).is_ok());
  r = evaluate_path(p, *root, "/ClinicalDocument");
  REQUIRE(r.matches.size() == 1);
  CHECK(r.matches[0].value == "Compte rendu & suite");
  // Elements of other namespaces are never matched by path steps.
  REQUIRE(parse_path("/ClinicalDocument/author", &p).is_ok());
  CHECK(evaluate_path(p, *root, "/ClinicalDocument").matches.size() == 2);
}

TEST_CASE("CDA XML: hostile and malformed documents are refused with stable ids", "[cda]") {
  CHECK(parse_error_id("<!DOCTYPE ClinicalDocument [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
                       "<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><title>&x;</title></ClinicalDocument>") ==
        "cda-xml-doctype");
  CHECK(parse_error_id("<!DOCTYPE ClinicalDocument SYSTEM \"http://example.org/cda.dtd\">"
                       "<ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>") == "cda-xml-doctype");
  // An undeclared entity is a well-formedness error, never a lookup.
  CHECK(parse_error_id("<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><title>&x;</title></ClinicalDocument>") ==
        "cda-xml-malformed");
  CHECK(parse_error_id("<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><title></ClinicalDocument>") == "cda-xml-malformed");
  CHECK(parse_error_id("") == "cda-xml-malformed");
  CHECK(parse_error_id("<ClinicalDocument/>") == "cda-xml-not-cda");
  CHECK(parse_error_id("<Patient xmlns=\"http://hl7.org/fhir\"/>") == "cda-xml-not-cda");

  std::string deep = "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">";
  for (int i = 0; i < 200; ++i) deep += "<a>";
  for (int i = 0; i < 200; ++i) deep += "</a>";
  deep += "</ClinicalDocument>";
  CHECK(parse_error_id(deep) == "cda-xml-too-deep");

  XmlLimits small;
  small.max_bytes = 100;
  CHECK(parse_error_id(std::string(kSmall), small) == "cda-xml-too-large");
  XmlLimits few;
  few.max_elements = 5;
  CHECK(parse_error_id(std::string(kSmall), few) == "cda-xml-too-many-elements");
  CHECK(parse_error_id(std::string(kSmall)) == "ok");
}

TEST_CASE("CDA paths: predicates, positions and the XPath of matches and misses", "[cda]") {
  auto root = parse_ok(kSmall);
  Path p;
  REQUIRE(parse_path("/ClinicalDocument/author/assignedAuthor/id[@root='1.2.250.1.71.4.2.1']/@extension", &p).is_ok());
  auto r = evaluate_path(p, *root, "/ClinicalDocument");
  REQUIRE(r.matches.size() == 2);
  CHECK(r.matches[0].value == "810001234565");
  CHECK(r.matches[0].xpath == "/ClinicalDocument/author[1]/assignedAuthor/id[2]/@extension");
  CHECK(r.matches[1].xpath == "/ClinicalDocument/author[2]/assignedAuthor/id[1]/@extension");

  REQUIRE(parse_path("/ClinicalDocument/author[2]/assignedAuthor/id/@root", &p).is_ok());
  r = evaluate_path(p, *root, "/ClinicalDocument");
  REQUIRE(r.matches.size() == 1);
  CHECK(r.matches[0].value == "1.2.250.1.71.4.2.1");

  REQUIRE(parse_path("/ClinicalDocument/custodian/assignedCustodian/@x", &p).is_ok());
  r = evaluate_path(p, *root, "/ClinicalDocument");
  CHECK(r.matches.empty());
  CHECK(r.missing_xpath == "/ClinicalDocument/custodian/assignedCustodian/@x");

  REQUIRE(parse_path("/ClinicalDocument/id/@missing", &p).is_ok());
  r = evaluate_path(p, *root, "/ClinicalDocument");
  CHECK(r.missing_xpath == "/ClinicalDocument/id/@missing");

  REQUIRE(parse_path("/ClinicalDocument/*/name()", &p).is_ok());
  r = evaluate_path(p, *root, "/ClinicalDocument");
  REQUIRE(r.matches.size() == 5);
  CHECK(r.matches[4].value == "title");

  // Relative paths start from a context element.
  REQUIRE(parse_path("assignedAuthor/id", &p).is_ok());
  const XmlElement& second_author = *root->children[2];
  r = evaluate_path(p, second_author, element_xpath(second_author));
  REQUIRE(r.matches.size() == 1);
  CHECK(r.matches[0].xpath == "/ClinicalDocument/author[2]/assignedAuthor/id");

  CHECK_FALSE(parse_path("/a/@b/c", &p).is_ok());
  CHECK_FALSE(parse_path("/a[0]", &p).is_ok());
  CHECK_FALSE(parse_path("/a[@b=c]", &p).is_ok());
  CHECK_FALSE(parse_path("/a/", &p).is_ok());
  CHECK_FALSE(parse_path("", &p).is_ok());
}

TEST_CASE("French identifiers: INS-NIR key (incl. Corsica), RPPS/ADELI and FINESS/SIRET national ids", "[cda]") {
  CHECK(check_format("ins-nir", "285037511203464"));
  CHECK_FALSE(check_format("ins-nir", "285037511203465"));
  CHECK(check_format("ins-nir", "162112A01234541"));   // 2A counts as 19
  CHECK_FALSE(check_format("ins-nir", "162112B01234541"));
  CHECK(check_format("ins-nir", "178013301211120"));
  CHECK_FALSE(check_format("ins-nir", "28503751120346"));     // 14 characters
  CHECK_FALSE(check_format("ins-nir", "585037511203464"));    // no such first digit
  CHECK_FALSE(check_format("ins-nir", "2850375112034x4"));

  CHECK(check_format("idnat-ps", "810001234565"));
  CHECK_FALSE(check_format("idnat-ps", "810001234566"));
  CHECK_FALSE(check_format("idnat-ps", "910001234565"));
  CHECK(check_format("idnat-struct", "1750001232"));
  CHECK_FALSE(check_format("idnat-struct", "1750001233"));
  CHECK_FALSE(check_format("idnat-struct", "x750001232"));
}

TEST_CASE("HL7 TS values: ranges, zones and conversion to FHIR dateTime/date", "[cda]") {
  std::string out;
  REQUIRE(ts_to_datetime("20261120143000+0100", &out));
  CHECK(out == "2026-11-20T14:30:00+01:00");
  REQUIRE(ts_to_datetime("202611201430-0330", &out));
  CHECK(out == "2026-11-20T14:30:00-03:30");
  REQUIRE(ts_to_datetime("20261120143000.25+0000", &out));
  CHECK(out == "2026-11-20T14:30:00.25+00:00");
  REQUIRE(ts_to_datetime("202611", &out));
  CHECK(out == "2026-11");
  CHECK_FALSE(ts_to_datetime("20261120143000", &out));  // time without zone
  CHECK_FALSE(ts_to_datetime("20260230", &out));        // 30 February
  CHECK(ts_to_datetime("20240229", &out));
  CHECK_FALSE(ts_to_datetime("20261120250000+0100", &out));
  CHECK_FALSE(ts_to_datetime("2026112", &out));
  CHECK_FALSE(ts_to_datetime("20261120+0100", &out));  // zone without time
  REQUIRE(ts_to_date("19850312", &out));
  CHECK(out == "1985-03-12");
  CHECK(check_format("ts-second", "20261120143000+0100"));
  CHECK_FALSE(check_format("ts-second", "202611201430+0100"));
  CHECK(check_format("language", "fr-FR"));
  CHECK_FALSE(check_format("language", "french"));
  CHECK(check_format("oid", "1.2.250.1.213.1.4.8"));
  CHECK_FALSE(check_format("oid", "1.02.3"));
  CHECK_FALSE(check_format("oid", "1..3"));
  CHECK(check_format("oid-or-uuid", "6c1f3a52-8e0b-4c7d-9a51-2f4b7e8d1a01"));
  CHECK(check_format("base64-pdf", "JVBERi0xLjQK"));      // "%PDF-1.4\n"
  CHECK_FALSE(check_format("base64-pdf", "SGVsbG8="));    // "Hello"
  CHECK_FALSE(check_format("base64-pdf", "JVBERi0*LjQK"));
}

TEST_CASE("SHA-1 and base64 against the FIPS 180 and RFC 4648 vectors", "[cda]") {
  CHECK(hex(sha1("abc")) == "a9993e364706816aba3e25717850c26c9cd0d89d");
  CHECK(hex(sha1("")) == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  CHECK(hex(sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  CHECK(hex(sha1(std::string(1000000, 'a'))) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  std::string decoded;
  REQUIRE(base64_decode("Zm9v\nYmE=", &decoded));
  CHECK(decoded == "fooba");
  CHECK_FALSE(base64_decode("Zm9=v", &decoded));
  CHECK_FALSE(base64_decode("Zm9", &decoded));
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foob") == "Zm9vYg==");
  CHECK(base64_encode("fooba") == "Zm9vYmE=");
  CHECK_FALSE(base64_decode("Zm9v*mFy", &decoded));
  CHECK_FALSE(base64_decode(std::string("Zm9v\0mFy", 8), &decoded));
  CHECK_FALSE(base64_decode("Zm9v\xc3\xa9mE=", &decoded));  // a non-ASCII byte
  // Every byte value, at each of the three positions of a group.
  for (size_t shift = 0; shift < 3; ++shift) {
    std::string bytes(shift, 'x');
    for (int b = 0; b < 256; ++b) bytes.push_back(static_cast<char>(b));
    std::string text = base64_encode(bytes);
    CHECK(text.size() == (bytes.size() + 2) / 3 * 4);
    REQUIRE(base64_decode(text, &decoded));
    CHECK(decoded == bytes);
  }
}

TEST_CASE("rule and mapping tables: checks and conversions come from the JSON", "[cda]") {
  const std::string mapping = R"({
    "template": {"resourceType": "DocumentReference", "status": "current"},
    "tables": {"kinds": {"A": {"code": "alpha"}}},
    "fields": [
      {"source": "/ClinicalDocument/id", "as": "identifier", "target": "masterIdentifier"},
      {"source": "/ClinicalDocument/title", "as": "text", "target": "description"},
      {"source": "/ClinicalDocument/value/@xsi:type", "as": "table", "table": "kinds", "target": "category[].coding[]"},
      {"for_each": "/ClinicalDocument/author", "target": "author[]", "fields": [
        {"source": "assignedAuthor/id[@root='1.2.250.1.71.4.2.1']", "as": "identifier", "target": "identifier", "first": true}]}
    ]})";
  const std::string rules = R"({"rules": [
    {"id": "r-title", "text": "title", "path": "/ClinicalDocument/title", "check": "format", "format": "non-empty"},
    {"id": "r-type", "text": "type", "path": "/ClinicalDocument/value/@xsi:type", "check": "in-table", "table": "kinds"},
    {"id": "r-custodian", "text": "custodian", "path": "/ClinicalDocument/custodian", "check": "present"},
    {"id": "r-rpps", "context": "/ClinicalDocument/author", "text": "rpps", "path": "assignedAuthor/id[@root='1.2.250.1.71.4.2.1']/@extension", "check": "format", "format": "idnat-ps"},
    {"id": "r-warn", "text": "warn", "path": "/ClinicalDocument/nothing", "check": "present", "severity": "warning"}
  ]})";
  CdaConfig config;
  auto s = load_cda_config(rules, mapping, &config);
  INFO(s.message());
  REQUIRE(s.is_ok());
  auto root = parse_ok(kSmall);
  auto issues = check_header(config, *root);
  REQUIRE(issues.size() == 4);
  CHECK(issues[0].message_id == "r-type");
  CHECK(issues[0].location == "/ClinicalDocument/value/@xsi:type");
  CHECK(issues[1].message_id == "r-custodian");
  CHECK(issues[1].location == "/ClinicalDocument/custodian");
  CHECK(issues[2].message_id == "r-rpps");  // 810007654328 has a bad key
  CHECK(issues[2].location == "/ClinicalDocument/author[2]/assignedAuthor/id[1]/@extension");
  CHECK(issues[3].severity == espace::fhir::Severity::Warning);

  rapidjson::Document out;
  map_header(config, *root, &out);
  CHECK(std::string(out["masterIdentifier"]["system"].GetString()) == "urn:oid:1.2.3");
  CHECK(std::string(out["masterIdentifier"]["value"].GetString()) == "A1");
  CHECK(std::string(out["description"].GetString()) == "Compte rendu & suite");
  CHECK_FALSE(out.HasMember("category"));  // PQ is not in the table
  REQUIRE(out["author"].Size() == 2);
  CHECK(std::string(out["author"][1]["identifier"]["value"].GetString()) == "810007654328");

  CdaConfig bad;
  CHECK_FALSE(load_cda_config(R"({"rules": [{"id": "x", "text": "t", "path": "/a", "check": "nope"}]})", mapping, &bad)
                  .is_ok());
  CdaConfig bad2;
  CHECK_FALSE(load_cda_config(R"({"rules": [{"id": "x", "text": "t", "path": "/a", "check": "in-table", "table": "none"}]})",
                              mapping, &bad2)
                  .is_ok());
  CdaConfig bad3;
  CHECK_FALSE(load_cda_config(rules, R"({"template": {}, "tables": {}, "fields": [{"source": "/a", "as": "magic", "target": "x"}]})",
                              &bad3)
                  .is_ok());
}

TEST_CASE("the shipped rule and mapping files load", "[cda]") {
  const CdaConfig* config = nullptr;
  auto s = cda_config(&config);
  INFO(s.message());
  REQUIRE(s.is_ok());
  CHECK(config->rules.size() > 30);
  CHECK_FALSE(config->fields.empty());
}
