// $ingest-cda on a real SQLite store: every document of test-data/cda/ is
// ingested and compared with its sibling <name>.expected.json, which holds
// either the DocumentReference (server-assigned parts shown as {patient},
// {binary}) or the HTTP status and the failed rules (id + XPath).
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <rapidjson/document.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include "../../../server/interactions/src/documents/cda_codec.h"
#include "espace/fhir/json.h"
#include "espace/interactions/cda.h"
#include "search_fixture.h"
#include "text_helpers.h"

namespace {

using espace::testing::read_text;

namespace fs = std::filesystem;
using espace::interactions::FhirRequest;
using espace::interactions::FhirResponse;
using espace::interactions::Interaction;

const fs::path kCdaDir = fs::path(ESPACE_SOURCE_DIR) / "test-data" / "cda";

std::string pretty(const rapidjson::Value& v) {
  rapidjson::StringBuffer buf;
  rapidjson::PrettyWriter<rapidjson::StringBuffer> w(buf);
  v.Accept(w);
  return buf.GetString();
}

FhirResponse ingest(espace::interactions::Services& services, const std::string& body,
                    const std::string& content_type = "application/xml") {
  FhirRequest req;
  req.interaction = Interaction::Operation;
  req.operation = "ingest-cda";
  req.method = "POST";
  req.type = "DocumentReference";
  req.body = body;
  req.content_type = content_type;
  req.base_url = "http://test";
  return espace::interactions::dispatch(services, req);
}

int status_of(const FhirResponse& r) {
  return r.error.is_ok() ? r.status : espace::interactions::http_status(r.error.category());
}

void seed_patients(search_test::Server& server) {
  rapidjson::Document bundle;
  std::string text = read_text(kCdaDir / "patients.json");
  bundle.Parse(text.data(), text.size());
  REQUIRE(bundle.IsObject());
  for (auto& e : bundle["entry"].GetArray()) {
    int status = server.put(pretty(e["resource"]));
    REQUIRE((status == 201 || status == 200));
  }
}

// The stored resource, as JSON.
rapidjson::Document read_resource(search_test::Server& server, const std::string& type, const std::string& id) {
  FhirRequest req;
  req.interaction = Interaction::Read;
  req.type = type;
  req.id = id;
  req.base_url = "http://test";
  FhirResponse r = espace::interactions::dispatch(server.services(), req);
  REQUIRE(r.error.is_ok());
  rapidjson::Document d;
  d.Parse(r.json.data(), r.json.size());
  return d;
}

}  // namespace

