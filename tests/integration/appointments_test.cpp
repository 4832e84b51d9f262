// Appointments and reminders (issue 9) through the real server under the DMP
// policy: professionals make Appointments and CommunicationRequests; the
// patient reads theirs and may only cancel an Appointment
// (APPOINTMENT_CANCEL_ONLY); Patient/[id]/$materialize-reminders turns the
// vaccination and screening reminders into stored CommunicationRequests,
// idempotently.
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "http_client.h"
#include "issue9_deployment.h"
#include "json_checks.h"

using espace::testing::entry_count;
using espace::testing::HttpResponse;
using espace::testing::Issue9Deployment;
using espace::testing::json_of;
using espace::testing::names_rule;
using espace::testing::str;
using espace::testing::TokenSpec;

namespace {

const char* kGpRpps = "10000000005";

std::vector<std::string> seed() {
  return {
      R"({"resourceType":"Practitioner","id":"dr-gp","identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.1","value":")" +
          std::string(kGpRpps) + R"("}],"name":[{"family":"Moreau"}]})",
      // 55 years old on 2026-11-23: organised breast and colorectal screening, adult dTP boosters.
      R"({"resourceType":"Patient","id":"pat-r","name":[{"family":"Roux","given":["Anne"]}],"gender":"female",
          "birthDate":"1971-03-10","generalPractitioner":[{"reference":"Practitioner/dr-gp"}]})",
  };
}

std::map<std::string, TokenSpec> callers() {
  return {
      {"gp", {"professional", "gp-sub", {{"rpps", kGpRpps}, {"profession", "10"}}}},
      {"patient", {"patient", "pat-r-sub", {{"patient", "pat-r"}, {"fhir-user", "Patient/pat-r"}}}},
      {"other-patient", {"patient", "pat-x-sub", {{"patient", "pat-x"}, {"fhir-user", "Patient/pat-x"}}}},
  };
}

const char* kAppointment = R"({"resourceType":"Appointment","status":"booked",
  "serviceType":[{"text":"Consultation de suivi"}],"start":"2026-12-01T09:00:00Z","end":"2026-12-01T09:20:00Z",
  "participant":[{"actor":{"reference":"Patient/pat-r"},"status":"accepted"},
                 {"actor":{"reference":"Practitioner/dr-gp"},"status":"accepted"}]})";

