// The policy remembers each patient's facts (Patient and Consents) across
// requests; through the real binary, every change a patient makes to them
// must decide the very next request: a grant opens the record, its
// revocation closes it again, and so does a GP being named then removed.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "dev_tokens.h"
#include "http_client.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::run_espace;
using espace::testing::ServerProcess;
using espace::testing::kTestIssuer;
using espace::testing::kTestAudience;
using espace::testing::mint_dev_token;
using espace::testing::init_dev_keys;

namespace {


std::string mint(const std::string& keys, std::vector<std::string> claims) {
  std::string out = mint_dev_token(keys, claims);
return out;
}

std::string patient(const std::string& gp) {
  std::string gp_part = gp.empty() ? "" : R"(,"generalPractitioner":[{"reference":")" + gp + R"("}])";
  return R"({"resourceType":"Patient","id":"pc-1","name":[{"family":"Cache","given":["Alice"]}],)"
         R"("gender":"female","birthDate":"1970-01-01")" +
         gp_part + "}";
}

std::string consent(const std::string& id, const std::string& status) {
  std::string id_part = id.empty() ? "" : R"("id":")" + id + R"(",)";
  return R"({"resourceType":"Consent",)" + id_part + R"("status":")" + status +
         R"(","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},)"
         R"("category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],)"
         R"("patient":{"reference":"Patient/pc-1"},)"
         R"("policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},)"
         R"("provision":{"type":"permit","actor":[{"role":{"coding":[{"system":)"
         R"("http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PRCP"}]},)"
         R"("reference":{"reference":"Practitioner/dr-cache"}}]}})";
}

}  // namespace

TEST_CASE("policy cache: grants, revocations and GP changes decide the next request") {
  char tmpl[] = "/tmp/espace-policy-cache-it-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  init_dev_keys(dir + "/keys");
  {
    ServerProcess open({}, dir + "/cache.db");
    HttpClient c("127.0.0.1", open.port());
    HttpResponse put = c.request("PUT", "/Patient/pc-1", patient(""), {{"Content-Type", "application/fhir+json"}});
    INFO(put.body);
    REQUIRE(put.status == 201);
  }
  {
    ServerProcess server({"--auth", "jwt", "--jwks", dir + "/keys/jwks.json", "--issuer", kTestIssuer, "--audience",
                          kTestAudience},
                         dir + "/cache.db");
    HttpClient c("127.0.0.1", server.port());
    const std::string owner = mint(dir + "/keys", {"--role", "patient", "--sub", "account-pc-1", "--patient", "pc-1"});
    const std::string doctor =
        mint(dir + "/keys", {"--role", "professional", "--sub", "account-dr-cache", "--fhir-user",
                             "Practitioner/dr-cache", "--rpps", "810000000099", "--profession", "10"});
    auto as = [&](const std::string& token, const std::string& method, const std::string& target,
                  const std::string& body = "") {
      std::vector<std::pair<std::string, std::string>> headers = {{"Authorization", "Bearer " + token},
                                                                  {"Accept", "application/fhir+json"}};
      if (!body.empty()) headers.emplace_back("Content-Type", "application/fhir+json");
      return c.request(method, target, body, headers);
    };
    auto doctor_reads = [&] { return as(doctor, "GET", "/Patient/pc-1"); };

    // Refused twice: the second answer comes from the remembered facts.
    HttpResponse before = doctor_reads();
    CHECK(before.status == 403);
    CHECK(before.body.find("NO_GRANT") != std::string::npos);
    CHECK(doctor_reads().status == 403);

    HttpResponse grant = as(owner, "POST", "/Consent", consent("", "active"));
    INFO(grant.body);
    REQUIRE(grant.status == 201);
    // Location: .../Consent/<id>/_history/1
    std::string location = grant.header("Location");
    size_t at = location.find("Consent/");
    REQUIRE(at != std::string::npos);
    std::string id = location.substr(at + 8);
    id = id.substr(0, id.find('/'));
    CHECK(doctor_reads().status == 200);
    CHECK(doctor_reads().status == 200);

    HttpResponse revoke = as(owner, "PUT", "/Consent/" + id, consent(id, "inactive"));
    INFO(revoke.body);
    REQUIRE(revoke.status == 200);
    HttpResponse after = doctor_reads();
    CHECK(after.status == 403);
    CHECK(after.body.find("NO_GRANT") != std::string::npos);

    HttpResponse named = as(owner, "PUT", "/Patient/pc-1", patient("Practitioner/dr-cache"));
    INFO(named.body);
    REQUIRE(named.status == 200);
    CHECK(doctor_reads().status == 200);
    HttpResponse removed = as(owner, "PUT", "/Patient/pc-1", patient(""));
    INFO(removed.body);
    REQUIRE(removed.status == 200);
    CHECK(doctor_reads().status == 403);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}
