// The connected-app rules without HTTP (rules_devices.cpp): the
// device-app-connection Consent as parsed (interactions/devices.h), the
// precise verdicts DEVICE_APP_CONSENT / DEVICE_APP_DATA behind the public
// NO_GRANT, consent periods at their bounds, and the message and appointment
// rules' names, over a real SQLite store.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "espace/fhir/json.h"
#include "espace/interactions/api.h"
#include "espace/interactions/devices.h"
#include "espace/policy/rules.h"
#include "espace/storage/storage.h"
#include "model_fixture.h"
#include "rules_fixture.h"

namespace {

using namespace espace;
namespace devices = interactions::devices;
using policy::Caller;
using policy::Role;

using policy_test::at;
using policy_test::config;
using policy_test::rule_of;
using Space = policy_test::RulesSpace;

std::string app_consent(const std::string& status = "active", const std::string& retention = "",
                        const std::string& end = "2026-06-30") {
  std::string ext = retention.empty() ? ""
                                      : R"("extension":[{"url":"https://espace.example/fhir/StructureDefinition/device-data-retention-days","valueUnsignedInt":)" +
                                            retention + "}],";
  return R"({"resourceType":"Consent","id":"c-app","status":")" + status + R"(",)" + ext + R"(
    "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
    "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"},
      {"system":"https://espace.example/fhir/CodeSystem/consent-category","code":"device-app-connection"}]}],
    "patient":{"reference":"Patient/p1"},
    "provision":{"type":"permit","period":{"start":"2026-01-01","end":")" + end + R"("},
      "actor":[{"role":{"coding":[{"code":"DEV"}]},"reference":{"identifier":{"system":"https://espace.example/fhir/sid/app-client-id","value":"gluco"}}}],
      "purpose":[{"system":"https://espace.example/fhir/CodeSystem/device-data-purpose","code":"follow-up"},
                 {"system":"https://espace.example/fhir/CodeSystem/device-data-purpose","code":"prevention"}]}})";
}

Caller app(const std::string& client_id, const std::string& purpose) {
  Caller c;
  c.authenticated = true;
  c.role = Role::System;
  c.client_id = client_id;
  c.purpose_of_use = purpose;
  return c;
}

std::string observation(const std::string& id, const std::string& device, bool declared = true) {
  std::string meta =
      declared ? R"("meta":{"profile":["https://espace.example/fhir/StructureDefinition/fr-device-observation"]},)" : "";
  return R"({"resourceType":"Observation","id":")" + id + R"(",)" + meta +
         R"("status":"final","code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},
            "subject":{"reference":"Patient/p1"},"effectiveDateTime":"2026-03-01",
            "device":{"reference":"Device/)" + device + R"("},
            "valueQuantity":{"value":72.5,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}})";
}

