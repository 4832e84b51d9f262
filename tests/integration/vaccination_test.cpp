// The vaccination booklet, the schedule's recommendation and the screening
// reminders through the real server (--auth none), on the synthetic family of
// test-data/family loaded as a transaction.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "espace/fhir/read_file.h"
#include "http_client.h"
#include "json_checks.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::json_of;
using espace::testing::ServerProcess;
using espace::testing::str;

namespace {

const char* kFhirJson = "application/fhir+json";

void load_family(HttpClient& c) {
  std::string bundle;
  REQUIRE(espace::fhir::read_file(std::string(ESPACE_SOURCE_DIR) + "/test-data/family/family-bundle.json", &bundle));
  HttpResponse r = c.request("POST", "/", bundle, {{"Content-Type", kFhirJson}});
  INFO(r.body.substr(0, 3000));
  REQUIRE(r.status == 200);
  auto d = json_of(r);
  for (const auto& e : d["entry"].GetArray()) CHECK(str(e["response"], "status").rfind("201", 0) == 0);
}

// The recommendation line whose targetDisease carries the schedule group `group`.
const rapidjson::Value* line_for(const rapidjson::Value& rec, const std::string& group) {
  if (!rec.HasMember("recommendation")) return nullptr;
  for (const auto& r : rec["recommendation"].GetArray())
    for (const auto& c : r["targetDisease"]["coding"].GetArray())
      if (str(c, "system") == "https://espace.example/fhir/CodeSystem/fr-vaccination-group" && str(c, "code") == group)
        return &r;
  return nullptr;
}

std::string forecast(const rapidjson::Value& line) { return str(line["forecastStatus"]["coding"][0], "code"); }
std::string rule(const rapidjson::Value& line) { return str(line["extension"][0]["valueCoding"], "code"); }

std::string date_criterion(const rapidjson::Value& line, const char* loinc) {
  if (!line.HasMember("dateCriterion")) return "";
  for (const auto& c : line["dateCriterion"].GetArray())
    if (str(c["code"]["coding"][0], "code") == loinc) return str(c, "value");
  return "";
}

}  // namespace

