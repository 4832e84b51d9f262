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
