// Invariants skipped when their leading elements are absent: the analysis of
// the FHIRPath text (profiles/src/invariant_guards.h) and its use on nodes.
#include <catch2/catch.hpp>

#include "../../profiles/src/invariant_guards.h"
#include "profiles_support.h"

using espace::profiles::analyse_invariant;
using Alternatives = std::vector<std::vector<std::string>>;

TEST_CASE("invariants that hold when their leading elements are absent", "[profiles][invariants]") {
  // R4 texts (dom-2, dom-4, dom-5, att-1, per-1).
  CHECK(analyse_invariant("contained.contained.empty()").pass_when_absent == Alternatives{{"contained"}});
  CHECK(analyse_invariant("contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()").pass_when_absent ==
        Alternatives{{"contained"}});
  CHECK(analyse_invariant("contained.meta.security.empty()").pass_when_absent == Alternatives{{"contained"}});
  CHECK(analyse_invariant("data.empty() or contentType.exists()").pass_when_absent == Alternatives{{"data"}});
  CHECK(analyse_invariant("start.hasValue().not() or end.hasValue().not() or (start <= end)").pass_when_absent ==
        Alternatives{{"end"}, {"start"}});
  // A where() with an " or " inside a string literal and nested brackets.
  CHECK(analyse_invariant("item.where(code = 'a or b' and (x.exists())).trace('t').empty()").pass_when_absent ==
        Alternatives{{"item"}});
  // implies: a false premise makes it true; an empty conclusion after a true premise is empty (passes too).
  CHECK(analyse_invariant("a.exists() implies b.empty()").pass_when_absent == Alternatives{{"a"}, {"b"}});
  // and: both sides must be settled.
  CHECK(analyse_invariant("a.empty() and b.all(c.exists())").pass_when_absent == Alternatives{{"a", "b"}});
  // An expression whose result with the element absent is empty passes (only false fails).
  CHECK(analyse_invariant("code.startsWith('x')").pass_when_absent == Alternatives{{"code"}});
}

TEST_CASE("invariants that are always evaluated", "[profiles][invariants]") {
  // Absence makes them false, or the analysis cannot tell.
  CHECK(analyse_invariant("text.`div`.exists()").pass_when_absent.empty());
  CHECK(analyse_invariant("a.exists() xor b.exists()").pass_when_absent.empty());
  CHECK(analyse_invariant("a.exists() = b.exists()").pass_when_absent.empty());
  CHECK(analyse_invariant("a.count() <= 1").pass_when_absent.empty());
  CHECK(analyse_invariant("hasValue() or (children().count() > id.count())").pass_when_absent.empty());
  CHECK(analyse_invariant("%resource.a.empty()").pass_when_absent.empty());
  CHECK(analyse_invariant("Patient.a.empty()").pass_when_absent.empty());
  CHECK(analyse_invariant("(a | b).empty()").pass_when_absent.empty());
  CHECK(analyse_invariant("a.empty() implies b.empty() implies c.empty()").pass_when_absent.empty());
  CHECK(analyse_invariant("a.where(x = 'unterminated).empty()").pass_when_absent.empty());
  CHECK(analyse_invariant("").pass_when_absent.empty());
}

TEST_CASE("the guard looks at the children of the node", "[profiles][invariants]") {
  espace::profiles::InvariantGuard att1 = analyse_invariant("data.empty() or contentType.exists()");
  espace::fhir::Node doc = profiles_test::parse(
      R"({"resourceType":"DocumentReference","status":"current","content":[)"
      R"({"attachment":{"contentType":"text/plain","url":"Binary/1"}},{"attachment":{"data":"AAAA"}}]})");
  std::vector<const espace::fhir::Node*> attachments;
  doc.for_each_child("content", [&](const espace::fhir::Node& c) { attachments.push_back(c.child("attachment")); });
  REQUIRE(attachments.size() == 2);
  CHECK(att1.holds_without_evaluation(*attachments[0]));   // no data
  CHECK(!att1.holds_without_evaluation(*attachments[1]));  // data: evaluate
  // Primitive nodes are always evaluated.
  const espace::fhir::Node* status = doc.child("status");
  REQUIRE(status);
  CHECK(!analyse_invariant("id.empty()").holds_without_evaluation(*status));
}

