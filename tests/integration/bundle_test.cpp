// batch and transaction Bundles end to end (hl7.org/fhir/R4/http.html#transaction).
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <string>

#include "http_client.h"
#include "json_checks.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::json_of;
using espace::testing::str;
using espace::testing::history_total;
using espace::testing::ServerProcess;

TEST_CASE("transaction resolves urn:uuid references and answers in entry order", "[bundle]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  const char* tx = R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
     "resource":{"resourceType":"Observation","status":"final","code":{"text":"poids"},
                 "subject":{"reference":"urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059"},
                 "valueQuantity":{"value":61.50,"unit":"kg"}},
     "request":{"method":"POST","url":"Observation"}},
    {"fullUrl":"urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
     "resource":{"resourceType":"Patient","identifier":[{"system":"urn:x","value":"tx-1"}],"name":[{"family":"Petit"}]},
     "request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn:x|tx-1"}},
    {"resource":{"resourceType":"Patient","id":"fixed-1","active":true},
     "request":{"method":"PUT","url":"Patient/fixed-1"}}
  ]})";
  HttpResponse r = c.request("POST", "/", tx);
  REQUIRE(r.status == 200);
  auto d = json_of(r);
  CHECK(str(d, "type") == "transaction-response");
  REQUIRE(d["entry"].Size() == 3);
  CHECK(str(d["entry"][0]["response"], "status").rfind("201", 0) == 0);
  CHECK(str(d["entry"][1]["response"], "status").rfind("201", 0) == 0);
  CHECK(str(d["entry"][2]["response"], "status").rfind("201", 0) == 0);
  std::string patient_location = str(d["entry"][1]["response"], "location");
  std::string obs_location = str(d["entry"][0]["response"], "location");
  std::string patient_id = patient_location.substr(patient_location.find("/Patient/") + 9, 36);
  std::string obs_target = obs_location.substr(obs_location.find("/Observation/"));
  obs_target = obs_target.substr(0, obs_target.find("/_history"));
  auto obs = json_of(c.get(obs_target));
  CHECK(str(obs["subject"], "reference") == "Patient/" + patient_id);
  CHECK(r.body.find("61.50") != std::string::npos);

  // Again: the conditional create matches, so no second patient; the
  // observation's reference resolves to the existing one.
  HttpResponse again = c.request("POST", "/", tx);
  REQUIRE(again.status == 200);
  auto d2 = json_of(again);
  CHECK(str(d2["entry"][1]["response"], "status").rfind("200", 0) == 0);
  std::string obs2 = str(d2["entry"][0]["response"], "location");
  obs2 = obs2.substr(obs2.find("/Observation/"));
  obs2 = obs2.substr(0, obs2.find("/_history"));
  CHECK(str(json_of(c.get(obs2))["subject"], "reference") == "Patient/" + patient_id);
}

TEST_CASE("a failing transaction stores nothing", "[bundle]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  REQUIRE(c.request("PUT", "/Patient/p1", R"({"resourceType":"Patient","id":"p1"})").status == 201);
  int64_t before = history_total(c);
  // The second entry fails its If-Match, so the first must not be kept.
  const char* tx = R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"resource":{"resourceType":"Patient","name":[{"family":"Nouveau"}]},"request":{"method":"POST","url":"Patient"}},
    {"resource":{"resourceType":"Patient","id":"p1","active":false},"request":{"method":"PUT","url":"Patient/p1","ifMatch":"W/\"7\""}}
  ]})";
  HttpResponse r = c.request("POST", "/", tx);
  CHECK(r.status == 412);
  CHECK(str(json_of(r), "resourceType") == "OperationOutcome");
  CHECK(r.body.find("entry[1]") != std::string::npos);
  CHECK(history_total(c) == before);

  // An invalid resource inside: 400 naming the entry, nothing stored.
  const char* bad = R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
    {"resource":{"resourceType":"Patient","birthDate":"1990-13-45x","nope":1},"request":{"method":"POST","url":"Patient"}}
  ]})";
  HttpResponse r2 = c.request("POST", "/", bad);
  CHECK(r2.status == 400);
  CHECK(history_total(c) == before);

  // A reference to a urn:uuid that no entry carries.
  const char* dangling = R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000000"}},
     "request":{"method":"POST","url":"Observation"}}]})";
  CHECK(c.request("POST", "/", dangling).status == 400);
  CHECK(history_total(c) == before);
}

TEST_CASE("batch entries succeed or fail independently", "[bundle]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  const char* batch = R"({"resourceType":"Bundle","type":"batch","entry":[
    {"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
    {"request":{"method":"GET","url":"Patient/nope"}},
    {"resource":{"resourceType":"Patient","id":"b1"},"request":{"method":"PUT","url":"Patient/b1"}},
    {"request":{"method":"GET","url":"Patient/b1"}}
  ]})";
  HttpResponse r = c.request("POST", "/", batch);
  REQUIRE(r.status == 200);
  auto d = json_of(r);
  CHECK(str(d, "type") == "batch-response");
  REQUIRE(d["entry"].Size() == 4);
  CHECK(str(d["entry"][0]["response"], "status").rfind("201", 0) == 0);
  CHECK(str(d["entry"][1]["response"], "status").rfind("404", 0) == 0);
  CHECK(str(d["entry"][1]["response"]["outcome"], "resourceType") == "OperationOutcome");
  CHECK(str(d["entry"][2]["response"], "status").rfind("201", 0) == 0);
  CHECK(str(d["entry"][3]["response"], "status").rfind("200", 0) == 0);
  CHECK(str(d["entry"][3]["resource"], "id") == "b1");
}

TEST_CASE("a 10,000-entry transaction", "[bundle][large]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  std::string tx = R"({"resourceType":"Bundle","type":"transaction","entry":[)";
  for (int i = 0; i < 10000; ++i) {
    if (i) tx += ',';
    tx += R"({"fullUrl":"urn:uuid:00000000-0000-4000-8000-)" + std::string(12 - std::to_string(i).size(), '0') +
          std::to_string(i) + R"(","resource":{"resourceType":"Patient","identifier":[{"system":"urn:bulk","value":"p)" +
          std::to_string(i) + R"("}],"name":[{"family":"Famille)" + std::to_string(i) +
          R"("}]},"request":{"method":"POST","url":"Patient"}})";
  }
  tx += "]}";
  HttpResponse r = c.request("POST", "/", tx, {{"Prefer", "return=minimal"}});
  REQUIRE(r.status == 200);
  auto d = json_of(r);
  CHECK(d["entry"].Size() == 10000);
  CHECK(history_total(c) == 10000);
  HttpResponse one = c.request("POST", "/Patient", R"({"resourceType":"Patient"})",
                               {{"If-None-Exist", "identifier=urn:bulk|p9999"}});
  CHECK(one.status == 200);
}
