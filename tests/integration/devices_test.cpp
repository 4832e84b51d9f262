// Connected devices and apps (issue 9) through the real server under the DMP
// policy: an app (system token, client id) pushes measurements only for a
// patient whose active device-app-connection Consent names it, for a purpose
// that Consent lists (DEVICE_APP_CONSENT), and then sees and writes only its
// own Device's measurements, which declare fr-device-observation
// (DEVICE_APP_DATA); Observation and Provenance go in one transaction; the
// purge (`espace purge`, serve --purge-interval) removes what is past the
// Consent's retention, with its Provenance, and audits it.
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "http_client.h"
#include "issue9_deployment.h"
#include "json_checks.h"
#include "server_process.h"

using espace::testing::entry_count;
using espace::testing::HttpResponse;
using espace::testing::Issue9Deployment;
using espace::testing::json_of;
using espace::testing::names_rule;
using espace::testing::run_espace;
using espace::testing::str;
using espace::testing::TokenSpec;

namespace {

const char* kRpps = "10000000001";

std::string app_consent(const std::string& id, const std::string& client, const std::string& start,
                        const std::string& end, const std::string& purposes, int retention_days) {
  return R"({"resourceType":"Consent","id":")" + id + R"(","status":"active",
    "extension":[{"url":"https://espace.example/fhir/StructureDefinition/device-data-retention-days","valueUnsignedInt":)" +
         std::to_string(retention_days) + R"(}],
    "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
    "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"},
                           {"system":"https://espace.example/fhir/CodeSystem/consent-category","code":"device-app-connection"}]}],
    "patient":{"reference":"Patient/pat-d"},"dateTime":"2020-01-01T00:00:00Z","policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
    "provision":{"type":"permit","period":{"start":")" + start + R"(","end":")" + end + R"("},
      "actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PRCP"}]},
                "reference":{"identifier":{"system":"https://espace.example/fhir/sid/app-client-id","value":")" +
         client + R"("}}}],
      "purpose":[)" + purposes + R"(]}})";
}

std::string purpose(const std::string& code) {
  return R"({"system":"https://espace.example/fhir/CodeSystem/device-data-purpose","code":")" + code + R"("})";
}

std::string app_device(const std::string& id, const std::string& client) {
  return R"({"resourceType":"Device","id":")" + id +
         R"(","identifier":[{"system":"https://espace.example/fhir/sid/app-client-id","value":")" + client +
         R"("}],"status":"active","deviceName":[{"name":")" + client + R"(","type":"user-friendly-name"}]})";
}

// A glycaemia measurement of pat-d by `device`, as the app sends it.
std::string glucose(const std::string& device, const std::string& when, double mg_dl, bool declare_profile = true,
                    const std::string& unit = "mg/dL") {
  std::string meta = declare_profile
                         ? R"("meta":{"profile":["https://espace.example/fhir/StructureDefinition/fr-device-observation"]},)"
                         : "";
  return R"({"resourceType":"Observation",)" + meta + R"("status":"final",
    "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
    "code":{"coding":[{"system":"http://loinc.org","code":"41653-7","display":"Glucose [Mass/volume] in Capillary blood by Glucometer"}]},
    "subject":{"reference":"Patient/pat-d"},"effectiveDateTime":")" + when + R"(",
    "device":{"reference":"Device/)" + device + R"("},
    "valueQuantity":{"value":)" + std::to_string(mg_dl) + R"(,"unit":")" + unit +
         R"(","system":"http://unitsofmeasure.org","code":")" + unit + R"("}})";
}

// Observation + Provenance (target the Observation, agent the Device) in one transaction.
std::string measurement_transaction(const std::string& device, const std::string& when, double mg_dl) {
  return R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"fullUrl":"urn:uuid:6d1f4c1e-0000-4000-8000-000000000001","resource":)" + glucose(device, when, mg_dl) + R"(,
     "request":{"method":"POST","url":"Observation"}},
    {"fullUrl":"urn:uuid:6d1f4c1e-0000-4000-8000-000000000002","resource":{"resourceType":"Provenance",
       "target":[{"reference":"urn:uuid:6d1f4c1e-0000-4000-8000-000000000001"}],"recorded":")" + when + R"(",
       "agent":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/provenance-participant-type","code":"device"}]},
                 "who":{"reference":"Device/)" + device + R"("}}]},
     "request":{"method":"POST","url":"Provenance"}}]})";
}

