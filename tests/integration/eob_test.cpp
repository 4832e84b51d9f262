// Reimbursements as ExplanationOfBenefit through the real binary: the family
// data (test-data/family) behind `espace serve --auth jwt --strict-profiles`.
// Everyone reads per the rules (the patient their own, the GP theirs, nobody
// another patient's); only a system acting for itself (restricted_writers of
// roles.json: WRITER_PROFESSION) with the scope to write loads them, and only
// into records it may reach. A patient's export carries their reimbursements.
#include <rapidjson/document.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "family_deployment.h"
#include "http_client.h"
#include "json_checks.h"

using espace::testing::HttpResponse;
using espace::testing::json_of;
using espace::testing::str;

namespace {

const std::string kInsurerIdnst = "393000000000016";  // Organization/family-cpam

std::string eob(const std::string& id, const std::string& patient, double benefit = 19.0) {
  std::string amount = std::to_string(benefit);
  return R"({"resourceType":"ExplanationOfBenefit","id":")" + id + R"(","status":"active",
    "type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"professional"}]},
    "use":"claim","patient":{"reference":"Patient/)" + patient + R"("},"created":"2026-11-20",
    "insurer":{"reference":"Organization/family-cpam"},"provider":{"reference":"Practitioner/family-dr-roussel"},
    "outcome":"complete","insurance":[{"focal":true,"coverage":{"reference":"Coverage/)" + patient + R"(-amo"}}],
    "total":[{"category":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/adjudication","code":"benefit"}]},
              "amount":{"value":)" + amount + R"(,"currency":"EUR"}}]})";
}

std::set<std::string> entry_ids(const rapidjson::Value& bundle) {
  std::set<std::string> out;
  if (bundle.HasMember("entry"))
    for (const auto& e : bundle["entry"].GetArray()) out.insert(str(e["resource"], "id"));
  return out;
}

// The family (family_deployment.h) with the insurer's systems and the GP's
// practice software as callers; Thomas lets the insurer into his record
// (Camille does not).
class Deployment : public family_test::FamilyDeployment {
 public:
  Deployment() {
    mint("insurer", {"--role", "system", "--sub", "cpam-system", "--organization", kInsurerIdnst, "--scope",
                     "system/ExplanationOfBenefit.cru system/Patient.r"});
    mint("insurer-read-only", {"--role", "system", "--sub", "cpam-reader", "--organization", kInsurerIdnst,
                               "--scope", "system/ExplanationOfBenefit.rs"});
    mint("gp-system", {"--role", "system", "--sub", "msp-software", "--organization", "1930007125", "--profession",
                       "10"});
    HttpResponse grant = as("thomas", "POST", "/Consent", R"({"resourceType":"Consent","status":"active",
      "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
      "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
      "patient":{"reference":"Patient/family-thomas"},"dateTime":"2026-11-01T10:00:00+01:00",
      "policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
      "provision":{"type":"permit","actor":[
        {"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PRCP"}]},
         "reference":{"reference":"Organization/family-cpam"}}]}})");
    INFO(grant.body);
    REQUIRE(grant.status == 201);
  }
};

}  // namespace

TEST_CASE("reimbursements are read per the rules", "[eob][integration]") {
  Deployment d;
  HttpResponse own = d.as("thomas", "GET", "/ExplanationOfBenefit?patient=family-thomas");
  REQUIRE(own.status == 200);
  CHECK(entry_ids(json_of(own)) ==
        std::set<std::string>{"family-thomas-eob-2026-10-consultation", "family-thomas-eob-2026-10-pharmacie"});
  // A search without naming the patient is narrowed to the patient's own record.
  CHECK(entry_ids(json_of(d.as("thomas", "GET", "/ExplanationOfBenefit"))).count("family-camille-eob-2026-09-consultation") == 0);
  CHECK(d.as("thomas", "GET", "/ExplanationOfBenefit/family-camille-eob-2026-09-consultation").status == 404);
  CHECK(d.as("camille", "GET", "/ExplanationOfBenefit/family-camille-eob-2026-09-consultation").status == 200);
  CHECK(d.as("thomas", "GET", "/ExplanationOfBenefit?patient=family-camille").status == 403);
  // The GP reads the reimbursements of the patients they follow.
  CHECK(d.as("gp", "GET", "/ExplanationOfBenefit/family-thomas-eob-2026-10-pharmacie").status == 200);
  auto coverage = json_of(d.as("thomas", "GET", "/Coverage?beneficiary=family-thomas"));
  CHECK(entry_ids(coverage) == std::set<std::string>{"family-thomas-amo"});
}

