// Search over HTTP against the real server: GET and POST _search, compartment
// URLs, Prefer: handling=lenient, links, XML, meta parameters (_tag,
// _profile, _security), conditional create through the engine.
#include <rapidjson/document.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "http_client.h"
#include "json_checks.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::json_of;
using espace::testing::ServerProcess;

namespace {

std::set<std::string> match_ids(const HttpResponse& r) {
  INFO(r.status << " " << r.body);
  REQUIRE(r.status == 200);
  auto d = json_of(r);
  std::set<std::string> out;
  if (!d.HasMember("entry")) return out;
  for (auto& e : d["entry"].GetArray())
    if (std::string(e["search"]["mode"].GetString()) == "match") out.insert(e["resource"]["id"].GetString());
  return out;
}

std::string link(const HttpResponse& r, const std::string& relation) {
  auto d = json_of(r);
  for (auto& l : d["link"].GetArray())
    if (relation == l["relation"].GetString()) return l["url"].GetString();
  return {};
}

void put(HttpClient& c, const std::string& path, const std::string& body) {
  HttpResponse r = c.request("PUT", path, body);
  INFO(r.body);
  REQUIRE(r.status == 201);
}

void load(HttpClient& c) {
  put(c, "/Patient/p1",
      R"({"resourceType":"Patient","id":"p1","meta":{"tag":[{"system":"urn:tags","code":"vip"}],)"
      R"("profile":["http://example.org/StructureDefinition/mypatient"],"security":[{"system":"urn:conf","code":"R"}]},)"
      R"("name":[{"family":"Lefèvre","given":["Anaïs"]}],"gender":"female","birthDate":"1971-04-02"})");
  put(c, "/Patient/p2", R"({"resourceType":"Patient","id":"p2","name":[{"family":"Lefebvre"}],"gender":"male"})");
  put(c, "/Observation/o1",
      R"({"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},)"
      R"("subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-05-01T08:30:00Z"})");
  put(c, "/Observation/o2",
      R"({"resourceType":"Observation","id":"o2","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]},)"
      R"("subject":{"reference":"Patient/p2"}})");
  put(c, "/Condition/c1", R"({"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},)"
                          R"("code":{"text":"asthme"}})");
}

}  // namespace

TEST_CASE("search over HTTP: GET, POST _search, links and formats", "[search]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load(c);

  CHECK(match_ids(c.get("/Patient?family=lefe")) == std::set<std::string>{"p1", "p2"});
  CHECK(match_ids(c.get("/Patient?family=LEFÈVRE")) == std::set<std::string>{"p1"});
  CHECK(match_ids(c.get("/Patient?family=lef%C3%A8vre&gender=female")) == std::set<std::string>{"p1"});
  CHECK(match_ids(c.get("/Observation?subject.name=anais")) == std::set<std::string>{"o1"});
  CHECK(match_ids(c.get("/Observation?date=2024-05")) == std::set<std::string>{"o1"});

  HttpResponse post = c.request("POST", "/Patient/_search", "family=lefe&gender=male",
                                {{"Content-Type", "application/x-www-form-urlencoded"}});
  CHECK(match_ids(post) == std::set<std::string>{"p2"});
  // The self link of a POST search is the equivalent GET.
  CHECK(link(post, "self").find("/Patient?family=lefe&gender=male") != std::string::npos);
  HttpResponse mixed = c.request("POST", "/Patient/_search?gender=female", "family=lefe",
                                 {{"Content-Type", "application/x-www-form-urlencoded"}});
  CHECK(match_ids(mixed) == std::set<std::string>{"p1"});
  CHECK(c.request("POST", "/Patient/_search", R"({"resourceType":"Patient"})").status == 415);

  HttpResponse paged = c.get("/Patient?_count=1");
  CHECK(match_ids(paged).size() == 1);
  std::string next = link(paged, "next");
  REQUIRE_FALSE(next.empty());
  std::string next_target = next.substr(next.find("/Patient"));
  std::set<std::string> second = match_ids(c.get(next_target));
  CHECK(second.size() == 1);
  CHECK(second != match_ids(paged));

  HttpResponse xml = c.get("/Patient?_id=p1", {{"Accept", "application/fhir+xml"}});
  CHECK(xml.status == 200);
  CHECK(xml.body.find("<Bundle") != std::string::npos);
  CHECK(xml.body.find("<Patient") != std::string::npos);
}

TEST_CASE("search over HTTP: errors and Prefer: handling=lenient", "[search]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load(c);
  HttpResponse strict = c.get("/Patient?nickname=x");
  CHECK(strict.status == 400);
  CHECK(strict.body.find("nickname") != std::string::npos);
  CHECK(c.get("/Patient?birthdate=gt1971-13").status == 400);
  HttpResponse lenient = c.get("/Patient?nickname=x&gender=male", {{"Prefer", "handling=lenient"}});
  CHECK(match_ids(lenient) == std::set<std::string>{"p2"});
  CHECK(link(lenient, "self").find("nickname") == std::string::npos);
  CHECK(lenient.body.find("\"mode\":\"outcome\"") != std::string::npos);
}

TEST_CASE("search over HTTP: compartments, meta parameters, _has, conditional create", "[search]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load(c);
  CHECK(match_ids(c.get("/Patient/p1/Observation")) == std::set<std::string>{"o1"});
  CHECK(match_ids(c.get("/Patient/p1/*")) == std::set<std::string>{"o1", "c1"});
  CHECK(match_ids(c.get("/Patient/p1/Condition?code:text=asth")) == std::set<std::string>{"c1"});
  CHECK(match_ids(c.get("/Patient/p2/Condition")).empty());

  CHECK(match_ids(c.get("/Patient?_tag=urn:tags|vip")) == std::set<std::string>{"p1"});
  CHECK(match_ids(c.get("/Patient?_security=R")) == std::set<std::string>{"p1"});
  CHECK(match_ids(c.get("/Patient?_profile=http://example.org/StructureDefinition/mypatient")) ==
        std::set<std::string>{"p1"});
  CHECK(match_ids(c.get("/Patient?_tag:missing=true")) == std::set<std::string>{"p2"});
  CHECK(match_ids(c.get("/Patient?_has:Observation:subject:code=8310-5")) == std::set<std::string>{"p2"});
  CHECK(match_ids(c.get("/?_type=Condition,Observation&_id=c1,o2,p1")) == std::set<std::string>{"c1", "o2"});

  // Conditional create finds the existing resource through the engine.
  HttpResponse again = c.request("POST", "/Patient", R"({"resourceType":"Patient","name":[{"family":"Lefèvre"}]})",
                                 {{"If-None-Exist", "family:exact=Lefèvre&birthdate=1971"}});
  CHECK(again.status == 200);
  CHECK(match_ids(c.get("/Patient?family=lef")).size() == 2);
}