TEST_CASE("every CDA document of test-data/cda gives its expected DocumentReference or errors", "[cda]") {
  search_test::Server server;
  seed_patients(server);
  std::vector<fs::path> documents;
  for (const auto& entry : fs::directory_iterator(kCdaDir))
    if (entry.path().extension() == ".xml") documents.push_back(entry.path());
  std::sort(documents.begin(), documents.end());
  REQUIRE(documents.size() >= 10);

  for (const fs::path& path : documents) {
    const std::string name = path.stem().string();
    DYNAMIC_SECTION(name) {
      const fs::path expected_path = kCdaDir / (name + ".expected.json");
      REQUIRE(fs::exists(expected_path));
      rapidjson::Document expected;
      std::string expected_text = read_text(expected_path);
      expected.Parse(expected_text.data(), expected_text.size());
      REQUIRE(expected.IsObject());
      const std::string xml = read_text(path);
      FhirResponse r = ingest(server.services(), xml);
      INFO(r.error.message());
      REQUIRE(status_of(r) == expected["status"].GetInt());

      if (expected.HasMember("issues")) {
        std::set<std::pair<std::string, std::string>> want, got;
        for (const auto& i : expected["issues"].GetArray())
          want.emplace(i["id"].GetString(), i.HasMember("location") ? i["location"].GetString() : "");
        for (const auto& i : r.error.issues())
          if (i.severity == espace::fhir::Severity::Error) got.emplace(i.message_id, i.location);
        CHECK(got == want);
        continue;
      }

      rapidjson::Document actual;
      actual.Parse(r.json.data(), r.json.size());
      REQUIRE(actual.IsObject());
      // The server-assigned parts: checked here, then replaced by placeholders.
      const std::string doc_id = actual["id"].GetString();
      CHECK(r.location.find("/DocumentReference/" + doc_id + "/_history/1") != std::string::npos);
      std::string subject = actual["subject"]["reference"].GetString();
      REQUIRE(subject.rfind("Patient/", 0) == 0);
      std::string url = actual["content"][0]["attachment"]["url"].GetString();
      REQUIRE(url.rfind("Binary/", 0) == 0);
      const std::string binary_id = url.substr(7);

      // The Binary is the CDA as received, and the attachment describes it.
      rapidjson::Document binary = read_resource(server, "Binary", binary_id);
      CHECK(std::string(binary["contentType"].GetString()) == "text/xml");
      CHECK(std::string(binary["securityContext"]["reference"].GetString()) == "DocumentReference/" + doc_id);
      std::string data;
      REQUIRE(espace::interactions::cda::base64_decode(binary["data"].GetString(), &data));
      CHECK(data == xml);
      CHECK(actual["content"][0]["attachment"]["size"].GetUint64() == xml.size());
      auto digest = espace::interactions::cda::sha1(xml);
      CHECK(std::string(actual["content"][0]["attachment"]["hash"].GetString()) ==
            espace::interactions::cda::base64_encode(
                std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size())));
      // The patient is the one carrying the document's INS.
      rapidjson::Document patient = read_resource(server, "Patient", subject.substr(8));
      CHECK(std::string(patient["identifier"][0]["value"].GetString()) ==
            std::string(actual["contained"][0]["identifier"][0]["value"].GetString()));

      auto& a = actual.GetAllocator();
      actual.RemoveMember("id");
      actual.RemoveMember("meta");
      REQUIRE(actual.HasMember("date"));
      actual.RemoveMember("date");
      actual["subject"]["reference"].SetString("Patient/{patient}", a);
      actual["content"][0]["attachment"]["url"].SetString("Binary/{binary}", a);
      actual["content"][0]["attachment"].RemoveMember("hash");
      actual["content"][0]["attachment"].RemoveMember("size");
      INFO("actual:\n" << pretty(actual));
      CHECK(actual == expected["document_reference"]);
    }
  }
}

TEST_CASE("$ingest-cda: unknown patient, duplicate document, replacement and media type", "[cda]") {
  search_test::Server server;
  const std::string report = read_text(kCdaDir / "report.xml");

  FhirResponse r = ingest(server.services(), report, "application/json");
  CHECK(status_of(r) == 415);

  r = ingest(server.services(), report);
  REQUIRE(status_of(r) == 422);
  CHECK(r.error.issues().front().message_id == "cda-patient-unknown");
  CHECK(r.error.message().find("285037511203464") == std::string::npos);  // no patient data echoed

  // A Patient with that INS but an identity not (yet) qualified.
  REQUIRE(server.put(R"({"resourceType": "Patient", "id": "cda-marie",
      "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "285037511203464"}],
      "name": [{"family": "DURAND", "given": ["Marie"]}], "gender": "female", "birthDate": "1985-03-12"})") == 201);
  r = ingest(server.services(), report);
  REQUIRE(status_of(r) == 422);
  CHECK(r.error.issues().front().message_id == "cda-patient-not-qualified");

  seed_patients(server);
  r = ingest(server.services(), report);
  REQUIRE(status_of(r) == 201);
  rapidjson::Document first;
  first.Parse(r.json.data(), r.json.size());
  const std::string first_id = first["id"].GetString();

  r = ingest(server.services(), report);
  REQUIRE(status_of(r) == 409);
  CHECK(r.error.issues().front().message_id == "cda-duplicate");

  // A new version that replaces the first: relatesTo points at it.
  std::string replacement = report;
  const std::string old_id = "6c1f3a52-8e0b-4c7d-9a51-2f4b7e8d1a01";
  const std::string new_id = "6c1f3a52-8e0b-4c7d-9a51-2f4b7e8d1a99";
  replacement.replace(replacement.find(old_id), old_id.size(), new_id);
  const std::string related = "  <relatedDocument typeCode=\"RPLC\"><parentDocument><id root=\"" + old_id +
                              "\"/></parentDocument></relatedDocument>\n";
  replacement.insert(replacement.find("  <documentationOf>"), related);
  r = ingest(server.services(), replacement);
  INFO(r.error.message());
  REQUIRE(status_of(r) == 201);
  rapidjson::Document second;
  second.Parse(r.json.data(), r.json.size());
  REQUIRE(second["relatesTo"].Size() == 1);
  CHECK(std::string(second["relatesTo"][0]["code"].GetString()) == "replaces");
  CHECK(std::string(second["relatesTo"][0]["target"]["reference"].GetString()) == "DocumentReference/" + first_id);
  // The replaced document is superseded, and cannot be replaced again.
  CHECK(std::string(read_resource(server, "DocumentReference", first_id)["status"].GetString()) == "superseded");
  std::string again = replacement;
  again.replace(again.find(new_id), new_id.size(), "6c1f3a52-8e0b-4c7d-9a51-2f4b7e8d1a96");
  r = ingest(server.services(), again);
  REQUIRE(status_of(r) == 409);
  CHECK(r.error.issues().front().message_id == "cda-related-not-current");

  // Replacing a document the server does not hold.
  std::string orphan = replacement;
  orphan.replace(orphan.find(new_id), new_id.size(), "6c1f3a52-8e0b-4c7d-9a51-2f4b7e8d1a98");
  orphan.replace(orphan.find(old_id), old_id.size(), "6c1f3a52-8e0b-4c7d-9a51-2f4b7e8d1a97");
  r = ingest(server.services(), orphan);
  REQUIRE(status_of(r) == 422);
  CHECK(r.error.issues().front().message_id == "cda-related-unknown");
}