TEST_CASE("vaccination booklet: Lists by vaccine group, each record once, reliability", "[vaccination]") {
  ServerProcess server({"--strict-profiles"});  // the family must meet the French profiles
  HttpClient c("127.0.0.1", server.port());
  load_family(c);

  auto d = json_of(c.get("/Patient/family-hugo/$vaccination-booklet"));
  CHECK(str(d, "resourceType") == "Bundle");
  CHECK(str(d, "type") == "collection");
  std::vector<const rapidjson::Value*> lists, immunizations;
  for (const auto& e : d["entry"].GetArray()) {
    std::string type = str(e["resource"], "resourceType");
    if (type == "List") lists.push_back(&e);
    else if (type == "Immunization") immunizations.push_back(&e);
  }
  CHECK(immunizations.size() == 12);  // Hugo's records, each once
  // Lists come first; the DTP list holds the 3 hexavalent doses and the 2 boosters, by date.
  const rapidjson::Value* dtp = nullptr;
  const rapidjson::Value* other = nullptr;
  for (const rapidjson::Value* l : lists) {
    const rapidjson::Value& res = (*l)["resource"];
    CHECK(str(res["subject"], "reference") == "Patient/family-hugo");
    if (res.HasMember("code") && str(res["code"]["coding"][0], "code") == "dtp") dtp = &res;
    if (str(res, "title") == "Autres vaccinations") other = &res;
  }
  REQUIRE(dtp != nullptr);
  REQUIRE((*dtp)["entry"].Size() == 5);
  CHECK(str((*dtp)["entry"][0]["item"], "reference") == "Immunization/family-hugo-imm-04");
  CHECK(str((*dtp)["entry"][4]["item"], "reference") == "Immunization/family-hugo-imm-14");
  // The meningococcal C vaccine is not in the current schedule: listed apart, not lost.
  REQUIRE(other != nullptr);
  CHECK((*other)["entry"].Size() == 1);
  CHECK(str(d["entry"][0]["resource"], "resourceType") == "List");
  // Entries of the booklet sorted by group then date: the first record is the first hexavalent dose.
  CHECK(str((*immunizations.front())["resource"], "id") == "family-hugo-imm-04");
  auto reliability_of = [&](const std::string& id) {
    for (const rapidjson::Value* e : immunizations)
      if (str((*e)["resource"], "id") == id) return str((*e)["extension"][0]["valueCoding"], "code");
    return std::string("absent");
  };
  CHECK(reliability_of("family-hugo-imm-04") == "declared-documented");  // from his health booklet
  CHECK(reliability_of("family-hugo-imm-15") == "professional");        // HPV by the GP

  // Camille's 25-year booster is declared from memory.
  auto camille = json_of(c.get("/Patient/family-camille/$vaccination-booklet"));
  bool found_recall = false;
  for (const auto& e : camille["entry"].GetArray())
    if (str(e["resource"], "resourceType") == "Immunization" && e["resource"].HasMember("reportOrigin") &&
        str(e["resource"]["reportOrigin"]["coding"][0], "code") == "recall") {
      CHECK(str(e["extension"][0]["valueCoding"], "code") == "declared");
      found_recall = true;
    }
  CHECK(found_recall);

  // A record entered in error leaves the booklet.
  auto lea_before = json_of(c.get("/Patient/family-lea/$vaccination-booklet"));
  size_t lea_entries = lea_before["entry"].Size();
  auto rota = json_of(c.get("/Immunization/family-lea-imm-03"));
  rota["status"].SetString("entered-in-error");
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  rota.Accept(w);
  HttpResponse put = c.request("PUT", "/Immunization/family-lea-imm-03", buf.GetString(), {{"Content-Type", kFhirJson}});
  INFO(put.body);
  REQUIRE(put.status == 200);
  auto lea_after = json_of(c.get("/Patient/family-lea/$vaccination-booklet"));
  CHECK(lea_after["entry"].Size() == lea_entries - 2);  // the record and its (rotavirus) List
}