namespace {

// "message-id @ location" of the errors, sorted.
std::vector<std::string> base_errors(const std::string& json) {
  std::vector<std::string> out;
  for (const espace::fhir::Issue& i : profiles_test::validator().validate(profiles_test::parse(json)))
    if (i.severity == espace::fhir::Severity::Error) out.push_back(i.message_id + " @ " + i.expression);
  std::sort(out.begin(), out.end());
  return out;
}

std::string entry(const std::string& full_url, const std::string& extra, const std::string& version = "") {
  std::string meta = version.empty() ? "" : R"("meta":{"versionId":")" + version + R"("},)";
  return R"({"fullUrl":")" + full_url + R"(","resource":{"resourceType":"Basic",)" + meta +
         R"("code":{"text":"x"}})" + extra + "}";
}

const std::string kPost = R"(,"request":{"method":"POST","url":"Basic"})";

}  // namespace

// The invariants decided natively in the common case (validator.cpp, Shortcut)
// still fail exactly as their FHIRPath says when the shortcut does not apply.
TEST_CASE("bdl-3, bdl-4, bdl-7, dom-3 and ref-1 still fail when they should", "[profiles][invariants]") {
  std::string ok = R"({"resourceType":"Bundle","type":"transaction","entry":[)" + entry("urn:uuid:1", kPost) + "," +
                   entry("urn:uuid:2", kPost) + "]}";
  CHECK(base_errors(ok).empty());
  // A transaction entry without request.
  CHECK(base_errors(R"({"resourceType":"Bundle","type":"transaction","entry":[)" + entry("urn:uuid:1", kPost) + "," +
                    entry("urn:uuid:2", "") + "]}") == std::vector<std::string>{"inv-bdl-3 @ Bundle"});
  // A batch-response entry without response.
  CHECK(base_errors(R"({"resourceType":"Bundle","type":"batch-response","entry":[)" +
                    entry("urn:uuid:1", R"(,"response":{"status":"201"})") + "," + entry("urn:uuid:2", "") + "]}") ==
        std::vector<std::string>{"inv-bdl-4 @ Bundle"});
  // The same fullUrl twice; and fullUrl & versionId equal by concatenation ("urn:uuid:1" & "0" = "urn:uuid:10").
  CHECK(base_errors(R"({"resourceType":"Bundle","type":"transaction","entry":[)" + entry("urn:uuid:1", kPost) + "," +
                    entry("urn:uuid:1", kPost) + "]}") == std::vector<std::string>{"inv-bdl-7 @ Bundle"});
  CHECK(base_errors(R"({"resourceType":"Bundle","type":"transaction","entry":[)" + entry("urn:uuid:1", kPost, "0") +
                    "," + entry("urn:uuid:10", kPost) + "]}") == std::vector<std::string>{"inv-bdl-7 @ Bundle"});
  // The same fullUrl is fine in a history.
  CHECK(base_errors(R"({"resourceType":"Bundle","type":"history","entry":[)" +
                    entry("urn:uuid:1", R"(,"request":{"method":"PUT","url":"Basic/1"},"response":{"status":"200"})") +
                    "," +
                    entry("urn:uuid:1", R"(,"request":{"method":"PUT","url":"Basic/1"},"response":{"status":"200"})") +
                    "]}")
            .empty());
  // A contained resource nothing refers to; one referred to.
  std::string contained = R"({"resourceType":"Basic","contained":[{"resourceType":"Patient","id":"p"}],"code":{"text":"x"})";
  CHECK(base_errors(contained + "}") == std::vector<std::string>{"inv-dom-3 @ Basic"});
  CHECK(base_errors(contained + R"(,"subject":{"reference":"#p"}})").empty());
  // "#id" naming no contained resource (ref-1, and the reference check).
  CHECK(base_errors(R"({"resourceType":"Basic","code":{"text":"x"},"subject":{"reference":"#nobody"}})") ==
        std::vector<std::string>{"inv-ref-1 @ Basic.subject", "ref-contained-missing @ Basic.subject.reference"});
}

namespace {

// Message ids of all issues (any severity) with their locations, sorted.
std::vector<std::string> base_issues(const std::string& json) {
  std::vector<std::string> out;
  for (const espace::fhir::Issue& i : profiles_test::validator().validate(profiles_test::parse(json)))
    out.push_back(i.message_id + " @ " + i.expression);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("dom-2, dom-4, dom-5, dom-6, bdl-5, bdl-8 and per-1 decided natively as their FHIRPath says",
          "[profiles][invariants]") {
  const std::string narrative =
      R"("text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},)";
  auto basic = [&](const std::string& contained_json, const std::string& more = "") {
    return R"({"resourceType":"Basic",)" + narrative + R"("contained":[)" + contained_json +
           R"(],"code":{"text":"x"},"subject":{"reference":"#c"})" + more + "}";
  };
  CHECK(base_issues(basic(R"({"resourceType":"Patient","id":"c"})")).empty());
  // dom-2: a contained resource with contained resources (its own dom-3 fails too: nothing names #d).
  CHECK(base_issues(basic(R"({"resourceType":"Patient","id":"c","contained":[{"resourceType":"Patient","id":"d"}]})")) ==
        std::vector<std::string>{"inv-dom-2 @ Basic", "inv-dom-3 @ Basic.contained[0]"});
  // dom-4: versionId or lastUpdated; dom-5: security labels.
  CHECK(base_issues(basic(R"({"resourceType":"Patient","id":"c","meta":{"versionId":"2"}})")) ==
        std::vector<std::string>{"inv-dom-4 @ Basic"});
  CHECK(base_issues(basic(R"({"resourceType":"Patient","id":"c","meta":{"lastUpdated":"2026-01-01T00:00:00Z"}})")) ==
        std::vector<std::string>{"inv-dom-4 @ Basic"});
  CHECK(base_issues(basic(R"({"resourceType":"Patient","id":"c","meta":{"security":[{"code":"N"}]}})")) ==
        std::vector<std::string>{"inv-dom-5 @ Basic"});
  // dom-6: no narrative (a warning).
  CHECK(base_issues(R"({"resourceType":"Basic","code":{"text":"x"}})") == std::vector<std::string>{"inv-dom-6 @ Basic"});
  // bdl-5: an entry with neither resource, request nor response; bdl-8: a fullUrl with a version.
  CHECK(base_errors(R"({"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1"}]})") ==
        std::vector<std::string>{"inv-bdl-5 @ Bundle.entry[0]"});
  CHECK(base_errors(R"({"resourceType":"Bundle","type":"collection","entry":[)" +
                    entry("http://example.org/fhir/Basic/1/_history/2", "") + "]}") ==
        std::vector<std::string>{"inv-bdl-8 @ Bundle.entry[0]"});
  // per-1: start after end fails; across time zones the instants are compared, not the text.
  auto period = [&](const std::string& start, const std::string& end) {
    return base_errors(R"({"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"period":{"start":")" +
                       start + R"(","end":")" + end + R"("}})");
  };
  CHECK(period("2026-01-02", "2026-01-01") == std::vector<std::string>{"inv-per-1 @ Encounter.period"});
  CHECK(period("2026-01-01", "2026-01-02").empty());
  CHECK(period("2026-01-01T10:00:00+02:00", "2026-01-01T09:30:00+01:00").empty());
  CHECK(period("2026-01-01T10:00:00+01:00", "2026-01-01T09:30:00+01:00") ==
        std::vector<std::string>{"inv-per-1 @ Encounter.period"});
}
