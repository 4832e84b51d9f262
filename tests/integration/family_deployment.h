// The synthetic family (test-data/family) behind the real `espace serve
// --auth jwt --strict-profiles`, with tokens minted by `espace token mint`
// for the people the prescription and medical-profile tests act as:
//   thomas      the adult with diabetes and hypertension (patient)
//   camille     his wife, a patient of her own record
//   gp          Dr Roussel, Thomas's médecin traitant (RPPS 10123456781)
//   pharmacist  a pharmacist of the Pharmacie des Lilas (FINESS 1930008453)
//   nurse       a nurse known by RPPS only
//   midwife     a midwife with no grant on Thomas's record
//   parent      Camille as legal representative of Léa (the newborn)
//   pharmacy-system  the pharmacy's software (system role, the pharmacy's FINESS)
// Thomas grants the pharmacy and the nurse access (Consent permit) at set-up,
// as a patient does in the DMP. `extra` resources are stored with the family
// by an open server before the DMP policy starts.
#pragma once

#include <rapidjson/document.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "espace/fhir/read_file.h"
#include "dev_tokens.h"
#include "http_client.h"
#include "json_checks.h"
#include "server_process.h"

namespace family_test {

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::run_espace;
using espace::testing::ServerProcess;
using espace::testing::kTestIssuer;
using espace::testing::kTestAudience;
using espace::testing::mint_dev_token;
using espace::testing::init_dev_keys;

inline const char* kFhirJson = "application/fhir+json";
inline const std::string kPharmacyFiness = "1930008453";
inline const std::string kNurseRpps = "810009876540";

class FamilyDeployment {
 public:
  explicit FamilyDeployment(const std::vector<std::string>& extra = {}) {
    char tmpl[] = "/tmp/espace-family-it-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    init_dev_keys(dir_ + "/keys");
    {
      ServerProcess open({"--strict-profiles"}, dir_ + "/family.db");
      HttpClient c("127.0.0.1", open.port());
      std::string bundle;
      REQUIRE(espace::fhir::read_file(std::string(ESPACE_SOURCE_DIR) + "/test-data/family/family-bundle.json", &bundle));
      HttpResponse r = c.request("POST", "/", bundle, {{"Content-Type", kFhirJson}});
      INFO(r.body.substr(0, 2000));
      REQUIRE(r.status == 200);
      for (const std::string& body : extra) {
        rapidjson::Document d;
        d.Parse(body.c_str());
        REQUIRE_FALSE(d.HasParseError());
        HttpResponse put = c.request(
            "PUT", "/" + std::string(d["resourceType"].GetString()) + "/" + d["id"].GetString(), body,
            {{"Content-Type", kFhirJson}});
        INFO(put.body);
        REQUIRE(put.status == 201);
      }
    }
    server_ = std::make_unique<ServerProcess>(
        std::vector<std::string>{"--strict-profiles", "--auth", "jwt", "--jwks", dir_ + "/keys/jwks.json", "--issuer",
                                 kTestIssuer, "--audience", kTestAudience},
        dir_ + "/family.db");
    client_ = std::make_unique<HttpClient>("127.0.0.1", server_->port());

    mint("thomas", {"--role", "patient", "--fhir-user", "Patient/family-thomas", "--patient", "family-thomas"});
    mint("camille", {"--role", "patient", "--fhir-user", "Patient/family-camille", "--patient", "family-camille"});
    mint("gp", {"--role", "professional", "--fhir-user", "Practitioner/family-dr-roussel", "--rpps", "10123456781",
                "--profession", "10", "--organization", "1930007125"});
    mint("pharmacist", {"--role", "professional", "--sub", "pharmacist-lilas", "--rpps", "820001112224",
                        "--profession", "21", "--organization", kPharmacyFiness});
    mint("nurse", {"--role", "professional", "--sub", "nurse-lilas", "--rpps", kNurseRpps, "--profession", "60"});
    mint("parent", {"--role", "legal-representative", "--fhir-user", "RelatedPerson/family-lea-mother", "--represents",
                    "family-lea"});
    // The pharmacy's dispensing software, acting for the pharmacy (FINESS) Thomas granted.
    mint("pharmacy-system", {"--role", "system", "--sub", "lgo-pharmacie-lilas", "--organization", kPharmacyFiness});
    mint("midwife", {"--role", "professional", "--sub", "midwife-elsewhere", "--rpps", "810005550001",
                     "--profession", "50"});

    // Thomas lets his pharmacy and his nurse into his record.
    HttpResponse grant = as("thomas", "POST", "/Consent", R"({"resourceType":"Consent","status":"active",
      "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
      "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
      "patient":{"reference":"Patient/family-thomas"},"dateTime":"2026-11-01T10:00:00+01:00",
      "policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
      "provision":{"type":"permit","actor":[
        {"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PRCP"}]},
         "reference":{"reference":"Organization/family-pharmacie-lilas"}},
        {"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PRCP"}]},
         "reference":{"type":"Practitioner","identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":")" +
                                               kNurseRpps + R"("}}}]}})");
    INFO(grant.body);
    REQUIRE(grant.status == 201);
  }
  ~FamilyDeployment() {
    client_.reset();
    server_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  FamilyDeployment(const FamilyDeployment&) = delete;
  FamilyDeployment& operator=(const FamilyDeployment&) = delete;

  HttpResponse as(const std::string& caller, const std::string& method, const std::string& target,
                  const std::string& body = "", const std::vector<std::pair<std::string, std::string>>& extra = {}) {
    std::vector<std::pair<std::string, std::string>> headers = {{"Authorization", "Bearer " + tokens_.at(caller)},
                                                                {"Accept", kFhirJson}};
    if (!body.empty()) headers.emplace_back("Content-Type", kFhirJson);
    headers.insert(headers.end(), extra.begin(), extra.end());
    return client_->request(method, target, body, headers);
  }
  // Adds a caller `name` whose token carries these claim flags (a test's own
  // callers beside the family's).
  void mint(const std::string& name, const std::vector<std::string>& claims) {
    tokens_[name] = mint_dev_token(dir_ + "/keys", claims);
  }

 private:

  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<HttpClient> client_;
  std::map<std::string, std::string> tokens_;
};

