// Prescriptions and dispensations through the real server (issue 9): the
// family's adult with a chronic condition, his GP, his pharmacy, a nurse and
// himself, with JWTs. Who may write what (WRITER_PROFESSION, ENTERED_BY,
// DISPENSE_PRESCRIPTION, PATIENT_WRITE), the French profiles on the way in,
// and the searches a pharmacist and a patient use:
// MedicationRequest?patient=&status=&authoredon=, ?identifier= (the
// e-prescription number) and MedicationDispense?prescription=.
#include <algorithm>
#include <string>
#include <vector>

#include "family_deployment.h"

using namespace family_test;
using espace::testing::json_of;
using espace::testing::str;

namespace {

const std::string kEprescriptionSystem = "https://espace.example/fhir/sid/eprescription-id";

// A prescription line of Dr Roussel for `patient` (e-prescription `number`).
std::string prescription(const std::string& patient, const std::string& number,
                         const std::string& requester = "Practitioner/family-dr-roussel",
                         const std::string& cip13 = "3400930000001") {
  return R"({"resourceType":"MedicationRequest",
    "identifier":[{"system":")" + kEprescriptionSystem + R"(","value":")" + number + R"("}],
    "status":"active","intent":"order",
    "medicationCodeableConcept":{"coding":[
      {"system":"urn:oid:1.2.250.1.213.2.3.2","code":")" + cip13 + R"("},
      {"system":"http://www.whocc.no/atc","code":"A10BD07","display":"metformin and sitagliptin"}],
      "text":"Sitagliptine/metformine 50 mg/1000 mg, comprimé"},
    "subject":{"reference":"Patient/)" + patient + R"("},
    "authoredOn":"2026-11-20T09:30:00+01:00",
    "requester":{"reference":")" + requester + R"("},
    "dosageInstruction":[{"text":"1 comprimé matin et soir"}],
    "dispenseRequest":{"numberOfRepeatsAllowed":2}})";
}

std::string dispense(const std::string& patient, const std::string& prescription_ref,
                     const std::string& performer = "Organization/family-pharmacie-lilas") {
  std::string authorizing =
      prescription_ref.empty() ? "" : R"("authorizingPrescription":[{"reference":")" + prescription_ref + R"("}],)";
  return R"({"resourceType":"MedicationDispense","status":"completed",
    "medicationCodeableConcept":{"coding":[{"system":"http://www.whocc.no/atc","code":"A10BD07"}]},
    "subject":{"reference":"Patient/)" + patient + R"("},
    "performer":[{"actor":{"reference":")" + performer + R"("}}],)" + authorizing + R"(
    "quantity":{"value":56,"unit":"comprimé"},"whenHandedOver":"2026-11-21T11:00:00+01:00"})";
}

// Jeanne's prescription, stored with the family: the "other patient" of the
// dispensation checks.
const std::string kJeanneRx = R"({"resourceType":"MedicationRequest","id":"family-jeanne-rx-paracetamol",
  "status":"active","intent":"order",
  "medicationCodeableConcept":{"coding":[{"system":"http://www.whocc.no/atc","code":"N02BE01","display":"paracetamol"}]},
  "subject":{"reference":"Patient/family-jeanne"},"authoredOn":"2026-10-01",
  "requester":{"reference":"Practitioner/family-dr-roussel"},
  "dosageInstruction":[{"text":"1 g jusqu'à 3 fois par jour si douleur"}]})";

std::vector<std::string> sorted(std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::string created_id(const HttpResponse& r) {
  rapidjson::Document d = json_of(r);
  return str(d, "id");
}

}  // namespace