TEST_CASE("immunization recommendation for the family on a given date", "[vaccination]") {
  ServerProcess server({"--strict-profiles"});  // the family must meet the French profiles
  HttpClient c("127.0.0.1", server.port());
  load_family(c);

  // The grandmother (78): second zoster dose due, influenza and Covid done this autumn, RSV overdue.
  auto jeanne = json_of(c.get("/Patient/family-jeanne/$immunization-recommendation?date=2026-11-23"));
  CHECK(str(jeanne, "resourceType") == "ImmunizationRecommendation");
  CHECK(str(jeanne["patient"], "reference") == "Patient/family-jeanne");
  CHECK(str(jeanne, "date") == "2026-11-23");
  const rapidjson::Value* zoster = line_for(jeanne, "zoster");
  REQUIRE(zoster != nullptr);
  CHECK(forecast(*zoster) == "due");
  CHECK(rule(*zoster) == "zoster-65y");
  CHECK((*zoster)["doseNumberPositiveInt"].GetInt() == 2);
  CHECK(date_criterion(*zoster, "30980-7") == "2026-11-10");
  REQUIRE((*zoster)["supportingImmunization"].Size() == 1);
  CHECK(str((*zoster)["supportingImmunization"][0], "reference") == "Immunization/family-jeanne-imm-24");
  const rapidjson::Value* flu = line_for(jeanne, "influenza");
  REQUIRE(flu != nullptr);
  CHECK(forecast(*flu) == "complete");
  CHECK(str((*flu)["supportingImmunization"][0], "reference") == "Immunization/family-jeanne-imm-25");
  const rapidjson::Value* rsv = line_for(jeanne, "rsv");
  REQUIRE(rsv != nullptr);
  CHECK(forecast(*rsv) == "overdue");
  const rapidjson::Value* dtp = line_for(jeanne, "dtp");
  REQUIRE(dtp != nullptr);
  CHECK(forecast(*dtp) == "complete");
  CHECK(rule(*dtp) == "dtp-75y");
  CHECK(date_criterion(*dtp, "30980-7") == "2033-04-05");  // the 85-year booster
  CHECK(line_for(jeanne, "bcg") == nullptr);
  CHECK(line_for(jeanne, "hpv") == nullptr);

  // The father (47), through POST with a Parameters body: his 45-year dTP booster is overdue.
  const char* params = R"({"resourceType":"Parameters","parameter":[{"name":"date","valueDate":"2026-11-23"}]})";
  HttpResponse r = c.request("POST", "/Patient/family-thomas/$immunization-recommendation", params,
                             {{"Content-Type", kFhirJson}});
  auto thomas = json_of(r);
  REQUIRE(r.status == 200);
  const rapidjson::Value* thomas_dtp = line_for(thomas, "dtp");
  REQUIRE(thomas_dtp != nullptr);
  CHECK(forecast(*thomas_dtp) == "overdue");
  CHECK(rule(*thomas_dtp) == "dtp-45y");
  CHECK(date_criterion(*thomas_dtp, "59778-1") == "2025-01-31");
  CHECK(line_for(thomas, "influenza") == nullptr);  // under 65: not in the general schedule

  // The mother's 25-year booster is declared from memory only: it does not count.
  auto camille = json_of(c.get("/Patient/family-camille/$immunization-recommendation?date=2026-11-23"));
  const rapidjson::Value* camille_dtp = line_for(camille, "dtp");
  REQUIRE(camille_dtp != nullptr);
  CHECK(forecast(*camille_dtp) == "overdue");
  CHECK(rule(*camille_dtp) == "dtp-25y");
  CHECK_FALSE(camille_dtp->HasMember("supportingImmunization"));
  const rapidjson::Value* camille_mmr = line_for(camille, "mmr");  // documented in her booklet: counts
  REQUIRE(camille_mmr != nullptr);
  CHECK(forecast(*camille_mmr) == "complete");
  CHECK((*camille_mmr)["supportingImmunization"].Size() == 2);

  // The newborn after her 2-month visit: second doses in January, MenB now.
  auto lea = json_of(c.get("/Patient/family-lea/$immunization-recommendation?date=2026-11-23"));
  const rapidjson::Value* lea_dtp = line_for(lea, "dtp");
  REQUIRE(lea_dtp != nullptr);
  CHECK(forecast(*lea_dtp) == "due");
  CHECK((*lea_dtp)["doseNumberPositiveInt"].GetInt() == 2);
  CHECK(date_criterion(*lea_dtp, "30980-7") == "2027-01-02");
  const rapidjson::Value* menb = line_for(lea, "meningococcus-b");
  REQUIRE(menb != nullptr);
  CHECK(date_criterion(*menb, "30980-7") == "2026-12-02");

  // The teenager: second HPV dose due (2-dose scheme started at 13).
  auto hugo = json_of(c.get("/Patient/family-hugo/$immunization-recommendation?date=2026-11-23"));
  const rapidjson::Value* hpv = line_for(hugo, "hpv");
  REQUIRE(hpv != nullptr);
  CHECK(forecast(*hpv) == "due");
  CHECK(rule(*hpv) == "hpv-11-14y");
  CHECK((*hpv)["doseNumberPositiveInt"].GetInt() == 2);
}

