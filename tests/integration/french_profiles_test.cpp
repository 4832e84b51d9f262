// The French profiles on the running server: strict by default (a Patient
// without INS is refused with 422 naming the element, nothing stored), lifted
// by `serve --relaxed-profiles`; $validate with an explicit profile.
#include <rapidjson/document.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>

#include "http_client.h"
#include "json_checks.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::history_total;
using espace::testing::json_of;
using espace::testing::ServerProcess;

namespace {

const std::vector<std::pair<std::string, std::string>> kJson = {{"Content-Type", "application/fhir+json"}};

// Locations of the error issues of an OperationOutcome (the outcome carries
// no message ids), and whether an error's text mentions `words`.
std::vector<std::string> error_locations(const rapidjson::Document& oo) {
  std::vector<std::string> out;
  if (!oo.IsObject() || !oo.HasMember("issue")) return out;
  for (const auto& i : oo["issue"].GetArray())
    if (std::string(i["severity"].GetString()) == "error")
      out.push_back(i.HasMember("expression") ? i["expression"][0].GetString() : "");
  std::sort(out.begin(), out.end());
  return out;
}

bool error_mentions(const rapidjson::Document& oo, const std::string& words) {
  for (const auto& i : oo["issue"].GetArray())
    if (std::string(i["severity"].GetString()) == "error" && i.HasMember("diagnostics") &&
        std::string(i["diagnostics"].GetString()).find(words) != std::string::npos)
      return true;
  return false;
}

using Locations = std::vector<std::string>;

std::string fixture(const std::string& name) {
  std::ifstream in(std::string(ESPACE_SOURCE_DIR) + "/test-data/profiles/fr/" + name);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const char* kPatientWithoutIns =
    R"({"resourceType":"Patient","name":[{"family":"EXEMPLE","given":["ANNE"]}],"gender":"female","birthDate":"1990-01-01"})";

}  // namespace

TEST_CASE("strict mode: a Patient without INS is refused, one with a valid INS is stored", "[profiles-fr]") {
  ServerProcess server({"--strict-profiles"});
  HttpClient c("127.0.0.1", server.port());

  HttpResponse refused = c.request("POST", "/Patient", kPatientWithoutIns, kJson);
  CHECK(refused.status == 422);
  auto oo = json_of(refused);
  INFO(refused.body);
  // No INS, and no identity-reliability extension either.
  CHECK(error_locations(oo) == Locations{"Patient", "Patient.extension", "Patient.identifier"});
  CHECK(error_mentions(oo, "element 'identifier' is required"));
  CHECK(error_mentions(oo, "must hold an INS"));
  CHECK(history_total(c) == 0);

  HttpResponse bad_key = c.request("POST", "/Patient", fixture("invalid-patient-ins-key.json"), kJson);
  CHECK(bad_key.status == 422);
  auto bad_key_oo = json_of(bad_key);
  CHECK(error_locations(bad_key_oo) == Locations{"Patient.identifier[0].value"});
  CHECK(error_mentions(bad_key_oo, "INS key expected 55"));

  HttpResponse stored = c.request("PUT", "/Patient/ins-example", fixture("valid-patient-ins.json"), kJson);
  INFO(stored.body);
  CHECK(stored.status == 201);
  CHECK(history_total(c) == 1);

  // In a transaction the entry is named.
  std::string bundle = R"({"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:6f1c1f0e-8a55-4d8e-9a1e-0c5b8d2f7a10","resource":)" +
                       std::string(kPatientWithoutIns) + R"(,"request":{"method":"POST","url":"Patient"}}]})";
  HttpResponse tx = c.request("POST", "/", bundle, kJson);
  CHECK(tx.status == 422);
  CHECK(error_locations(json_of(tx)) == Locations{"Bundle.entry[0].resource", "Bundle.entry[0].resource.extension",
                                                "Bundle.entry[0].resource.identifier"});
  CHECK(history_total(c) == 1);
}

TEST_CASE("relaxed mode: a generic Patient is accepted; meta.profile still applies", "[profiles-fr]") {
  ServerProcess server;  // the harness adds --relaxed-profiles
  HttpClient c("127.0.0.1", server.port());
  CHECK(c.request("POST", "/Patient", kPatientWithoutIns, kJson).status == 201);
  // The resource declares fr-patient-ins: it must meet it even when relaxed.
  CHECK(c.request("POST", "/Patient", fixture("invalid-patient-ins-key.json"), kJson).status == 422);
}

TEST_CASE("$validate against one of our profiles", "[profiles-fr]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  HttpResponse r = c.request(
      "POST", "/Practitioner/$validate?profile=https://espace.example/fhir/StructureDefinition/fr-practitioner",
      fixture("invalid-practitioner-rpps-key.json"), kJson);
  REQUIRE(r.status == 200);
  auto oo = json_of(r);
  CHECK(error_locations(oo) == Locations{"Practitioner.identifier[0].value"});
  CHECK(error_mentions(oo, "RPPS key expected 5"));
  HttpResponse fine = c.request(
      "POST", "/Practitioner/$validate?profile=https://espace.example/fhir/StructureDefinition/fr-practitioner",
      fixture("valid-practitioner.json"), kJson);
  CHECK(error_locations(json_of(fine)).empty());
}
