// Server-side validation end to end: invalid writes get 422 with an
// OperationOutcome and store nothing; warnings do not block; $validate and
// `espace validate` report issues.
#include <rapidjson/document.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>

#include "http_client.h"
#include "json_checks.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::json_of;
using espace::testing::history_total;
using espace::testing::ServerProcess;

namespace {

// "severity expression" of every issue.
std::vector<std::string> issues_of(const rapidjson::Document& oo) {
  std::vector<std::string> out;
  for (const auto& i : oo["issue"].GetArray()) {
    std::string e = i.HasMember("expression") ? i["expression"][0].GetString() : "";
    out.push_back(std::string(i["severity"].GetString()) + " " + e);
  }
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

const char* kJson = "application/fhir+json";

}  // namespace

TEST_CASE("invalid creates, updates, patches and transactions are refused with 422", "[validation]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  std::vector<std::pair<std::string, std::string>> h = {{"Content-Type", kJson}};

  HttpResponse bad = c.request("POST", "/Patient", R"({"resourceType":"Patient","gender":"F"})", h);
  CHECK(bad.status == 422);
  auto oo = json_of(bad);
  CHECK(std::string(oo["resourceType"].GetString()) == "OperationOutcome");
  CHECK(contains(issues_of(oo), "error Patient.gender"));
  CHECK(history_total(c) == 0);

  // Warnings (dom-6: no narrative) do not block.
  HttpResponse ok = c.request("POST", "/Patient", R"({"resourceType":"Patient","gender":"female"})", h);
  REQUIRE(ok.status == 201);
  std::string location = ok.header("Location");
  std::string id = location.substr(location.find("/Patient/") + 9);
  id = id.substr(0, id.find('/'));

  HttpResponse bad_update =
      c.request("PUT", "/Patient/" + id, R"({"resourceType":"Patient","id":")" + id + R"(","birthDate":"2023-02-30"})", h);
  CHECK(bad_update.status == 422);
  CHECK(contains(issues_of(json_of(bad_update)), "error Patient.birthDate"));

  HttpResponse bad_patch = c.request("PATCH", "/Patient/" + id, R"([{"op":"replace","path":"/gender","value":"x"}])",
                                     {{"Content-Type", "application/json-patch+json"}});
  CHECK(bad_patch.status == 422);
  CHECK(contains(issues_of(json_of(bad_patch)), "error Patient.gender"));
  auto current = json_of(c.get("/Patient/" + id));
  CHECK(std::string(current["gender"].GetString()) == "female");
  CHECK(std::string(current["meta"]["versionId"].GetString()) == "1");

  const char* tx = R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
    {"resource":{"resourceType":"Observation","code":{"text":"poids"}},"request":{"method":"POST","url":"Observation"}}]})";
  HttpResponse bad_tx = c.request("POST", "/", tx, h);
  CHECK(bad_tx.status == 422);
  CHECK(contains(issues_of(json_of(bad_tx)), "error Bundle.entry[1].resource.status"));
  CHECK(history_total(c) == 1);  // only the valid create above
}

TEST_CASE("$validate answers 200 with the issues", "[validation]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  std::vector<std::pair<std::string, std::string>> h = {{"Content-Type", kJson}};

  HttpResponse r = c.request("POST", "/Patient/$validate", R"({"resourceType":"Patient","gender":"F"})", h);
  CHECK(r.status == 200);
  CHECK(contains(issues_of(json_of(r)), "error Patient.gender"));

  // Parameters form, mode=update with a mismatching id.
  const char* params = R"({"resourceType":"Parameters","parameter":[
    {"name":"resource","resource":{"resourceType":"Patient","id":"a","gender":"male"}},
    {"name":"mode","valueCode":"update"}]})";
  r = c.request("POST", "/Patient/b/$validate", params, h);
  CHECK(r.status == 200);
  CHECK(contains(issues_of(json_of(r)), "error Patient.id"));

  r = c.request("POST", "/Observation/$validate", R"({"resourceType":"Patient"})", h);
  CHECK(r.status == 400);
  r = c.request("POST", "/Patient/$everything", R"({"resourceType":"Patient"})", h);
  CHECK(r.status == 404);
  CHECK(history_total(c) == 0);  // $validate never stores
}

TEST_CASE("espace validate exits 1 on errors, 0 otherwise", "[validation]") {
  std::string dir = std::string(ESPACE_SOURCE_DIR) + "/test-data/profiles/";
  std::string out;
  CHECK(espace::testing::run_espace({"validate", dir + "valid-patient.json", dir + "valid-observation.json"}, &out) == 0);
  CHECK(out.find("valid-patient.json: ok") != std::string::npos);
  CHECK(espace::testing::run_espace({"validate", "--quiet", dir + "invalid-patient-gender.json"}, &out) == 1);
  CHECK(out.find("error binding-required @ Patient.gender") != std::string::npos);
  CHECK(espace::testing::run_espace({"validate"}, &out) == 2);
}