// The ids of a searchset's matches, sorted.
inline std::vector<std::string> match_ids(const HttpResponse& r) {
  std::vector<std::string> ids;
  rapidjson::Document d = espace::testing::json_of(r);
  if (d.IsObject() && d.HasMember("entry"))
    for (const auto& e : d["entry"].GetArray())
      if (e.HasMember("search") && espace::testing::str(e["search"], "mode") == "match")
        ids.push_back(espace::testing::str(e["resource"], "id"));
  std::sort(ids.begin(), ids.end());
  return ids;
}

// The first issue's diagnostics and message id of an OperationOutcome.
inline std::string diagnostics(const HttpResponse& r) {
  rapidjson::Document d = espace::testing::json_of(r);
  if (!d.IsObject() || !d.HasMember("issue") || d["issue"].Empty()) return "";
  return espace::testing::str(d["issue"][0], "diagnostics");
}

// Every issue of an OperationOutcome as "message-id @ expression" (message
// ids are issue.details.coding codes).
inline std::vector<std::string> issue_ids(const HttpResponse& r) {
  std::vector<std::string> out;
  rapidjson::Document d = espace::testing::json_of(r);
  if (!d.IsObject() || !d.HasMember("issue")) return out;
  for (const auto& i : d["issue"].GetArray()) {
    if (espace::testing::str(i, "severity") != "error") continue;
    std::string id;
    if (i.HasMember("details") && i["details"].HasMember("coding"))
      for (const auto& c : i["details"]["coding"].GetArray()) id = espace::testing::str(c, "code");
    std::string where;
    if (i.HasMember("expression") && i["expression"].IsArray() && !i["expression"].Empty())
      where = i["expression"][0].GetString();
    out.push_back(id + " @ " + where);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace family_test