std::vector<std::string> seed() {
  return {
      R"({"resourceType":"Practitioner","id":"dr-gp","identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.1","value":")" +
          std::string(kRpps) + R"("}],"name":[{"family":"Martin"}]})",
      R"({"resourceType":"Patient","id":"pat-d","name":[{"family":"Durand","given":["Lucie"]}],"gender":"female",
          "birthDate":"1961-04-02","generalPractitioner":[{"reference":"Practitioner/dr-gp"}]})",
      app_device("dev-gluco", "gluco-app"),
      app_device("dev-other", "other-app"),
      app_device("dev-old", "old-app"),
      app_consent("consent-gluco", "gluco-app", "2020-01-01", "2099-12-31",
                  purpose("follow-up") + "," + purpose("prevention"), 30),
      app_consent("consent-old", "old-app", "2019-01-01", "2021-01-01", purpose("follow-up"), 30),
      // A laboratory result: the patient's record, not any app's.
      R"({"resourceType":"Observation","id":"obs-lab","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
          "code":{"coding":[{"system":"http://loinc.org","code":"2339-0"}]},"subject":{"reference":"Patient/pat-d"},
          "effectiveDateTime":"2026-10-01","valueQuantity":{"value":1.1,"unit":"g/L","system":"http://unitsofmeasure.org","code":"g/L"}})",
  };
}

std::map<std::string, TokenSpec> callers() {
  auto app = [](const std::string& client, const std::string& purpose_of_use) {
    return TokenSpec{"system", client + "-sub", {{"client-id", client}, {"purpose", purpose_of_use}}};
  };
  return {
      {"gluco", app("gluco-app", "follow-up")},
      {"gluco-care", app("gluco-app", "care")},  // a purpose the Consent does not list
      {"other", app("other-app", "follow-up")},  // never connected
      {"old", app("old-app", "follow-up")},      // its Consent ended in 2021
      {"gp", {"professional", "gp-sub", {{"rpps", kRpps}, {"profession", "10"}}}},
      {"patient", {"patient", "pat-d-sub", {{"patient", "pat-d"}, {"fhir-user", "Patient/pat-d"}}}},
  };
}

// Location "…/Observation/<id>/_history/1" of a transaction-response entry.
std::string created(const rapidjson::Value& bundle, size_t entry) {
  std::string location = bundle["entry"][static_cast<rapidjson::SizeType>(entry)]["response"]["location"].GetString();
  location = location.substr(0, location.find("/_history"));
  size_t id_slash = location.rfind('/');
  size_t type_slash = location.rfind('/', id_slash - 1);
  return location.substr(type_slash + 1);
}

}  // namespace

