// Server-side validation end to end: invalid writes get 422 with an
// OperationOutcome and store nothing; warnings do not block; $validate and
// `espace validate` report issues.
#include <rapidjson/document.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>

#include "http_client.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::ServerProcess;

namespace {

rapidjson::Document json_of(const HttpResponse& r) {
  rapidjson::Document d;
  d.Parse(r.body.c_str());
  INFO(r.body.substr(0, 2000));
  REQUIRE_FALSE(d.HasParseError());
  return d;
}

int64_t history_total(HttpClient& c) {
  auto d = json_of(c.get("/_history?_count=0"));
  return d["total"].GetInt64();
}

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
