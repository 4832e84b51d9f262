// Secure messaging (issue 9) through the real server under the DMP policy:
// Communication threads. Professionals (with access to the record) open a
// thread; the patient only replies within a thread about them, signed by
// them (THREAD_REPLY_ONLY); attachments are documents the sender may see
// (ATTACHMENT_NOT_VISIBLE); each side reads the thread through the usual
// rules (the patient's compartment, the GP or a grant).
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
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

const char* kGpRpps = "10000000002";
const char* kPharmacistRpps = "10000000003";
const char* kStrangerRpps = "10000000004";

std::string document(const std::string& id, const std::string& patient, const std::string& security = "") {
  std::string meta = security.empty() ? ""
                                      : R"("meta":{"security":[{"system":"urn:oid:1.2.250.1.213.1.1.4.13","code":")" +
                                            security + R"("}]},)";
  return R"({"resourceType":"DocumentReference","id":")" + id + R"(",)" + meta +
         R"("status":"current","type":{"coding":[{"system":"http://loinc.org","code":"11488-4"}]},
            "subject":{"reference":"Patient/)" + patient +
         R"("},"content":[{"attachment":{"contentType":"text/plain","data":"Q29tcHRlIHJlbmR1"}}]})";
}

std::vector<std::string> seed() {
  auto practitioner = [](const std::string& id, const std::string& rpps) {
    return R"({"resourceType":"Practitioner","id":")" + id +
           R"(","identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.1","value":")" + rpps + R"("}],"name":[{"family":")" +
           id + R"("}]})";
  };
  return {
      practitioner("dr-gp", kGpRpps),
      practitioner("dr-pharma", kPharmacistRpps),
      practitioner("dr-stranger", kStrangerRpps),
      R"({"resourceType":"Patient","id":"pat-m","name":[{"family":"Bernard","given":["Paul"]}],"gender":"male",
          "birthDate":"1980-02-03","generalPractitioner":[{"reference":"Practitioner/dr-gp"}]})",
      R"({"resourceType":"Patient","id":"pat-other","name":[{"family":"Petit"}],"gender":"female",
          "birthDate":"1975-05-06","generalPractitioner":[{"reference":"Practitioner/dr-gp"}]})",
      // The pharmacist holds a grant on pat-m, but messages are not in their habilitation row.
      R"({"resourceType":"Consent","id":"grant-pharma","status":"active",
          "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
          "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"reference":"Patient/pat-m"},
          "dateTime":"2026-01-01","policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
          "provision":{"type":"permit","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PRCP"}]},
                       "reference":{"reference":"Practitioner/dr-pharma"}}]}})",
      document("doc-visible", "pat-m"),
      document("doc-hidden", "pat-m", "INVISIBLE_PATIENT"),
      // A thread about another patient.
      R"({"resourceType":"Communication","id":"msg-other","status":"completed","subject":{"reference":"Patient/pat-other"},
          "sender":{"reference":"Practitioner/dr-gp"},"recipient":[{"reference":"Patient/pat-other"}],
          "payload":[{"contentString":"Bonjour"}]})",
  };
}

std::map<std::string, TokenSpec> callers() {
  auto professional = [](const std::string& rpps, const std::string& profession) {
    return TokenSpec{"professional", rpps + "-sub", {{"rpps", rpps}, {"profession", profession}}};
  };
  return {
      {"gp", professional(kGpRpps, "10")},
      {"pharmacist", professional(kPharmacistRpps, "21")},
      {"stranger", professional(kStrangerRpps, "10")},
      {"patient", {"patient", "pat-m-sub", {{"patient", "pat-m"}, {"fhir-user", "Patient/pat-m"}}}},
  };
}

std::string message(const std::string& sender, const std::string& recipient, const std::string& text,
                    const std::string& in_response_to = "", const std::string& attachment = "") {
  std::string reply = in_response_to.empty() ? "" : R"("inResponseTo":[{"reference":")" + in_response_to + R"("}],)";
  std::string payload = R"({"contentString":")" + text + R"("})";
  if (!attachment.empty()) payload += R"(,{"contentReference":{"reference":")" + attachment + R"("}})";
  return R"({"resourceType":"Communication","status":"completed",)" + reply +
         R"("category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/communication-category","code":"notification"}]}],
            "subject":{"reference":"Patient/pat-m"},"sent":"2026-11-23T10:00:00Z",
            "sender":{"reference":")" + sender + R"("},"recipient":[{"reference":")" + recipient + R"("}],
            "payload":[)" + payload + "]}";
}

std::string id_of(const HttpResponse& r) {
  rapidjson::Document d = json_of(r);
  return str(d, "id");
}

}  // namespace

