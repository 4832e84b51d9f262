// The hand-written primitive checkers against the spec's own regexes: on
// every sample, check_primitive() accepts exactly what the R4 regex of the
// type (TypeDef::regex, ECMAScript, anchored) accepts; on top of that the
// calendar rules reject dates the regexes let through.
// GCC 12 with -fsanitize reports maybe-uninitialized inside libstdc++'s
// std::regex automaton (a false positive in the library, not in this file).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <catch2/catch.hpp>
#include <regex>

#include "profiles_support.h"

using espace::profiles::check_primitive;

namespace {

bool spec_regex_accepts(const std::string& type, const std::string& value) {
  const espace::fhir::TypeDef* t = profiles_test::definitions().type(type);
  REQUIRE(t);
  REQUIRE_FALSE(t->regex.empty());
  std::regex re("^(?:" + t->regex + ")$", std::regex::ECMAScript);
  return std::regex_match(value, re);
}

}  // namespace

TEST_CASE("checkers agree with the R4 regexes", "[profiles][primitives]") {
  const std::vector<std::pair<std::string, std::vector<std::string>>> samples = {
      {"boolean", {"true", "false", "True", "1", ""}},
      {"integer", {"0", "-0", "12", "-12", "012", "+1", "1.0", "", "-"}},
      {"unsignedInt", {"0", "7", "10", "00", "-1", ""}},
      {"positiveInt", {"1", "10", "0", "01", "-1"}},
      {"decimal", {"0", "-0.5", "1.50", "1e10", "1.2E-3", "01", ".5", "1.", "1e", "+1", "-", "NaN"}},
      {"string", {"a", " ", "tab\tok", "line\nbreak", "é"}},
      {"code", {"a", "a b", "a  b", " a", "a ", "a\tb", "x-y.z"}},
      {"id", {"a", "A-1.b", "a_b", "a b", std::string(64, 'x'), std::string(65, 'x'), ""}},
      {"uri", {"http://x.org/a", "urn:oid:1.2", "a b", "", "#frag"}},
      {"oid", {"urn:oid:1.2.3", "urn:oid:2.16.840.1", "urn:oid:3.1", "urn:oid:1", "urn:oid:1.02", "urn:oid:1..2",
               "oid:1.2"}},
      {"uuid", {"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", "urn:uuid:61EBE359-bfdc-4613-8bf2-c5e300945f0a",
                "urn:uuid:61ebe359bfdc46138bf2c5e300945f0a", "61ebe359-bfdc-4613-8bf2-c5e300945f0a"}},
      {"base64Binary", {"AAAA", "AAAA BBBB", " AAAA ", "AA AA", "AAA", "AAAA=", "AA==", "!!!!",
                        // Groups checked four at a time, then one by one around breaks.
                        "AAAABBBBCCCCDDDD", "AAAABBBB\r\nCCCCDDDD", "AAAABBB B", "AAAABBBBC", "AAAABBBB!CCC",
                        "AAAABBBBCC\nCC", "AAAA\tBBBB==", "AAAABB==", " \n ", "AAAABBBBCCC!",
                        // And sixteen at a time (SSE2).
                        "AAAABBBBCCCCDDD!", "AAAABBBBCCCCDDD\xff", "AAAA@BBBCCCCDDDDEEEE", "Zz09+/==AAAABBBBCCCC",
                        "AAAABBBBCCCCDDDDEEEEFFFFGGGGHHHH IIII", "[AAABBBBCCCCDDDD", "AAAABBBBCCCCDDD`"}},
      {"date", {"2024", "2024-03", "2024-03-01", "0000", "2024-13", "2024-00-01", "2024-1-01", "24-01-01",
                "2024-03-01T10:00:00Z"}},
      {"dateTime", {"2024", "2024-03-01T10:15:00Z", "2024-03-01T10:15:00.123+01:00", "2024-03-01T10:15:00",
                    "2024-03-01T10:15Z", "2024-03T10:15:00Z", "2024-03-01T24:00:00Z", "2024-03-01T10:15:00+14:00",
                    "2024-03-01T10:15:00+14:30", "2024-03-01T10:15:60Z", "2024-03-01T10:15:00.Z"}},
      {"instant", {"2024-03-01T10:15:00Z", "2024-03-01T10:15:00.5-05:00", "2024-03-01", "2024-03-01T10:15:00"}},
      {"time", {"10:15:00", "23:59:59.999", "24:00:00", "10:15", "10:15:00Z"}},
  };
  for (const auto& [type, values] : samples)
    for (const std::string& v : values) {
      INFO(type << " '" << v << "'");
      CHECK(check_primitive(type, v).empty() == spec_regex_accepts(type, v));
    }
}

TEST_CASE("calendar validity beyond the regexes", "[profiles][primitives]") {
  CHECK(check_primitive("date", "2024-02-29").empty());  // leap year
  CHECK_FALSE(check_primitive("date", "2023-02-29").empty());
  CHECK_FALSE(check_primitive("date", "1900-02-29").empty());  // century, not leap
  CHECK(check_primitive("date", "2000-02-29").empty());
  CHECK_FALSE(check_primitive("dateTime", "2024-04-31T10:00:00Z").empty());
  CHECK_FALSE(check_primitive("instant", "2024-06-31T10:00:00Z").empty());
  CHECK(check_primitive("date", "2023-02-30").find("does not exist") != std::string::npos);
  // The spec regex alone accepts these; the calendar does not.
  CHECK(spec_regex_accepts("date", "2023-02-30"));
}

TEST_CASE("strings refuse control characters (datatypes.html#string), which the regex lets through",
          "[profiles][primitives]") {
  CHECK(spec_regex_accepts("string", "bell\x07"));
  CHECK_FALSE(check_primitive("string", "bell\x07").empty());
  CHECK_FALSE(check_primitive("markdown", std::string("nul\0", 4)).empty());
  CHECK(check_primitive("markdown", "tab\tcr\rlf\n").empty());
}

TEST_CASE("long values are checked without recursion", "[profiles][primitives]") {
  std::string big(2'000'000, 'a');
  CHECK(check_primitive("string", big).empty());
  CHECK(check_primitive("uri", big).empty());
  std::string spaced(1'000'000, ' ');
  CHECK_FALSE(check_primitive("code", "a" + spaced + "b").empty());
  // A document-sized base64Binary, whole, with a stray character, broken inside a group.
  std::string data(1'000'000, 'Q');
  CHECK(check_primitive("base64Binary", data).empty());
  CHECK(check_primitive("base64Binary", data.substr(0, 999'998) + "==").empty());
  CHECK(check_primitive("base64Binary", data + "Q").find("multiple of four") != std::string::npos);
  std::string stray = data;
  stray[777'777] = '-';
  CHECK(check_primitive("base64Binary", stray) == "not a base64 character");
  CHECK(check_primitive("base64Binary", data.substr(0, 500'001) + " " + data.substr(500'001, 499'999))
            .find("white space inside") != std::string::npos);
}