TEST_CASE("read_cda_document maps without storage and reports warnings apart", "[cda]") {
  espace::interactions::CdaDocument doc;
  std::string xml = read_text(kCdaDir / "biology.xml");
  // Drop the author's organization: a warning, not an error.
  size_t from = xml.find("      <representedOrganization>");
  size_t to = xml.find("</representedOrganization>", from) + std::string("</representedOrganization>\n").size();
  xml.erase(from, to - from);
  auto s = espace::interactions::read_cda_document(test_definitions(), xml, &doc);
  INFO(s.message());
  REQUIRE(s.is_ok());
  CHECK(doc.patient_ins == "162112A01234541");
  REQUIRE(doc.warnings.size() == 1);
  CHECK(doc.warnings[0].message_id == "cda-author-organization");
  CHECK(doc.warnings[0].location == "/ClinicalDocument/author/assignedAuthor/representedOrganization");
  std::string json = espace::fhir::write_json(doc.document_reference);
  CHECK(json.find("\"subject\"") == std::string::npos);
  CHECK(json.find("urn:ihe:lab:xd-lab:2008") != std::string::npos);
  CHECK(json.find("\"masterIdentifier\":{\"system\":\"urn:ietf:rfc:3986\",\"value\":\"urn:uuid:7d2a4b63-9f1c-4d8e-8b62-3a5c8f9e2b01\"}") !=
        std::string::npos);

  // A root with an extension is the XDS uniqueId root^extension.
  const std::string uuid_id = "<id root=\"7d2a4b63-9f1c-4d8e-8b62-3a5c8f9e2b01\"/>";
  xml.replace(xml.find(uuid_id), uuid_id.size(), "<id root=\"1.2.250.1.213.1.1.9\" extension=\"DOC-42\"/>");
  s = espace::interactions::read_cda_document(test_definitions(), xml, &doc);
  REQUIRE(s.is_ok());
  json = espace::fhir::write_json(doc.document_reference);
  CHECK(json.find("\"masterIdentifier\":{\"value\":\"1.2.250.1.213.1.1.9^DOC-42\"}") != std::string::npos);
}

TEST_CASE("$ingest-cda: concurrent submissions of one document store it once", "[cda]") {
  search_test::Server server;
  seed_patients(server);
  const std::string report = read_text(kCdaDir / "report.xml");
  std::vector<int> statuses(8, 0);
  std::vector<std::thread> senders;
  for (size_t i = 0; i < statuses.size(); ++i)
    senders.emplace_back([&, i] { statuses[i] = status_of(ingest(server.services(), report)); });
  for (std::thread& t : senders) t.join();
  CHECK(std::count(statuses.begin(), statuses.end(), 201) == 1);
  CHECK(std::count(statuses.begin(), statuses.end(), 409) == 7);
  FhirResponse r = server.search("DocumentReference", "_summary=count");
  rapidjson::Document bundle;
  bundle.Parse(r.json.data(), r.json.size());
  CHECK(bundle["total"].GetInt() == 1);
  r = server.search("Binary", "_summary=count");
  bundle.Parse(r.json.data(), r.json.size());
  CHECK(bundle["total"].GetInt() == 1);
}