std::string replace_once(std::string s, const std::string& from, const std::string& to) {
  size_t at = s.find(from);
  REQUIRE(at != std::string::npos);
  return s.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("appointments: professionals book, the patient reads and may only cancel", "[integration][appointments]") {
  Issue9Deployment d(seed(), callers());
  HttpResponse booked = d.as("gp", "POST", "/Appointment", kAppointment);
  INFO(booked.body);
  REQUIRE(booked.status == 201);
  const std::string id = str(json_of(booked), "id");

  CHECK(d.as("patient", "GET", "/Appointment/" + id).status == 200);
  HttpResponse listed = d.as("patient", "GET", "/Appointment?patient=Patient/pat-r");
  REQUIRE(listed.status == 200);
  CHECK(entry_count(listed) == 1);
  CHECK(d.as("other-patient", "GET", "/Appointment/" + id).status == 404);

  HttpResponse own = d.as("patient", "POST", "/Appointment", kAppointment);
  CHECK(own.status == 403);
  CHECK(names_rule(own, "APPOINTMENT_CANCEL_ONLY"));

  std::string current = d.as("patient", "GET", "/Appointment/" + id).body;
  HttpResponse moved = d.as("patient", "PUT", "/Appointment/" + id,
                            replace_once(current, "2026-12-01T09:00:00Z", "2026-12-02T09:00:00Z"));
  CHECK(moved.status == 403);
  CHECK(names_rule(moved, "APPOINTMENT_CANCEL_ONLY"));
  HttpResponse noshow =
      d.as("patient", "PUT", "/Appointment/" + id, replace_once(current, "\"booked\"", "\"noshow\""));
  CHECK(noshow.status == 403);
  CHECK(d.as("patient", "DELETE", "/Appointment/" + id).status == 403);

  HttpResponse cancelled =
      d.as("patient", "PUT", "/Appointment/" + id, replace_once(current, "\"booked\"", "\"cancelled\""));
  INFO(cancelled.body);
  CHECK(cancelled.status == 200);
  CHECK(d.as("gp", "GET", "/Appointment/" + id).body.find("\"cancelled\"") != std::string::npos);
}

TEST_CASE("appointments: reminders are CommunicationRequests of the patient space", "[integration][appointments]") {
  Issue9Deployment d(seed(), callers());
  const char* request = R"({"resourceType":"CommunicationRequest","status":"active",
    "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/communication-category","code":"reminder"}]}],
    "subject":{"reference":"Patient/pat-r"},"recipient":[{"reference":"Patient/pat-r"}],
    "payload":[{"contentString":"Pensez à votre bilan sanguin"}],"occurrenceDateTime":"2026-12-15"})";
  HttpResponse written = d.as("gp", "POST", "/CommunicationRequest", request);
  REQUIRE(written.status == 201);
  CHECK(d.as("patient", "GET", "/CommunicationRequest/" + str(json_of(written), "id")).status == 200);
  HttpResponse by_patient = d.as("patient", "POST", "/CommunicationRequest", request);
  CHECK(by_patient.status == 403);
  CHECK(names_rule(by_patient, "PATIENT_WRITE"));

  SECTION("$materialize-reminders stores the vaccination and screening reminders once") {
    HttpResponse first = d.as("gp", "POST", "/Patient/pat-r/$materialize-reminders?date=2026-11-23");
    INFO(first.body);
    REQUIRE(first.status == 200);
    rapidjson::Document answer = json_of(first);
    REQUIRE(answer["entry"].Size() >= 2);
    for (const auto& e : answer["entry"].GetArray()) CHECK(std::string(e["response"]["status"].GetString()) == "201 Created");

    // What the reminder operations answer, now stored: one screening
    // reminder per programme $screening-reminders names, each with its key.
    HttpResponse screening = d.as("gp", "GET", "/Patient/pat-r/$screening-reminders?date=2026-11-23");
    REQUIRE(screening.status == 200);
    const size_t programmes = entry_count(screening);
    CHECK(programmes >= 1);
    HttpResponse stored = d.as("patient", "GET",
                               "/CommunicationRequest?subject=Patient/pat-r&identifier=https://espace.example/fhir/sid/reminder|&_count=100");
    REQUIRE(stored.status == 200);
    CHECK(entry_count(stored) == answer["entry"].Size());
    size_t screening_keys = 0, vaccination_keys = 0;
    std::set<std::string> keys;
    rapidjson::Document bundle = json_of(stored);
    for (const auto& e : bundle["entry"].GetArray()) {
      std::string key = e["resource"]["identifier"][0]["value"].GetString();
      keys.insert(key);
      if (key.starts_with("screening:")) ++screening_keys;
      if (key.starts_with("vaccination:")) ++vaccination_keys;
      CHECK(std::string(e["resource"]["recipient"][0]["reference"].GetString()) == "Patient/pat-r");
    }
    CHECK(keys.size() == answer["entry"].Size());
    CHECK(screening_keys == programmes);
    CHECK(vaccination_keys + screening_keys == keys.size());

    // Idempotent: a second run finds every reminder already there.
    HttpResponse second = d.as("gp", "POST", "/Patient/pat-r/$materialize-reminders?date=2026-11-23");
    REQUIRE(second.status == 200);
    rapidjson::Document again = json_of(second);
    REQUIRE(again["entry"].Size() == answer["entry"].Size());
    for (const auto& e : again["entry"].GetArray()) CHECK(std::string(e["response"]["status"].GetString()) == "200 OK");
    CHECK(entry_count(d.as("patient", "GET",
                           "/CommunicationRequest?subject=Patient/pat-r&identifier=https://espace.example/fhir/sid/reminder|&_count=100")) ==
          answer["entry"].Size());
  }
  SECTION("the patient does not write reminders; a GET does not write") {
    HttpResponse r = d.as("patient", "POST", "/Patient/pat-r/$materialize-reminders?date=2026-11-23");
    CHECK(r.status == 403);
    CHECK(d.as("gp", "GET", "/Patient/pat-r/$materialize-reminders").status != 200);
  }
}