TEST_CASE("prescriptions: prescribers write them, pharmacists dispense them, the patient reads both",
          "[integration][prescriptions]") {
  FamilyDeployment family({kJeanneRx});

  // The GP writes an e-prescription line for Thomas.
  HttpResponse rx = family.as("gp", "POST", "/MedicationRequest", prescription("family-thomas", "EP-2026-1120-4H7D2C"));
  INFO(rx.body);
  REQUIRE(rx.status == 201);
  const std::string rx_id = created_id(rx);
  REQUIRE_FALSE(rx_id.empty());

  SECTION("who may prescribe") {
    // Not a prescriber's act for a pharmacist or a nurse (their habilitation lets them read).
    HttpResponse by_pharmacist =
        family.as("pharmacist", "POST", "/MedicationRequest", prescription("family-thomas", "EP-X-PHARMACIST"));
    CHECK(by_pharmacist.status == 403);
    CHECK(diagnostics(by_pharmacist).find("(rule WRITER_PROFESSION)") != std::string::npos);
    HttpResponse by_nurse = family.as("nurse", "POST", "/MedicationRequest", prescription("family-thomas", "EP-X-NURSE"));
    CHECK(by_nurse.status == 403);
    CHECK(diagnostics(by_nurse).find("(rule WRITER_PROFESSION)") != std::string::npos);
    CHECK(family.as("nurse", "GET", "/MedicationRequest/" + rx_id).status == 200);
    // Never the patient's to write.
    HttpResponse by_patient =
        family.as("thomas", "POST", "/MedicationRequest", prescription("family-thomas", "EP-X-PATIENT"));
    CHECK(by_patient.status == 403);
    CHECK(diagnostics(by_patient).find("(rule PATIENT_WRITE)") != std::string::npos);
    // A prescriber with no access to the record: the patient-level answer.
    HttpResponse by_midwife =
        family.as("midwife", "POST", "/MedicationRequest", prescription("family-thomas", "EP-X-MIDWIFE"));
    CHECK(by_midwife.status == 403);
    CHECK(diagnostics(by_midwife).find("(rule NO_GRANT)") != std::string::npos);
    // The prescriber signs: a line whose requester is someone else is refused.
    HttpResponse not_signed = family.as("gp", "POST", "/MedicationRequest",
                                        prescription("family-thomas", "EP-X-OTHER", "Practitioner/someone-else"));
    CHECK(not_signed.status == 422);
    CHECK(diagnostics(not_signed).find("(rule ENTERED_BY)") != std::string::npos);
    // The profile on the way in: a CIP13 of the wrong shape.
    HttpResponse bad_code = family.as("gp", "POST", "/MedicationRequest",
                                      prescription("family-thomas", "EP-X-CIP", "Practitioner/family-dr-roussel", "12345"));
    CHECK(bad_code.status == 422);
    CHECK(issue_ids(bad_code) ==
          std::vector<std::string>{"inv-espace-cip13 @ MedicationRequest.medication.ofType(CodeableConcept).coding[0].code"});
  }

  SECTION("the pharmacy dispenses against a prescription of the same patient only") {
    HttpResponse ok = family.as("pharmacist", "POST", "/MedicationDispense",
                                dispense("family-thomas", "MedicationRequest/" + rx_id));
    INFO(ok.body);
    REQUIRE(ok.status == 201);
    const std::string dispense_id = created_id(ok);

    // Another patient's prescription and a prescription never written get one
    // and the same answer (no oracle on other records).
    HttpResponse other = family.as("pharmacist", "POST", "/MedicationDispense",
                                   dispense("family-thomas", "MedicationRequest/family-jeanne-rx-paracetamol"));
    HttpResponse absent = family.as("pharmacist", "POST", "/MedicationDispense",
                                    dispense("family-thomas", "MedicationRequest/never-written"));
    CHECK(other.status == 422);
    CHECK(absent.status == 422);
    CHECK(diagnostics(other).find("(rule DISPENSE_PRESCRIPTION)") != std::string::npos);
    CHECK(diagnostics(other) == diagnostics(absent));
    // Without any prescription: the profile refuses it first.
    HttpResponse unlinked = family.as("pharmacist", "POST", "/MedicationDispense", dispense("family-thomas", ""));
    CHECK(unlinked.status == 422);
    CHECK(issue_ids(unlinked) == std::vector<std::string>{"card-min @ MedicationDispense.authorizingPrescription"});
    // The performer is who dispensed: another pharmacy is not the caller.
    HttpResponse wrong_performer =
        family.as("pharmacist", "POST", "/MedicationDispense",
                  dispense("family-thomas", "MedicationRequest/" + rx_id, "Organization/family-msp-lilas"));
    CHECK(wrong_performer.status == 422);
    CHECK(diagnostics(wrong_performer).find("(rule ENTERED_BY)") != std::string::npos);
    // Dispensing is not the GP's act, nor the patient's.
    HttpResponse by_gp = family.as("gp", "POST", "/MedicationDispense",
                                   dispense("family-thomas", "MedicationRequest/" + rx_id, "Practitioner/family-dr-roussel"));
    CHECK(by_gp.status == 403);
    CHECK(diagnostics(by_gp).find("(rule WRITER_PROFESSION)") != std::string::npos);
    CHECK(family.as("thomas", "POST", "/MedicationDispense", dispense("family-thomas", "MedicationRequest/" + rx_id))
              .status == 403);

    // MedicationDispense?prescription= : the pharmacist names the patient, the patient need not.
    CHECK(match_ids(family.as("pharmacist", "GET",
                              "/MedicationDispense?patient=family-thomas&prescription=MedicationRequest/" + rx_id)) ==
          std::vector<std::string>{dispense_id});
    CHECK(match_ids(family.as("thomas", "GET", "/MedicationDispense?prescription=MedicationRequest/" + rx_id)) ==
          std::vector<std::string>{dispense_id});
    CHECK(match_ids(family.as("thomas", "GET",
                              "/MedicationDispense?prescription=MedicationRequest/family-thomas-rx-metformin")) ==
          std::vector<std::string>{"family-thomas-dispense-27", "family-thomas-dispense-29"});
  }

  SECTION("searching prescriptions by patient, status, date and e-prescription number") {
    // The number read from the QR code finds the line, for the pharmacist and the patient.
    const std::string by_number = "/MedicationRequest?patient=family-thomas&identifier=" + kEprescriptionSystem +
                                  "|EP-2026-1120-4H7D2C";
    CHECK(match_ids(family.as("pharmacist", "GET", by_number)) == std::vector<std::string>{rx_id});
    CHECK(match_ids(family.as("thomas", "GET", "/MedicationRequest?identifier=EP-2026-0915-7Q4K2M")) ==
          std::vector<std::string>{"family-thomas-rx-metformin"});

    CHECK(match_ids(family.as("gp", "GET", "/MedicationRequest?patient=family-thomas&status=active")) ==
          sorted({"family-thomas-rx-amlodipine", "family-thomas-rx-metformin", rx_id}));
    CHECK(match_ids(family.as("gp", "GET",
                              "/MedicationRequest?patient=family-thomas&status=active&authoredon=ge2026-11-01")) ==
          std::vector<std::string>{rx_id});
    CHECK(match_ids(family.as("gp", "GET", "/MedicationRequest?patient=family-thomas&authoredon=2026-09-15")) ==
          std::vector<std::string>{"family-thomas-rx-amlodipine", "family-thomas-rx-metformin"});
    CHECK(match_ids(family.as("gp", "GET", "/MedicationRequest?patient=family-thomas&status=completed")).empty());

    // Stopping the line: the prescriber updates it (status stopped); the
    // status search follows.
    std::string body = family.as("gp", "GET", "/MedicationRequest/" + rx_id).body;
    size_t at = body.find("\"status\":\"active\"");
    REQUIRE(at != std::string::npos);
    body.replace(at, 17, "\"status\":\"stopped\"");
    HttpResponse stopped = family.as("gp", "PUT", "/MedicationRequest/" + rx_id, body);
    INFO(stopped.body);
    CHECK(stopped.status == 200);
    CHECK(match_ids(family.as("gp", "GET", "/MedicationRequest?patient=family-thomas&status=stopped")) ==
          std::vector<std::string>{rx_id});
    // Thomas reads his prescriptions without naming himself; Camille sees none of them.
    CHECK(match_ids(family.as("thomas", "GET", "/MedicationRequest")).size() == 3);
    CHECK(match_ids(family.as("camille", "GET", "/MedicationRequest")).empty());
    CHECK(family.as("camille", "GET", "/MedicationRequest/" + rx_id).status == 404);
  }

  SECTION("a pharmacy system writes a prescription and its dispensation in one transaction") {
    std::string rx_entry = prescription("family-thomas", "EP-2026-1121-TX0001");
    std::string md_entry = dispense("family-thomas", "urn:uuid:6f1c2a52-0d7e-4a55-9b53-3d1f0e7b2a11");
    std::string bundle = R"({"resourceType":"Bundle","type":"transaction","entry":[
      {"fullUrl":"urn:uuid:6f1c2a52-0d7e-4a55-9b53-3d1f0e7b2a11","resource":)" + rx_entry +
                         R"(,"request":{"method":"POST","url":"MedicationRequest"}},
      {"fullUrl":"urn:uuid:0b8e3c1d-5a2f-4c6e-8d9a-1e2f3a4b5c6d","resource":)" + md_entry +
                         R"(,"request":{"method":"POST","url":"MedicationDispense"}}]})";
    HttpResponse tx = family.as("pharmacy-system", "POST", "/", bundle);
    INFO(tx.body);
    REQUIRE(tx.status == 200);
    rapidjson::Document answer = json_of(tx);
    REQUIRE(answer["entry"].Size() == 2);
    REQUIRE(str(answer["entry"][0]["resource"], "resourceType") == "MedicationRequest");
    const std::string new_rx = str(answer["entry"][0]["resource"], "id");
    // The dispensation names the prescription stored with it.
    std::vector<std::string> found =
        match_ids(family.as("thomas", "GET", "/MedicationDispense?prescription=MedicationRequest/" + new_rx));
    CHECK(found.size() == 1);
    // A transaction naming another patient's prescription is refused.
    std::string other = R"({"resourceType":"Bundle","type":"transaction","entry":[
      {"fullUrl":"urn:uuid:0b8e3c1d-5a2f-4c6e-8d9a-1e2f3a4b5c6d","resource":)" +
                        dispense("family-thomas", "MedicationRequest/family-jeanne-rx-paracetamol") +
                        R"(,"request":{"method":"POST","url":"MedicationDispense"}}]})";
    HttpResponse refused = family.as("pharmacy-system", "POST", "/", other);
    CHECK(refused.status == 422);
    CHECK(diagnostics(refused).find("(rule DISPENSE_PRESCRIPTION)") != std::string::npos);
  }
}
