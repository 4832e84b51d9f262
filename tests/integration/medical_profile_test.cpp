// The medical profile through the real server (issue 9): the patient enters
// and edits their allergies, history, family history, trusted person,
// advance directives and organ-donation wish (patient-declared: recorder /
// asserter / performer name the patient, and the server refuses a write that
// does not name its caller: ENTERED_BY); professionals read it within their
// habilitation and record their own entries; the French profiles apply on the
// way in (strict server).
#include <algorithm>
#include <string>
#include <vector>

#include "family_deployment.h"

using namespace family_test;
using espace::testing::json_of;
using espace::testing::str;

namespace {

std::vector<std::string> sorted(std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::string allergy(const std::string& patient, const std::string& recorder, const std::string& verification,
                    const std::string& id = "") {
  return R"({"resourceType":"AllergyIntolerance",)" + (id.empty() ? "" : R"("id":")" + id + R"(",)") +
         R"("clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"active"}]},
    "verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-verification","code":")" +
         verification + R"("}]},
    "type":"intolerance","category":["medication"],"criticality":"low",
    "code":{"coding":[{"system":"http://snomed.info/sct","code":"387207008","display":"Ibuprofen"}],"text":"Ibuprofène"},
    "patient":{"reference":"Patient/)" + patient + R"("},"recordedDate":"2026-11-22",
    "recorder":{"reference":")" + recorder + R"("},"asserter":{"reference":"Patient/)" + patient + R"("}})";
}

const std::string kSurgicalHistory = R"({"resourceType":"Condition",
  "clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"resolved"}]},
  "category":[{"coding":[{"system":"https://espace.example/fhir/CodeSystem/fr-history-category","code":"surgical"}]}],
  "code":{"coding":[{"system":"http://snomed.info/sct","code":"73761001","display":"Colonoscopy"}],"text":"Ablation de polypes lors d une coloscopie"},
  "subject":{"reference":"Patient/family-thomas"},"onsetDateTime":"2023-05","recordedDate":"2026-11-22",
  "recorder":{"reference":"Patient/family-thomas"},"asserter":{"reference":"Patient/family-thomas"}})";

const std::string kFamilyHistory = R"({"resourceType":"FamilyMemberHistory","status":"completed",
  "patient":{"reference":"Patient/family-thomas"},"date":"2026-11-22",
  "relationship":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"MTH","display":"mother"}]},
  "condition":[{"code":{"coding":[{"system":"http://snomed.info/sct","code":"254837009","display":"Breast cancer"}],"text":"Cancer du sein"},
                "onsetAge":{"value":63,"unit":"ans","system":"http://unitsofmeasure.org","code":"a"}}]})";

std::string trusted_person(bool with_telecom) {
  return R"({"resourceType":"RelatedPerson","active":true,"patient":{"reference":"Patient/family-thomas"},
    "relationship":[{"coding":[{"system":"https://mos.esante.gouv.fr/NOS/TRE_R260-HL7RoleClass/FHIR/TRE-R260-HL7RoleClass","code":"NOK"}]},
                    {"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"BRO","display":"brother"}]}],
    "name":[{"family":"LEFEBVRE","given":["JULIEN"]}],)" +
         std::string(with_telecom ? R"("telecom":[{"system":"phone","value":"+33 6 00 00 00 09"}],)" : "") +
         R"("period":{"start":"2026-11-22"}})";
}

std::string directives(bool with_actor) {
  return R"({"resourceType":"Consent","status":"active",
    "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"adr"}]},
    "category":[{"coding":[{"system":"http://loinc.org","code":"42348-3"}]}],
    "patient":{"reference":"Patient/family-thomas"},"dateTime":"2026-11-22T18:00:00+01:00",
    "performer":[{"reference":"Patient/family-thomas"}],
    "policyRule":{"text":"Code de la santé publique, article L1111-11"},
    "sourceAttachment":{"contentType":"text/plain","data":"RGlyZWN0aXZlcyAoc3ludGjDqXRpcXVlKQ=="},
    "provision":{"type":"deny",)" +
         std::string(with_actor ? R"("actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PRCP"}]},"reference":{"reference":"Practitioner/family-dr-roussel"}}],)" : "") +
         R"("code":[{"text":"Pas d'acharnement thérapeutique"}]}})";
}

std::string organ_donation(const std::string& position) {
  return R"({"resourceType":"Observation","status":"final",
    "code":{"coding":[{"system":"https://espace.example/fhir/CodeSystem/fr-patient-wishes","code":"organ-donation"}]},
    "subject":{"reference":"Patient/family-thomas"},"effectiveDateTime":"2026-11-22",
    "performer":[{"reference":"Patient/family-thomas"}],
    "valueCodeableConcept":{"coding":[{"system":"https://espace.example/fhir/CodeSystem/fr-patient-wishes","code":")" +
         position + R"("}]}})";
}

}  // namespace

