// ITI-68 helpers: Accept handling, Binary decoding and byte ranges (RFC 9110 section 14).
#include <catch2/catch.hpp>
#include <string>

#include "espace/interactions/binary_retrieve.h"

using espace::interactions::accept_admits;
using espace::interactions::decode_binary;
using espace::interactions::parse_byte_range;
using espace::interactions::RangeAnswer;
using espace::interactions::wants_native_binary;

TEST_CASE("a Binary read answers the document unless FHIR is asked for", "[mhd]") {
  CHECK(wants_native_binary(nullptr, ""));
  CHECK(wants_native_binary(nullptr, "*/*"));
  CHECK(wants_native_binary(nullptr, "application/pdf"));
  CHECK_FALSE(wants_native_binary(nullptr, "application/fhir+json"));
  CHECK_FALSE(wants_native_binary(nullptr, "application/pdf;q=0.5, Application/FHIR+XML"));
  CHECK(wants_native_binary(nullptr, "application/fhir+json;q=0, application/pdf"));
  std::string format = "json";
  CHECK_FALSE(wants_native_binary(&format, "application/pdf"));
}

TEST_CASE("Accept admits a media type by exact match or wildcard with q > 0", "[mhd]") {
  CHECK(accept_admits("", "application/pdf"));
  CHECK(accept_admits("application/pdf", "application/pdf"));
  CHECK(accept_admits("text/html, application/*;q=0.2", "application/pdf"));
  CHECK(accept_admits("*/*", "image/png"));
  CHECK_FALSE(accept_admits("image/png", "application/pdf"));
  CHECK_FALSE(accept_admits("application/pdf;q=0", "application/pdf"));
  CHECK(accept_admits("application/pdf", "application/pdf; charset=binary"));
}

TEST_CASE("decode_binary yields the content type and the decoded bytes", "[mhd]") {
  std::string type, bytes;
  REQUIRE(decode_binary(R"({"resourceType":"Binary","contentType":"text/plain","data":"aGVsbG8gd29ybGQ="})", &type,
                        &bytes));
  CHECK(type == "text/plain");
  CHECK(bytes == "hello world");
  REQUIRE(decode_binary(R"({"resourceType":"Binary","contentType":"application/pdf"})", &type, &bytes));
  CHECK(bytes.empty());
  CHECK_FALSE(decode_binary(R"({"resourceType":"Binary","data":"a*b"})", &type, &bytes));
  CHECK_FALSE(decode_binary("not json", &type, &bytes));
}

TEST_CASE("byte ranges: one satisfiable range, suffixes, clipping, 416, ignored forms", "[mhd]") {
  uint64_t first = 0, last = 0;
  CHECK(parse_byte_range("", 100, &first, &last) == RangeAnswer::Whole);
  REQUIRE(parse_byte_range("bytes=0-9", 100, &first, &last) == RangeAnswer::Partial);
  CHECK((first == 0 && last == 9));
  REQUIRE(parse_byte_range("bytes=90-", 100, &first, &last) == RangeAnswer::Partial);
  CHECK((first == 90 && last == 99));
  REQUIRE(parse_byte_range("bytes=-10", 100, &first, &last) == RangeAnswer::Partial);
  CHECK((first == 90 && last == 99));
  REQUIRE(parse_byte_range("bytes=-1000", 100, &first, &last) == RangeAnswer::Partial);
  CHECK((first == 0 && last == 99));
  REQUIRE(parse_byte_range("Bytes=95-500", 100, &first, &last) == RangeAnswer::Partial);
  CHECK((first == 95 && last == 99));
  CHECK(parse_byte_range("bytes=100-", 100, &first, &last) == RangeAnswer::Unsatisfiable);
  CHECK(parse_byte_range("bytes=-0", 100, &first, &last) == RangeAnswer::Unsatisfiable);
  CHECK(parse_byte_range("bytes=0-0", 0, &first, &last) == RangeAnswer::Unsatisfiable);
  CHECK(parse_byte_range("bytes=0-1,4-5", 100, &first, &last) == RangeAnswer::Whole);
  CHECK(parse_byte_range("bytes=5-1", 100, &first, &last) == RangeAnswer::Whole);
  CHECK(parse_byte_range("bytes=a-b", 100, &first, &last) == RangeAnswer::Whole);
  CHECK(parse_byte_range("bytes=99999999999999999999-", 100, &first, &last) == RangeAnswer::Whole);
  CHECK(parse_byte_range("items=0-1", 100, &first, &last) == RangeAnswer::Whole);
  // No whitespace around "=" in the grammar (RFC 9110 14.1.1): not a byte range.
  CHECK(parse_byte_range("bytes = 0-1", 100, &first, &last) == RangeAnswer::Whole);
}