void seed(Space& space) {
  space.put(R"({"resourceType":"Patient","id":"p1","birthDate":"1970-01-01"})");
  space.put(R"({"resourceType":"Device","id":"scale","identifier":[{"system":"https://espace.example/fhir/sid/app-client-id","value":"gluco"}]})");
  space.put(R"({"resourceType":"Device","id":"other","identifier":[{"system":"https://espace.example/fhir/sid/app-client-id","value":"other"}]})");
  space.put(app_consent());
  space.put(observation("mine", "scale"));
  space.put(observation("theirs", "other"));
  space.put(R"({"resourceType":"Condition","id":"cond","subject":{"reference":"Patient/p1"},"code":{"text":"x"}})");
}

}  // namespace

TEST_CASE("devices rules: the device-app-connection Consent", "[policy][devices]") {
  devices::AppConsent c;
  REQUIRE(devices::parse_app_consent(app_consent("active", "30"), &c));
  CHECK(c.patient_id == "p1");
  CHECK(c.client_ids == std::vector<std::string>{"gluco"});
  CHECK(c.purposes == std::vector<std::string>{"follow-up", "prevention"});
  CHECK(c.retention_days == 30);
  CHECK(c.active);
  // The period's bounds are inclusive; a date ends with its last microsecond.
  CHECK_FALSE(devices::admits_app(c, "gluco", at("2025-12-31")));
  CHECK(devices::admits_app(c, "gluco", at("2026-01-01")));
  CHECK(devices::admits_app(c, "gluco", at("2026-07-01") - 1));
  CHECK_FALSE(devices::admits_app(c, "gluco", at("2026-07-01")));
  CHECK_FALSE(devices::admits_app(c, "other", at("2026-03-01")));
  CHECK_FALSE(devices::admits_app(c, "", at("2026-03-01")));

  devices::AppConsent withdrawn;
  REQUIRE(devices::parse_app_consent(app_consent("inactive"), &withdrawn));
  CHECK_FALSE(devices::admits_app(withdrawn, "gluco", at("2026-03-01")));
  CHECK(withdrawn.retention_days == devices::kDefaultRetentionDays);
  devices::AppConsent forever;
  REQUIRE(devices::parse_app_consent(app_consent("active", "100000"), &forever));
  CHECK(forever.retention_days == devices::kMaxRetentionDays);

  // An access grant is not a device connection.
  devices::AppConsent grant;
  CHECK_FALSE(devices::parse_app_consent(R"({"resourceType":"Consent","status":"active",
      "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"reference":"Patient/p1"},
      "provision":{"type":"permit"}})", &grant));
  CHECK_FALSE(devices::parse_app_consent("not json", &grant));
  CHECK(devices::device_client_id(R"({"resourceType":"Device","identifier":[{"system":"https://espace.example/fhir/sid/app-client-id","value":"x"}]})") == "x");
  CHECK(devices::device_client_id(R"({"resourceType":"Device"})").empty());
}

TEST_CASE("devices rules: DEVICE_APP_CONSENT and DEVICE_APP_DATA", "[policy][devices]") {
  Space space;
  seed(space);
  const auto& defs = test_definitions();
  const int64_t inside = at("2026-03-01"), after = at("2026-07-01");

  policy::DmpRules connected(config(), defs, *space.store, app("gluco", "follow-up"), inside);
  policy::Verdict v = connected.patient_access("p1");
  CHECK(v.visible);
  CHECK(std::string(v.rule) == "DEVICE_APP_CONSENT");

  policy::DmpRules wrong_purpose(config(), defs, *space.store, app("gluco", "care"), inside);
  v = wrong_purpose.patient_access("p1");
  CHECK_FALSE(v.visible);
  CHECK(std::string(v.rule) == "DEVICE_APP_CONSENT");
  policy::DmpRules ended(config(), defs, *space.store, app("gluco", "follow-up"), after);
  v = ended.patient_access("p1");
  CHECK_FALSE(v.visible);
  CHECK(std::string(v.rule) == "DEVICE_APP_CONSENT");
  // The app is told no more than about a record never written.
  CHECK(std::string(policy::public_rule(app("gluco", "care"), v.rule)) == "NO_GRANT");
  policy::DmpRules stranger(config(), defs, *space.store, app("other", "follow-up"), inside);
  CHECK(std::string(stranger.patient_access("p1").rule) == "NO_GRANT");

  // Under the consent: its own Device's measurements only.
  policy::AccessRecord record;
  CHECK(connected.may_see(space.get("Observation", "mine"), &record).visible);
  v = connected.may_see(space.get("Observation", "theirs"), &record);
  CHECK_FALSE(v.visible);
  CHECK(std::string(v.rule) == "DEVICE_APP_DATA");
  CHECK(std::string(connected.may_see(space.get("Condition", "cond"), &record).rule) == "DEVICE_APP_DATA");
  CHECK(std::string(connected.may_see(space.get("Patient", "p1"), &record).rule) == "DEVICE_APP_DATA");

  storage::ResourceVersion fresh;
  fresh.type = "Observation";
  fresh.id = "new";
  fresh.version = 1;
  fresh.method = "POST";
  fresh.json = observation("new", "scale");
  CHECK(connected.may_write(nullptr, fresh, &record));
  fresh.json = observation("new", "scale", false);
  CHECK(rule_of(connected.may_write(nullptr, fresh, &record)) == "policy-DEVICE_APP_DATA");
  fresh.json = observation("new", "other");
  CHECK(rule_of(connected.may_write(nullptr, fresh, &record)) == "policy-DEVICE_APP_DATA");
  // A refused app hears NO_GRANT on writes too.
  fresh.json = observation("new", "scale");
  CHECK(rule_of(ended.may_write(nullptr, fresh, &record)) == "policy-NO_GRANT");

  // The connection gives nothing to professionals; their own rules stand.
  Caller gp;
  gp.authenticated = true;
  gp.role = Role::Professional;
  gp.profession_code = "10";
  gp.national_id = "810000000009";
  policy::DmpRules doctor(config(), defs, *space.store, gp, inside);
  CHECK(std::string(doctor.patient_access("p1").rule) == "NO_GRANT");
}

TEST_CASE("devices rules: messages and appointments written by the patient", "[policy][messaging]") {
  Space space;
  seed(space);
  space.put(R"({"resourceType":"Communication","id":"m1","status":"completed","subject":{"reference":"Patient/p1"},
      "sender":{"reference":"Practitioner/x"},"payload":[{"contentString":"Bonjour"}]})");
  space.put(R"({"resourceType":"Appointment","id":"a1","status":"booked",
      "participant":[{"actor":{"reference":"Patient/p1"},"status":"accepted"}]})");
  const auto& defs = test_definitions();
  Caller patient;
  patient.authenticated = true;
  patient.role = Role::Patient;
  patient.patient_id = "p1";
  policy::DmpRules rules(config(), defs, *space.store, patient, at("2026-03-01"));
  policy::AccessRecord record;

  auto message = [](const std::string& extra, const std::string& payload = R"([{"contentString":"Merci"}])") {
    storage::ResourceVersion v;
    v.type = "Communication";
    v.id = "r";
    v.version = 1;
    v.method = "POST";
    v.json = R"({"resourceType":"Communication","status":"completed","subject":{"reference":"Patient/p1"},)" + extra +
             R"("payload":)" + payload + "}";
    return v;
  };
  CHECK(rules.may_write(nullptr, message(R"("sender":{"reference":"Patient/p1"},"inResponseTo":[{"reference":"Communication/m1"}],)"),
                        &record));
  CHECK(rule_of(rules.may_write(nullptr, message(R"("sender":{"reference":"Patient/p1"},)"), &record)) ==
        "policy-THREAD_REPLY_ONLY");
  CHECK(rule_of(rules.may_write(nullptr, message(R"("inResponseTo":[{"reference":"Communication/m1"}],)"), &record)) ==
        "policy-THREAD_REPLY_ONLY");
  CHECK(rule_of(rules.may_write(nullptr,
                                message(R"("sender":{"reference":"Patient/p1"},"inResponseTo":[{"reference":"Communication/m1"}],)",
                                        R"([{"contentReference":{"reference":"DocumentReference/none"}}])"),
                                &record)) == "policy-ATTACHMENT_NOT_VISIBLE");

  storage::ResourceVersion before = space.get("Appointment", "a1");
  storage::ResourceVersion cancelled = before;
  cancelled.version++;
  cancelled.method = "PUT";
  cancelled.json.replace(cancelled.json.find("\"booked\""), 8, "\"cancelled\"");
  CHECK(rules.may_write(&before, cancelled, &record));
  storage::ResourceVersion fulfilled = before;
  fulfilled.version++;
  fulfilled.method = "PUT";
  fulfilled.json.replace(fulfilled.json.find("\"booked\""), 8, "\"fulfilled\"");
  CHECK(rule_of(rules.may_write(&before, fulfilled, &record)) == "policy-APPOINTMENT_CANCEL_ONLY");
  storage::ResourceVersion created = before;
  created.id = "a2";
  created.method = "POST";
  CHECK(rule_of(rules.may_write(nullptr, created, &record)) == "policy-APPOINTMENT_CANCEL_ONLY");
}