TEST_CASE("screening reminders as CommunicationRequests", "[vaccination]") {
  ServerProcess server({"--strict-profiles"});  // the family must meet the French profiles
  HttpClient c("127.0.0.1", server.port());
  load_family(c);

  auto camille = json_of(c.get("/Patient/family-camille/$screening-reminders?date=2026-11-23"));
  CHECK(str(camille, "type") == "collection");
  REQUIRE(camille["entry"].Size() == 1);
  const auto& req = camille["entry"][0]["resource"];
  CHECK(str(req, "resourceType") == "CommunicationRequest");
  CHECK(str(req, "status") == "active");
  CHECK(str(req["subject"], "reference") == "Patient/family-camille");
  CHECK(str(req["reasonCode"][0]["coding"][0], "code") == "cervical-cancer-30-65");
  CHECK(str(req, "occurrenceDateTime") == "2018-06-21");  // from her 30th birthday, never done

  // The father turns 50 in January 2029: colorectal screening upcoming in late 2028, then due.
  auto thomas_2028 = json_of(c.get("/Patient/family-thomas/$screening-reminders?date=2028-12-01"));
  REQUIRE(thomas_2028["entry"].Size() == 1);
  CHECK(str(thomas_2028["entry"][0]["resource"]["extension"][0], "valueCode") == "upcoming");
  CHECK(str(thomas_2028["entry"][0]["resource"], "occurrenceDateTime") == "2029-01-30");
  auto thomas_now = json_of(c.get("/Patient/family-thomas/$screening-reminders?date=2026-11-23"));
  CHECK_FALSE(thomas_now.HasMember("entry"));

  // The grandmother (78) is past every organised programme.
  auto jeanne = json_of(c.get("/Patient/family-jeanne/$screening-reminders?date=2026-11-23"));
  CHECK_FALSE(jeanne.HasMember("entry"));
}

TEST_CASE("vaccination operations refuse bad input with clear errors", "[vaccination]") {
  ServerProcess server({"--strict-profiles"});  // the family must meet the French profiles
  HttpClient c("127.0.0.1", server.port());
  load_family(c);

  HttpResponse bad_date = c.get("/Patient/family-lea/$immunization-recommendation?date=2026-13-01");
  CHECK(bad_date.status == 400);
  CHECK(bad_date.body.find("date") != std::string::npos);
  CHECK(c.get("/Patient/family-lea/$immunization-recommendation?date=2026-11").status == 400);
  HttpResponse before_birth = c.get("/Patient/family-lea/$immunization-recommendation?date=2020-01-01");
  CHECK(before_birth.status == 400);
  CHECK(before_birth.body.find("birth") != std::string::npos);
  CHECK(c.get("/Patient/nobody/$vaccination-booklet").status == 404);
  CHECK(c.get("/Patient/nobody/$immunization-recommendation").status == 404);
  // Defined on Patient instances only.
  CHECK(c.get("/Observation/family-thomas-weight-2026-10/$immunization-recommendation").status == 404);
  CHECK(c.get("/Patient/$vaccination-booklet").status == 404);
  // A birth date known to the year only cannot be evaluated.
  const char* year_only = R"({"resourceType":"Patient","id":"year-only","meta":{"profile":["https://espace.example/fhir/StructureDefinition/fr-patient-ins"]},
    "extension":[{"url":"https://espace.example/fhir/StructureDefinition/identity-reliability","extension":[{"url":"identityStatus","valueCoding":{"system":"https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-identity-status","code":"QUAL"}}]}],
    "identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.10","value":"180017511503443"}],
    "name":[{"family":"ANNEE","given":["ALEX"]}],"gender":"male","birthDate":"1980"})";
  HttpResponse put = c.request("PUT", "/Patient/year-only", year_only, {{"Content-Type", kFhirJson}});
  INFO(put.body);
  REQUIRE(put.status == 201);
  HttpResponse r = c.get("/Patient/year-only/$immunization-recommendation");
  CHECK(r.status == 422);
  CHECK(r.body.find("birthDate") != std::string::npos);
  // Its booklet is an empty collection (no empty array), and a deleted patient is gone.
  auto empty = json_of(c.get("/Patient/year-only/$vaccination-booklet"));
  CHECK(str(empty, "type") == "collection");
  CHECK_FALSE(empty.HasMember("entry"));
  REQUIRE(c.request("DELETE", "/Patient/year-only").status < 300);
  CHECK(c.get("/Patient/year-only/$vaccination-booklet").status == 410);
}