TEST_CASE("messaging: professionals open threads, the patient replies within them", "[integration][messaging]") {
  Issue9Deployment d(seed(), callers());
  HttpResponse opened = d.as("gp", "POST", "/Communication",
                             message("Practitioner/dr-gp", "Patient/pat-m", "Vos résultats sont arrivés"));
  INFO(opened.body);
  REQUIRE(opened.status == 201);
  const std::string thread = "Communication/" + id_of(opened);

  SECTION("the patient cannot open a thread") {
    HttpResponse r = d.as("patient", "POST", "/Communication",
                          message("Patient/pat-m", "Practitioner/dr-gp", "Bonjour docteur"));
    CHECK(r.status == 403);
    CHECK(names_rule(r, "THREAD_REPLY_ONLY"));
  }
  SECTION("the patient replies in the thread, signed by them") {
    HttpResponse reply =
        d.as("patient", "POST", "/Communication", message("Patient/pat-m", "Practitioner/dr-gp", "Merci", thread));
    INFO(reply.body);
    REQUIRE(reply.status == 201);
    // Both sides read the whole thread.
    HttpResponse mine = d.as("patient", "GET", "/Communication?subject=Patient/pat-m");
    REQUIRE(mine.status == 200);
    CHECK(entry_count(mine) == 2);
    CHECK(mine.body.find("msg-other") == std::string::npos);
    HttpResponse gp = d.as("gp", "GET", "/Communication?subject=Patient/pat-m");
    REQUIRE(gp.status == 200);
    CHECK(entry_count(gp) == 2);
    // A message once sent is not rewritten nor removed by the patient.
    const std::string reply_id = id_of(reply);
    HttpResponse read = d.as("patient", "GET", "/Communication/" + reply_id);
    REQUIRE(read.status == 200);
    std::string edited = read.body;
    size_t at = edited.find("Merci");
    REQUIRE(at != std::string::npos);
    edited.replace(at, 5, "Merci beaucoup");
    HttpResponse update = d.as("patient", "PUT", "/Communication/" + reply_id, edited);
    CHECK(update.status == 403);
    CHECK(names_rule(update, "THREAD_REPLY_ONLY"));
    CHECK(d.as("patient", "DELETE", "/Communication/" + reply_id).status == 403);
  }
  SECTION("a reply signed by someone else, or outside the patient's threads, is refused") {
    HttpResponse forged = d.as("patient", "POST", "/Communication",
                               message("Practitioner/dr-gp", "Patient/pat-m", "Tout va bien", thread));
    CHECK(forged.status == 403);
    CHECK(names_rule(forged, "THREAD_REPLY_ONLY"));
    HttpResponse foreign = d.as("patient", "POST", "/Communication",
                                message("Patient/pat-m", "Practitioner/dr-gp", "?", "Communication/msg-other"));
    CHECK(foreign.status == 403);
    HttpResponse absent = d.as("patient", "POST", "/Communication",
                               message("Patient/pat-m", "Practitioner/dr-gp", "?", "Communication/never-written"));
    CHECK(absent.status == 403);
    // The other patient's thread and an id never written answer alike.
    CHECK(foreign.body == absent.body);
  }
  SECTION("attachments are documents the sender may see") {
    HttpResponse with_doc = d.as("gp", "POST", "/Communication",
                                 message("Practitioner/dr-gp", "Patient/pat-m", "Compte rendu joint", "",
                                         "DocumentReference/doc-visible"));
    CHECK(with_doc.status == 201);
    HttpResponse unknown = d.as("gp", "POST", "/Communication",
                                message("Practitioner/dr-gp", "Patient/pat-m", "Pièce jointe", "",
                                        "DocumentReference/never-written"));
    CHECK(unknown.status == 403);
    CHECK(names_rule(unknown, "ATTACHMENT_NOT_VISIBLE"));
    HttpResponse hidden = d.as("patient", "POST", "/Communication",
                               message("Patient/pat-m", "Practitioner/dr-gp", "Voici", thread,
                                       "DocumentReference/doc-hidden"));
    CHECK(hidden.status == 403);
    CHECK(names_rule(hidden, "ATTACHMENT_NOT_VISIBLE"));
    HttpResponse own = d.as("patient", "POST", "/Communication",
                            message("Patient/pat-m", "Practitioner/dr-gp", "Voici", thread,
                                    "DocumentReference/doc-visible"));
    CHECK(own.status == 201);
  }
  SECTION("professionals without access or habilitation neither read nor write messages") {
    HttpResponse stranger = d.as("stranger", "POST", "/Communication",
                                 message("Practitioner/dr-stranger", "Patient/pat-m", "Bonjour"));
    CHECK(stranger.status == 403);
    CHECK(d.as("stranger", "GET", "/Communication?subject=Patient/pat-m").status == 403);
    HttpResponse pharmacist = d.as("pharmacist", "POST", "/Communication",
                                   message("Practitioner/dr-pharma", "Patient/pat-m", "Bonjour"));
    CHECK(pharmacist.status == 403);
    CHECK(names_rule(pharmacist, "HABILITATION"));
    HttpResponse listed = d.as("pharmacist", "GET", "/Communication?subject=Patient/pat-m");
    REQUIRE(listed.status == 200);
    CHECK(entry_count(listed) == 0);
  }
}
