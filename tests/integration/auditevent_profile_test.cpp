// The AuditEvents the audit trail writes conform to our AuditEvent profile
// (profiles/data/dmp-auditevent.json): requests of every kind under the DMP
// policy (reads, searches, writes, operations, a refusal, a failed
// authentication, an export), then every event of the trail, read back through
// GET AuditEvent on the same database, is validated against the profile.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "dev_tokens.h"
#include "http_client.h"
#include "json_checks.h"
#include "server_process.h"
#include "text_helpers.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::json_of;
using espace::testing::run_espace;
using espace::testing::ServerProcess;
using espace::testing::str;
using espace::testing::kTestIssuer;
using espace::testing::kTestAudience;
using espace::testing::mint_dev_token;
using espace::testing::init_dev_keys;

namespace {

using espace::testing::to_json;

const std::string kProfile = "https://espace.example/fhir/StructureDefinition/dmp-auditevent";
const char* const kJson = "application/fhir+json";

std::string mint(const std::string& dir, std::vector<std::string> extra) {
  std::string out = mint_dev_token(dir + "/keys", extra);
  return out;
}

}  // namespace

TEST_CASE("every AuditEvent of the trail conforms to the dmp-auditevent profile", "[audit][profiles][integration]") {
  char tmpl[] = "/tmp/espace-auditprofile-it-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string db = dir + "/audit.db";
  init_dev_keys(dir + "/keys");
  {
    ServerProcess open({}, db);
    HttpClient c("127.0.0.1", open.port());
    for (const char* json :
         {R"({"resourceType":"Practitioner","id":"dr-gp","identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810000000001"}],"name":[{"family":"Generaliste"}]})",
          R"({"resourceType":"Patient","id":"pa","name":[{"family":"Alpha"}],"birthDate":"1970-01-01","generalPractitioner":[{"reference":"Practitioner/dr-gp"}]})",
          R"({"resourceType":"Observation","id":"obs-pa","status":"final","code":{"text":"poids"},"subject":{"reference":"Patient/pa"}})"}) {
      rapidjson::Document d;
      d.Parse(json);
      REQUIRE(c.request("PUT", "/" + str(d, "resourceType") + "/" + str(d, "id"), json, {{"Content-Type", kJson}})
                  .status == 201);
    }
  }
  {
    ServerProcess jwt({"--auth", "jwt", "--jwks", dir + "/keys/jwks.json", "--issuer", kTestIssuer, "--audience", kTestAudience},
                      db);
    HttpClient c("127.0.0.1", jwt.port());
    const std::string patient = "Bearer " + mint(dir, {"--role", "patient", "--patient", "pa", "--fhir-user",
                                                       "Patient/pa", "--sub", "account-pa"});
    const std::string gp = "Bearer " + mint(dir, {"--role", "professional", "--fhir-user", "Practitioner/dr-gp",
                                                  "--rpps", "810000000001", "--profession", "10", "--organization",
                                                  "010000001", "--sub", "account-dr-gp"});
    const std::string stranger = "Bearer " + mint(dir, {"--role", "professional", "--rpps", "810000000004",
                                                        "--profession", "10", "--sub", "account-x"});
    auto as = [&](const std::string& token, const std::string& method, const std::string& target,
                  const std::string& body = "") {
      return c.request(method, target, body,
                       {{"Authorization", token}, {"Accept", kJson}, {"Content-Type", kJson}, {"Prefer", "respond-async"}})
          .status;
    };
    CHECK(as(patient, "GET", "/Patient/pa") == 200);
    CHECK(as(gp, "GET", "/Observation?patient=pa") == 200);
    CHECK(as(gp, "POST", "/Observation",
             R"({"resourceType":"Observation","status":"final","code":{"text":"taille"},"subject":{"reference":"Patient/pa"}})") ==
          201);
    CHECK(as(gp, "GET", "/Patient/pa/$everything") == 200);
    CHECK(as(patient, "GET", "/Patient/pa/$export") == 202);
    CHECK(as(stranger, "GET", "/Patient/pa") == 403);
    CHECK(as("Bearer not-a-token", "GET", "/Patient/pa") == 401);
    CHECK(as(patient, "GET", "/Observation/obs-pa/_history") == 200);
    CHECK(as(patient, "GET", "/Patient/pa/$export-nothing") == 404);
  }
  ServerProcess reader({}, db);
  HttpClient c("127.0.0.1", reader.port());
  rapidjson::Document events = json_of(c.get("/AuditEvent?_count=1000", {{"Accept", kJson}}));
  REQUIRE(events.HasMember("entry"));
  // The set-up writes and the requests above (an unknown operation is
  // answered before anyone is authenticated: not traced).
  CHECK(events["entry"].GetArray().Size() >= 11);
  std::map<std::string, int> outcomes;
  for (const auto& e : events["entry"].GetArray()) {
    const rapidjson::Value& event = e["resource"];
    outcomes[str(event, "outcome")]++;
    HttpResponse v = c.request("POST", "/AuditEvent/$validate?profile=" + kProfile, to_json(event),
                               {{"Content-Type", kJson}, {"Accept", kJson}});
    INFO(to_json(event) << "\n=> " << v.body);
    CHECK(v.status == 200);
    rapidjson::Document outcome = json_of(v);
    for (const auto& issue : outcome["issue"].GetArray()) {
      CHECK(str(issue, "severity") != "error");
      CHECK(str(issue, "severity") != "fatal");
    }
  }
  // Successes and refusals (minor failure 4) were both checked.
  CHECK(outcomes["0"] > 0);
  CHECK(outcomes["4"] > 0);

  // The profile does catch what the trail must never write.
  rapidjson::Document broken;
  broken.CopyFrom(events["entry"][0]["resource"], broken.GetAllocator());
  for (auto& agent : broken["agent"].GetArray()) agent["requestor"].SetBool(false);
  HttpResponse refused = c.request("POST", "/AuditEvent/$validate?profile=" + kProfile, to_json(broken),
                                   {{"Content-Type", kJson}, {"Accept", kJson}});
  CHECK(refused.body.find("dmp-ae-1") != std::string::npos);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}