TEST_CASE("medical profile: the patient enters and edits it, flagged as patient-declared", "[integration][medical]") {
  FamilyDeployment family;

  SECTION("allergies: entered by the patient, confirmed by the GP, never deleted by the patient") {
    HttpResponse created = family.as("thomas", "POST", "/AllergyIntolerance",
                                     allergy("family-thomas", "Patient/family-thomas", "unconfirmed"));
    INFO(created.body);
    REQUIRE(created.status == 201);
    const std::string id = str(json_of(created), "id");

    // The GP sees who entered it: the patient (recorder and asserter).
    rapidjson::Document seen = json_of(family.as("gp", "GET", "/AllergyIntolerance/" + id));
    CHECK(str(seen["recorder"], "reference") == "Patient/family-thomas");
    CHECK(str(seen["asserter"], "reference") == "Patient/family-thomas");

    // A patient cannot pass an entry off as the GP's.
    HttpResponse forged = family.as("thomas", "POST", "/AllergyIntolerance",
                                    allergy("family-thomas", "Practitioner/family-dr-roussel", "confirmed"));
    CHECK(forged.status == 422);
    CHECK(diagnostics(forged).find("(rule ENTERED_BY)") != std::string::npos);
    CHECK(issue_ids(forged) == std::vector<std::string>{"policy-ENTERED_BY @ AllergyIntolerance.recorder"});

    // The patient edits their own entry; the GP confirms it and becomes the recorder of that version.
    CHECK(family.as("thomas", "PUT", "/AllergyIntolerance/" + id,
                    allergy("family-thomas", "Patient/family-thomas", "unconfirmed", id))
              .status == 200);
    HttpResponse confirmed = family.as("gp", "PUT", "/AllergyIntolerance/" + id,
                                       allergy("family-thomas", "Practitioner/family-dr-roussel", "confirmed", id));
    INFO(confirmed.body);
    CHECK(confirmed.status == 200);
    rapidjson::Document now = json_of(family.as("thomas", "GET", "/AllergyIntolerance/" + id));
    CHECK(str(now["recorder"], "reference") == "Practitioner/family-dr-roussel");
    CHECK(str(now["asserter"], "reference") == "Patient/family-thomas");
    // The GP cannot sign in the patient's name either.
    CHECK(family.as("gp", "PUT", "/AllergyIntolerance/" + id,
                    allergy("family-thomas", "Patient/family-thomas", "confirmed", id))
              .status == 422);

    // The record is not the patient's to erase.
    HttpResponse erased = family.as("thomas", "DELETE", "/AllergyIntolerance/" + id);
    CHECK(erased.status == 403);
    CHECK(diagnostics(erased).find("(rule PATIENT_WRITE)") != std::string::npos);

    // A nurse records an allergy under her RPPS (no Practitioner resource needed).
    std::string by_nurse = allergy("family-thomas", "Practitioner/x", "confirmed");
    by_nurse.replace(by_nurse.find(R"("recorder":{"reference":"Practitioner/x"})"),
                     std::string(R"("recorder":{"reference":"Practitioner/x"})").size(),
                     R"("recorder":{"type":"Practitioner","identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":")" +
                         kNurseRpps + R"("}})");
    HttpResponse nurse = family.as("nurse", "POST", "/AllergyIntolerance", by_nurse);
    INFO(nurse.body);
    CHECK(nurse.status == 201);

    // A parent records an allergy of their newborn under their own name.
    std::string for_lea = allergy("family-lea", "RelatedPerson/family-lea-mother", "unconfirmed");
    HttpResponse by_parent = family.as("parent", "POST", "/AllergyIntolerance", for_lea);
    INFO(by_parent.body);
    CHECK(by_parent.status == 201);
    HttpResponse as_child = family.as("parent", "POST", "/AllergyIntolerance",
                                      allergy("family-lea", "Patient/family-lea", "unconfirmed"));
    CHECK(as_child.status == 422);
    CHECK(diagnostics(as_child).find("(rule ENTERED_BY)") != std::string::npos);

    // Another patient's record is out of reach.
    HttpResponse elsewhere = family.as("thomas", "POST", "/AllergyIntolerance",
                                       allergy("family-camille", "Patient/family-thomas", "unconfirmed"));
    CHECK(elsewhere.status == 403);
  }

  SECTION("history, family history, trusted person, directives and organ donation") {
    HttpResponse history = family.as("thomas", "POST", "/Condition", kSurgicalHistory);
    INFO(history.body);
    CHECK(history.status == 201);
    HttpResponse relatives = family.as("thomas", "POST", "/FamilyMemberHistory", kFamilyHistory);
    INFO(relatives.body);
    CHECK(relatives.status == 201);
    HttpResponse trusted = family.as("thomas", "POST", "/RelatedPerson", trusted_person(true));
    INFO(trusted.body);
    CHECK(trusted.status == 201);
    HttpResponse wishes = family.as("thomas", "POST", "/Consent", directives(false));
    INFO(wishes.body);
    CHECK(wishes.status == 201);
    HttpResponse donation = family.as("thomas", "POST", "/Observation", organ_donation("refusal-registered"));
    INFO(donation.body);
    CHECK(donation.status == 201);

    // The profiles on the way in.
    HttpResponse unreachable = family.as("thomas", "POST", "/RelatedPerson", trusted_person(false));
    CHECK(unreachable.status == 422);
    CHECK(issue_ids(unreachable) == std::vector<std::string>{"card-min @ RelatedPerson.telecom"});
    HttpResponse granting = family.as("thomas", "POST", "/Consent", directives(true));
    CHECK(granting.status == 422);
    CHECK(issue_ids(granting) == std::vector<std::string>{"card-max @ Consent.provision.actor"});
    HttpResponse not_a_position = family.as("thomas", "POST", "/Observation", organ_donation("organ-donation"));
    CHECK(not_a_position.status == 422);
    CHECK(issue_ids(not_a_position) ==
          std::vector<std::string>{"binding-required @ Observation.value.ofType(CodeableConcept)"});
    // A history item names who entered it.
    std::string unsigned_history = kSurgicalHistory;
    unsigned_history.replace(unsigned_history.find(R"("recorder":{"reference":"Patient/family-thomas"},)"),
                             std::string(R"("recorder":{"reference":"Patient/family-thomas"},)").size(), "");
    HttpResponse no_recorder = family.as("thomas", "POST", "/Condition", unsigned_history);
    CHECK(no_recorder.status == 422);
    CHECK(issue_ids(no_recorder) == std::vector<std::string>{"card-min @ Condition.recorder"});

    // Directives are the patient's own words: professionals never write Consents.
    HttpResponse by_gp = family.as("gp", "POST", "/Consent", directives(false));
    CHECK(by_gp.status == 403);
    CHECK(diagnostics(by_gp).find("(rule CONSENT_PATIENT_ONLY)") != std::string::npos);

    // The GP reads the whole profile, family data and patient entries alike.
    CHECK(match_ids(family.as("gp", "GET", "/Condition?patient=family-thomas&category=surgical")) ==
          sorted({"family-thomas-appendectomy", str(json_of(history), "id")}));
    CHECK(match_ids(family.as("gp", "GET", "/FamilyMemberHistory?patient=family-thomas")).size() == 2);
    CHECK(match_ids(family.as("gp", "GET", "/RelatedPerson?patient=family-thomas")) ==
          sorted({"family-thomas-trusted-person", str(json_of(trusted), "id")}));
    CHECK(match_ids(family.as("gp", "GET", "/Consent?patient=family-thomas&category=http://loinc.org|42348-3")) ==
          sorted({"family-thomas-advance-directives", str(json_of(wishes), "id")}));
    CHECK(match_ids(family.as(
              "gp", "GET",
              "/Observation?patient=family-thomas&code=https://espace.example/fhir/CodeSystem/fr-patient-wishes|organ-donation")) ==
          sorted({"family-thomas-organ-donation", str(json_of(donation), "id")}));

    // The pharmacist's habilitation covers allergies, not the history.
    CHECK(match_ids(family.as("pharmacist", "GET", "/AllergyIntolerance?patient=family-thomas")).size() == 2);
    CHECK(match_ids(family.as("pharmacist", "GET", "/Condition?patient=family-thomas")).empty());
    CHECK(family.as("pharmacist", "GET", "/Condition/family-thomas-appendectomy").status == 404);

    // Advance directives grant nobody access: a professional without a
    // grant is refused the record as before.
    CHECK(family.as("midwife", "GET", "/Consent?patient=family-thomas").status == 403);
  }
}