TEST_CASE("terminology operations: $expand, $validate-code, $lookup", "[validation][terminology]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  const std::string gender = "http://hl7.org/fhir/ValueSet/administrative-gender";
  const std::string gender_cs = "http://hl7.org/fhir/administrative-gender";

  HttpResponse r = c.get("/ValueSet/$expand?url=" + gender);
  REQUIRE(r.status == 200);
  auto vs = json_of(r);
  CHECK(std::string(vs["resourceType"].GetString()) == "ValueSet");
  CHECK(vs["expansion"]["total"].GetInt() == 4);
  CHECK(vs["expansion"]["contains"].Size() == 4);
  // Instance form, by id.
  CHECK(c.get("/ValueSet/administrative-gender/$expand").status == 200);
  // SNOMED CT is not here: refuse rather than return a partial expansion.
  CHECK(c.get("/ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/clinical-findings").status == 422);
  CHECK(c.get("/ValueSet/$expand?url=http://example.org/none").status == 404);

  auto result_of = [&](const HttpResponse& resp) {
    auto p = json_of(resp);
    return p["parameter"][0]["valueBoolean"].GetBool();
  };
  r = c.get("/ValueSet/$validate-code?url=" + gender + "&system=" + gender_cs + "&code=female");
  REQUIRE(r.status == 200);
  CHECK(result_of(r));
  r = c.get("/ValueSet/$validate-code?url=" + gender + "&system=" + gender_cs + "&code=F");
  REQUIRE(r.status == 200);
  CHECK_FALSE(result_of(r));
  r = c.get("/ValueSet/$validate-code?url=http://hl7.org/fhir/ValueSet/clinical-findings&system=http://snomed.info/sct&code=22298006");
  REQUIRE(r.status == 200);
  CHECK_FALSE(result_of(r));
  CHECK(r.body.find("not checked") != std::string::npos);
  // POST with a Parameters body and a Coding.
  r = c.request("POST", "/ValueSet/$validate-code",
                R"({"resourceType":"Parameters","parameter":[{"name":"url","valueUri":")" + gender +
                    R"("},{"name":"coding","valueCoding":{"system":")" + gender_cs + R"(","code":"other"}}]})",
                {{"Content-Type", "application/fhir+json"}});
  REQUIRE(r.status == 200);
  CHECK(result_of(r));

  r = c.get("/CodeSystem/$lookup?system=" + gender_cs + "&code=male");
  REQUIRE(r.status == 200);
  CHECK(r.body.find("\"Male\"") != std::string::npos);
  CHECK(c.get("/CodeSystem/$lookup?system=" + gender_cs + "&code=nope").status == 404);
  CHECK(c.get("/CodeSystem/$lookup?system=http://loinc.org&code=29463-7").status == 404);
  CHECK(c.get("/Patient/$lookup?system=x&code=y").status == 404);
}

TEST_CASE("terminology operations: $subsumes over a hierarchy of the package", "[validation][terminology]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  const std::string role_code = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
  auto outcome = [&](const std::string& a, const std::string& b) {
    HttpResponse r = c.get("/CodeSystem/$subsumes?system=" + role_code + "&codeA=" + a + "&codeB=" + b);
    INFO(r.body);
    REQUIRE(r.status == 200);
    auto doc = json_of(r);
    REQUIRE(doc["parameter"][0]["name"] == "outcome");
    return std::string(doc["parameter"][0]["valueCode"].GetString());
  };
  // FAMMEMB (family member) is-a ancestor of MTH (mother).
  CHECK(outcome("FAMMEMB", "MTH") == "subsumes");
  CHECK(outcome("MTH", "FAMMEMB") == "subsumed-by");
  CHECK(outcome("MTH", "MTH") == "equivalent");
  CHECK(outcome("MTH", "FTH") == "not-subsumed");
  // Codings in a Parameters body.
  HttpResponse posted = c.request("POST", "/CodeSystem/$subsumes",
      R"({"resourceType":"Parameters","parameter":[{"name":"codingA","valueCoding":{"system":")" + role_code +
          R"(","code":"FAMMEMB"}},{"name":"codingB","valueCoding":{"system":")" + role_code + R"(","code":"MTH"}}]})",
      {{"Content-Type", "application/fhir+json"}});
  REQUIRE(posted.status == 200);
  CHECK(posted.body.find(R"("valueCode":"subsumes")") != std::string::npos);
  // Unknown code, a system whose hierarchy is not held (never guessed), missing parameters.
  CHECK(c.get("/CodeSystem/$subsumes?system=" + role_code + "&codeA=MTH&codeB=NOPE").status == 404);
  HttpResponse snomed = c.get("/CodeSystem/$subsumes?system=http://snomed.info/sct&codeA=1&codeB=2");
  CHECK(snomed.status == 404);
  CHECK(snomed.body.find("not checked") != std::string::npos);
  CHECK(c.get("/CodeSystem/$subsumes?system=" + role_code + "&codeA=MTH").status == 400);
}
