// Token modifiers :in and :not-in (search.html#modifiers): the codes of a
// ValueSet expanded by the terminology service, through the whole engine.
#include "espace/profiles/validator.h"
#include "espace/terminology/terminology.h"
#include "search_fixture.h"

using namespace search_test;
using espace::fhir::ErrorCategory;

namespace {

std::set<std::string> id_set(const espace::interactions::FhirResponse& r) {
  INFO(r.error.message());
  REQUIRE(r.error.is_ok());
  auto v = match_ids(r.json);
  return {v.begin(), v.end()};
}

// A small complete code system, a set of two of its codes, a set naming an
// external system by its whole content, and an empty set.
void load_sets(espace::terminology::Store& store) {
  REQUIRE(store.add_json(R"({"resourceType":"CodeSystem","url":"urn:test:vitals","status":"active","content":"complete",)"
                         R"("concept":[{"code":"pulse"},{"code":"weight"},{"code":"height"}]})")
              .is_ok());
  REQUIRE(store.add_json(R"({"resourceType":"ValueSet","url":"urn:test:vs:body","status":"active",)"
                         R"("compose":{"include":[{"system":"urn:test:vitals","concept":[{"code":"weight"},{"code":"height"}]}]}})")
              .is_ok());
  REQUIRE(store.add_json(R"({"resourceType":"ValueSet","url":"urn:test:vs:all-loinc","status":"active",)"
                         R"("compose":{"include":[{"system":"http://loinc.org"}]}})")
              .is_ok());
  REQUIRE(store.add_json(R"({"resourceType":"ValueSet","url":"urn:test:vs:none","status":"active",)"
                         R"("compose":{"include":[{"system":"urn:test:vitals","concept":[{"code":"pulse"}]}],)"
                         R"("exclude":[{"system":"urn:test:vitals","concept":[{"code":"pulse"}]}]}})")
              .is_ok());
}

void load_observations(Server& s) {
  auto obs = [&](const std::string& id, const std::string& system, const std::string& code) {
    REQUIRE(s.put(R"({"resourceType":"Observation","id":")" + id + R"(","status":"final","code":{"coding":[{"system":")" +
                  system + R"(","code":")" + code + R"("}]}})") == 201);
  };
  obs("p1", "urn:test:vitals", "pulse");
  obs("w1", "urn:test:vitals", "weight");
  obs("h1", "urn:test:vitals", "height");
  obs("x1", "urn:test:other", "weight");  // the same code in another system is not in the set
  REQUIRE(s.put(R"({"resourceType":"Observation","id":"n1","status":"final","code":{"text":"no coding"}})") == 201);
}

}  // namespace

TEST_CASE("token :in and :not-in use the ValueSet's expansion", "[search]") {
  Server s;
  load_observations(s);
  espace::terminology::Store store;
  load_sets(store);
  espace::profiles::Validator validator(defs(), &store);
  s.services().validator = &validator;

  CHECK(id_set(s.search("Observation", "code:in=urn:test:vs:body")) == std::set<std::string>{"w1", "h1"});
  // :not-in: no coding in the set, including resources without any coding.
  CHECK(id_set(s.search("Observation", "code:not-in=urn:test:vs:body")) == std::set<std::string>{"p1", "x1", "n1"});
  // Several sets: any of them.
  CHECK(id_set(s.search("Observation", "code:in=urn:test:vs:body,urn:test:vs:none")) ==
        std::set<std::string>{"w1", "h1"});
  // Combined with another condition.
  CHECK(id_set(s.search("Observation", "code:in=urn:test:vs:body&_id=w1,p1")) == std::set<std::string>{"w1"});
  // An empty set: nothing is in it, everything is outside it.
  CHECK(id_set(s.search("Observation", "code:in=urn:test:vs:none")).empty());
  CHECK(id_set(s.search("Observation", "code:not-in=urn:test:vs:none")).size() == 5);
}

TEST_CASE("token :in refuses sets it cannot enumerate and unknown sets, naming the parameter", "[search]") {
  Server s;
  load_observations(s);
  espace::terminology::Store store;
  load_sets(store);
  espace::profiles::Validator validator(defs(), &store);

  // Without a terminology service the modifier is not supported.
  auto none = s.search("Observation", "code:in=urn:test:vs:body");
  CHECK(none.error.category() == ErrorCategory::Invalid);
  CHECK(none.error.message().find(":in") != std::string::npos);

  s.services().validator = &validator;
  auto unknown = s.search("Observation", "code:in=urn:test:vs:missing");
  CHECK(unknown.error.category() == ErrorCategory::Invalid);
  CHECK(unknown.error.message().find("urn:test:vs:missing") != std::string::npos);
  // LOINC is not held in full: a partial expansion would silently miss matches.
  auto partial = s.search("Observation", "code:in=urn:test:vs:all-loinc");
  CHECK(partial.error.category() == ErrorCategory::Invalid);
  CHECK(partial.error.message().find("cannot enumerate") != std::string::npos);
  CHECK(s.search("Observation", "code:not-in=").error.category() == ErrorCategory::Invalid);
}