TEST_CASE("devices: a connected app pushes measurements only under the patient's consent", "[integration][devices]") {
  Issue9Deployment d(seed(), callers());

  HttpResponse tx = d.as("gluco", "POST", "/", measurement_transaction("dev-gluco", "2026-11-20T07:30:00Z", 104));
  INFO(tx.body);
  REQUIRE(tx.status == 200);
  rapidjson::Document answer = json_of(tx);
  const std::string obs = created(answer, 0), prov = created(answer, 1);
  REQUIRE(obs.starts_with("Observation/"));
  REQUIRE(prov.starts_with("Provenance/"));

  SECTION("the app sees its own measurements and nothing else of the record") {
    HttpResponse mine = d.as("gluco", "GET", "/Observation?patient=Patient/pat-d");
    REQUIRE(mine.status == 200);
    CHECK(entry_count(mine) == 1);
    CHECK(mine.body.find(obs.substr(12)) != std::string::npos);
    CHECK(mine.body.find("obs-lab") == std::string::npos);
    CHECK(d.as("gluco", "GET", "/Observation/obs-lab").status == 404);
    CHECK(d.as("gluco", "GET", "/Patient/pat-d").status == 404);
    // The Provenance names its source, the app's Device. (It targets no
    // Patient: like every resource without a patient link, systems only see it.)
    HttpResponse p = d.as("gluco", "GET", "/" + prov);
    REQUIRE(p.status == 200);
    CHECK(p.body.find("Device/dev-gluco") != std::string::npos);
    CHECK(p.body.find(obs) != std::string::npos);
  }
  SECTION("the GP sees the measurement; the patient too") {
    CHECK(d.as("gp", "GET", "/" + obs).status == 200);
    CHECK(d.as("patient", "GET", "/" + obs).status == 200);
  }
  SECTION("an app writes only measurements of its own Device, declaring the profile") {
    HttpResponse foreign = d.as("gluco", "POST", "/Observation", glucose("dev-other", "2026-11-20T08:00:00Z", 99));
    CHECK(foreign.status == 403);
    CHECK(names_rule(foreign, "DEVICE_APP_DATA"));
    HttpResponse undeclared =
        d.as("gluco", "POST", "/Observation", glucose("dev-gluco", "2026-11-20T08:00:00Z", 99, false));
    CHECK(undeclared.status == 403);
    CHECK(names_rule(undeclared, "DEVICE_APP_DATA"));
    HttpResponse condition = d.as("gluco", "POST", "/Condition",
                                  R"({"resourceType":"Condition","subject":{"reference":"Patient/pat-d"},
                                      "code":{"text":"diabetes"}})");
    CHECK(condition.status == 403);
    // The profile applies: a unit it does not know is unprocessable.
    HttpResponse bad_unit =
        d.as("gluco", "POST", "/Observation", glucose("dev-gluco", "2026-11-20T08:00:00Z", 5.5, true, "mg"));
    CHECK(bad_unit.status == 422);
    CHECK(bad_unit.body.find("espace-devobs-3") != std::string::npos);
    HttpResponse single = d.as("gluco", "POST", "/Observation", glucose("dev-gluco", "2026-11-21T08:00:00Z", 120));
    CHECK(single.status == 201);
  }
  SECTION("an app the patient never connected, an ended consent, a purpose not consented: 403") {
    for (const char* caller : {"other", "old", "gluco-care"}) {
      HttpResponse r = d.as(caller, "POST", "/Observation",
                            glucose(std::string(caller) == "other" ? "dev-other" : std::string(caller) == "old"
                                                                                         ? "dev-old"
                                                                                         : "dev-gluco",
                                    "2026-11-20T09:00:00Z", 101));
      INFO(caller << ": " << r.body);
      CHECK(r.status == 403);
      // The same answer as for a patient never written: no oracle on the record.
      CHECK(names_rule(r, "NO_GRANT"));
      HttpResponse read = d.as(caller, "GET", "/Observation?patient=Patient/pat-d");
      CHECK(read.status == 403);
    }
    // Each refusal is in the audit trail: the patient sees them in their access history.
    HttpResponse history = d.as("patient", "GET", "/AuditEvent?patient=Patient/pat-d&_count=1000");
    REQUIRE(history.status == 200);
    CHECK(history.body.find("other-app") != std::string::npos);
    CHECK(history.body.find("old-app") != std::string::npos);
    // An app's purpose is named in the system it comes from, not as an HL7 v3 ActReason.
    CHECK(history.body.find(R"({"system":"https://espace.example/fhir/CodeSystem/device-data-purpose","code":"care"})") !=
          std::string::npos);
    CHECK(history.body.find(R"(v3-ActReason","code":"care")") == std::string::npos);
  }
  SECTION("the patient withdraws the connection: the app is refused from then on") {
    HttpResponse consent = d.as("patient", "GET", "/Consent/consent-gluco");
    REQUIRE(consent.status == 200);
    std::string body = consent.body;
    size_t at = body.find("\"status\":\"active\"");
    REQUIRE(at != std::string::npos);
    body.replace(at, 17, "\"status\":\"inactive\"");
    HttpResponse withdrawn = d.as("patient", "PUT", "/Consent/consent-gluco", body);
    INFO(withdrawn.body);
    REQUIRE(withdrawn.status == 200);
    CHECK(d.as("gluco", "POST", "/Observation", glucose("dev-gluco", "2026-11-22T08:00:00Z", 110)).status == 403);
    CHECK(d.as("gluco", "GET", "/" + obs).status == 404);
  }
}

TEST_CASE("devices: the purge removes measurements past the consent's retention, with their provenance",
          "[integration][devices]") {
  Issue9Deployment d(seed(), callers());
  // Retention 30 days: at 2026-11-25 the June measurement is past it, the November one is not.
  HttpResponse old_tx = d.as("gluco", "POST", "/", measurement_transaction("dev-gluco", "2026-06-01T07:00:00Z", 98));
  HttpResponse new_tx = d.as("gluco", "POST", "/", measurement_transaction("dev-gluco", "2026-11-20T07:00:00Z", 131));
  REQUIRE(old_tx.status == 200);
  REQUIRE(new_tx.status == 200);
  rapidjson::Document old_answer = json_of(old_tx), new_answer = json_of(new_tx);
  const std::string old_obs = created(old_answer, 0), old_prov = created(old_answer, 1);
  const std::string new_obs = created(new_answer, 0), new_prov = created(new_answer, 1);

  SECTION("espace purge --now") {
    d.stop();
    std::string out, err;
    REQUIRE(run_espace({"purge", "--db", d.db(), "--now", "2026-11-25T00:00:00Z"}, &out, &err) == 0);
    INFO(out << err);
    CHECK(out.find("removed " + old_obs + "\n") != std::string::npos);
    CHECK(out.find("removed " + old_prov + "\n") != std::string::npos);
    CHECK(out.find(new_obs) == std::string::npos);
    CHECK(out.find("2 resources removed") != std::string::npos);
    // A second run finds nothing more.
    std::string again;
    REQUIRE(run_espace({"purge", "--db", d.db(), "--now", "2026-11-25T00:00:00Z"}, &again) == 0);
    CHECK(again.find("0 resources removed") != std::string::npos);
    d.start();
    // Erased, not deleted: no version is left, not even in the history.
    CHECK(d.as("gp", "GET", "/" + old_obs).status == 404);
    CHECK(d.as("gp", "GET", "/" + old_obs + "/_history/1").status == 404);
    CHECK(d.as("gluco", "GET", "/" + old_prov).status == 404);
    CHECK(d.as("gluco", "GET", "/" + old_prov + "/_history/1").status == 404);
    CHECK(d.as("gp", "GET", "/" + old_obs + "/_history").status == 404);
    CHECK(d.as("gp", "GET", "/" + new_obs).status == 200);
    CHECK(d.as("gluco", "GET", "/" + new_prov).status == 200);
    CHECK(d.as("gp", "GET", "/Observation/obs-lab").status == 200);  // not an app's: never purged
    // The purge is in the patient's access history, naming what it removed.
    HttpResponse history = d.as("patient", "GET", "/AuditEvent?patient=Patient/pat-d&_count=1000");
    REQUIRE(history.status == 200);
    INFO(history.body);
    CHECK(history.body.find("DEVICE_DATA_RETENTION") != std::string::npos);
    CHECK(history.body.find(old_obs) != std::string::npos);
  }
  SECTION("espace purge beside a running server refuses and removes nothing") {
    std::string out, err;
    CHECK(run_espace({"purge", "--db", d.db(), "--now", "2026-11-25T00:00:00Z"}, &out, &err) == 1);
    INFO(out << err);
    CHECK(err.find("a running server holds the audit trail") != std::string::npos);
    CHECK(d.as("gp", "GET", "/" + old_obs).status == 200);
  }
  SECTION("a deleted consent keeps nothing") {
    HttpResponse withdrawn = d.as("patient", "DELETE", "/Consent/consent-gluco");
  REQUIRE((withdrawn.status == 200 || withdrawn.status == 204));
    d.stop();
    std::string out;
    REQUIRE(run_espace({"purge", "--db", d.db(), "--now", "2026-11-25T00:00:00Z"}, &out) == 0);
    CHECK(out.find("removed " + old_obs + "\n") != std::string::npos);
    CHECK(out.find("removed " + new_obs + "\n") != std::string::npos);
    CHECK(out.find("4 resources removed") != std::string::npos);
  }
  SECTION("serve --purge-interval runs the purge on its own") {
    // The real clock is past 2026-06-01 + 30 days: the June measurement goes at the first run.
    d.start({"--purge-interval", "1"});
    int status = 200;
    for (int i = 0; i < 100 && status == 200; ++i) {
      status = d.as("gp", "GET", "/" + old_obs).status;
      if (status == 200) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    CHECK(status == 404);
    CHECK(d.as("gp", "GET", "/" + new_obs).status == 200);
  }
}

TEST_CASE("devices: the synthetic family's connected care (tools/run data)", "[integration][devices][family]") {
  std::map<std::string, TokenSpec> family_callers = {
      {"glyco", {"system", "glyco-sub", {{"client-id", "glyco-suivi"}, {"purpose", "follow-up"}}}},
      {"glyco-research", {"system", "glyco-sub", {{"client-id", "glyco-suivi"}, {"purpose", "prevention"}}}},
      {"thomas", {"patient", "thomas-sub", {{"patient", "family-thomas"}, {"fhir-user", "Patient/family-thomas"}}}},
      {"gp", {"professional", "roussel-sub", {{"rpps", "10123456781"}, {"profession", "10"}}}},
  };
  Issue9Deployment d({}, family_callers);
  d.import(std::string(ESPACE_SOURCE_DIR) + "/test-data/family");

  // Thomas's glucometer app: its three measurements, nothing else of his record.
  HttpResponse mine = d.as("glyco", "GET", "/Observation?patient=Patient/family-thomas");
  REQUIRE(mine.status == 200);
  CHECK(entry_count(mine) == 3);
  CHECK(mine.body.find("family-thomas-glyco-1") != std::string::npos);
  CHECK(d.as("glyco", "GET", "/Provenance/family-thomas-glyco-1-provenance").status == 200);
  // A purpose Thomas did not consent to.
  CHECK(d.as("glyco-research", "GET", "/Observation?patient=Patient/family-thomas").status == 403);
  HttpResponse more = d.as("glyco", "POST", "/Observation",
                           R"({"resourceType":"Observation","meta":{"profile":["https://espace.example/fhir/StructureDefinition/fr-device-observation"]},
                               "status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
                               "code":{"coding":[{"system":"http://loinc.org","code":"41653-7"}]},"subject":{"reference":"Patient/family-thomas"},
                               "effectiveDateTime":"2026-11-23T07:40:00+01:00","device":{"reference":"Device/family-app-glyco-suivi"},
                               "valueQuantity":{"value":115,"unit":"mg/dL","system":"http://unitsofmeasure.org","code":"mg/dL"}})");
  INFO(more.body);
  CHECK(more.status == 201);
  // His GP sees them among his results; Thomas reads his thread, appointment and reminder.
  HttpResponse gp = d.as("gp", "GET", "/Observation?patient=Patient/family-thomas&code=http://loinc.org|41653-7");
  REQUIRE(gp.status == 200);
  CHECK(entry_count(gp) == 4);
  HttpResponse thread = d.as("thomas", "GET", "/Communication?subject=Patient/family-thomas");
  REQUIRE(thread.status == 200);
  CHECK(entry_count(thread) == 2);
  CHECK(d.as("thomas", "GET", "/Appointment/family-thomas-appointment-2026-12-03").status == 200);
  CHECK(d.as("thomas", "GET", "/CommunicationRequest/family-thomas-reminder-hba1c").status == 200);
  HttpResponse reply = d.as("thomas", "POST", "/Communication",
                            R"({"resourceType":"Communication","status":"completed","subject":{"reference":"Patient/family-thomas"},
                                "inResponseTo":[{"reference":"Communication/family-thomas-msg-1"}],
                                "sender":{"reference":"Patient/family-thomas"},"recipient":[{"reference":"Practitioner/family-dr-roussel"}],
                                "payload":[{"contentString":"J'ai fait ma prise de sang."}]})");
  CHECK(reply.status == 201);
  // His GP turns the family's reminders into his space's CommunicationRequests.
  HttpResponse reminders = d.as("gp", "POST", "/Patient/family-thomas/$materialize-reminders?date=2026-11-23");
  INFO(reminders.body);
  CHECK(reminders.status == 200);
}