TEST_CASE("reimbursements are written by the insurer's system only", "[eob][integration]") {
  Deployment d;
  // Patients, professionals and systems acting for a professional: read-only.
  HttpResponse by_patient = d.as("thomas", "POST", "/ExplanationOfBenefit", eob("x1", "family-thomas"));
  CHECK(by_patient.status == 403);
  CHECK(by_patient.body.find("PATIENT_WRITE") != std::string::npos);
  HttpResponse by_gp = d.as("gp", "PUT", "/ExplanationOfBenefit/family-thomas-eob-2026-10-consultation",
                            eob("family-thomas-eob-2026-10-consultation", "family-thomas", 30.0));
  CHECK(by_gp.status == 403);
  CHECK(by_gp.body.find("WRITER_PROFESSION") != std::string::npos);
  CHECK(d.as("gp", "DELETE", "/ExplanationOfBenefit/family-thomas-eob-2026-10-consultation").status == 403);
  HttpResponse by_gp_software = d.as("gp-system", "POST", "/ExplanationOfBenefit", eob("x2", "family-thomas"));
  CHECK(by_gp_software.status == 403);
  CHECK(d.as("thomas", "DELETE", "/ExplanationOfBenefit/family-thomas-eob-2026-10-consultation").status == 403);
  // Scopes: reading is not writing.
  HttpResponse reader = d.as("insurer-read-only", "POST", "/ExplanationOfBenefit", eob("x3", "family-thomas"));
  CHECK(reader.status == 403);
  CHECK(reader.body.find("SCOPE") != std::string::npos);

  // The insurer loads a new reimbursement into a record it was let into...
  HttpResponse created = d.as("insurer", "PUT", "/ExplanationOfBenefit/family-thomas-eob-2026-11-consultation",
                              eob("family-thomas-eob-2026-11-consultation", "family-thomas"));
  INFO(created.body);
  CHECK(created.status == 201);
  HttpResponse corrected = d.as("insurer", "PUT", "/ExplanationOfBenefit/family-thomas-eob-2026-11-consultation",
                                eob("family-thomas-eob-2026-11-consultation", "family-thomas", 21.0));
  CHECK(corrected.status == 200);
  CHECK(d.as("thomas", "GET", "/ExplanationOfBenefit/family-thomas-eob-2026-11-consultation").status == 200);
  // ...and not into one it was not (answered like any record it may not reach).
  HttpResponse elsewhere = d.as("insurer", "POST", "/ExplanationOfBenefit", eob("x4", "family-camille"));
  CHECK(elsewhere.status == 403);
  // Nothing refused was stored.
  auto all = entry_ids(json_of(d.as("gp", "GET", "/ExplanationOfBenefit?patient=family-thomas")));
  CHECK(all == std::set<std::string>{"family-thomas-eob-2026-10-consultation", "family-thomas-eob-2026-10-pharmacie",
                                     "family-thomas-eob-2026-11-consultation"});
}

TEST_CASE("a patient's export carries their reimbursements", "[eob][export][integration]") {
  Deployment d;
  HttpResponse started =
      d.as("thomas", "GET", "/Patient/family-thomas/$export?_type=ExplanationOfBenefit,Coverage", "",
           {{"Prefer", "respond-async"}});
  REQUIRE(started.status == 202);
  std::string status = started.header("Content-Location");
  status = status.substr(status.find("/$export-poll-status"));
  HttpResponse done;
  for (int i = 0; i < 600; ++i) {
    done = d.as("thomas", "GET", status);
    if (done.status != 202) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE(done.status == 200);
  auto manifest = json_of(done);
  std::map<std::string, int64_t> counts;
  for (const auto& o : manifest["output"].GetArray()) counts[str(o, "type")] = o["count"].GetInt64();
  CHECK(counts == std::map<std::string, int64_t>{{"Coverage", 1}, {"ExplanationOfBenefit", 2}});
}
