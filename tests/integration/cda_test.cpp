// POST /DocumentReference/$ingest-cda end to end: the real server, its
// validator, the HTTP routing of a raw XML body; the stored Binary and the
// DocumentReference found by the usual searches; hostile XML answered 400.
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>

#include "http_client.h"
#include "json_checks.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::json_of;
using espace::testing::ServerProcess;

namespace {

std::string cda_file(const std::string& name) {
  std::ifstream in(std::string(ESPACE_SOURCE_DIR) + "/test-data/cda/" + name, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  REQUIRE_FALSE(ss.str().empty());
  return ss.str();
}

HttpResponse ingest(HttpClient& c, const std::string& xml, const std::string& type = "application/xml") {
  return c.request("POST", "/DocumentReference/$ingest-cda", xml, {{"Content-Type", type}});
}

}  // namespace

TEST_CASE("$ingest-cda stores the CDA and its DocumentReference for the INS patient", "[cda]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());

  const std::string report = cda_file("report.xml");
  HttpResponse r = ingest(c, report);
  REQUIRE(r.status == 422);
  CHECK(r.body.find(R"("code":"cda-patient-unknown")") != std::string::npos);

  r = c.request("POST", "/", cda_file("patients.json"), {{"Content-Type", "application/fhir+json"}});
  REQUIRE(r.status == 200);

  r = ingest(c, report);
  INFO(r.body);
  REQUIRE(r.status == 201);
  auto doc = json_of(r);
  const std::string id = doc["id"].GetString();
  CHECK(r.header("Location").find("/DocumentReference/" + id + "/_history/1") != std::string::npos);
  CHECK(std::string(doc["subject"]["reference"].GetString()) == "Patient/cda-marie");
  CHECK(std::string(doc["type"]["coding"][0]["code"].GetString()) == "11488-4");

  // The Binary holds the CDA as sent.
  std::string url = doc["content"][0]["attachment"]["url"].GetString();
  HttpResponse b = c.get("/" + url, {{"Accept", "application/fhir+json"}});
  REQUIRE(b.status == 200);
  auto binary = json_of(b);
  CHECK(std::string(binary["contentType"].GetString()) == "text/xml");

  // Found by the searches a document consumer uses.
  auto bundle = json_of(c.get("/DocumentReference?patient=cda-marie&type=http://loinc.org|11488-4"));
  REQUIRE(bundle["entry"].Size() == 1);
  CHECK(std::string(bundle["entry"][0]["resource"]["id"].GetString()) == id);

  // The same document twice: 409.
  r = ingest(c, report, "text/xml; charset=UTF-8");
  CHECK(r.status == 409);
  CHECK(r.body.find(R"("code":"cda-duplicate")") != std::string::npos);

  // Each broken document is refused with its rule and the XPath of the problem.
  r = ingest(c, cda_file("broken-ins-key.xml"));
  CHECK(r.status == 422);
  CHECK(r.body.find(R"("code":"cda-patient-ins-key")") != std::string::npos);
  CHECK(r.body.find("/ClinicalDocument/recordTarget/patientRole/id[1]/@extension") != std::string::npos);
  r = ingest(c, cda_file("broken-no-author.xml"));
  CHECK(r.status == 422);
  CHECK(r.body.find(R"("code":"cda-author")") != std::string::npos);
  r = ingest(c, cda_file("broken-unknown-type.xml"));
  CHECK(r.status == 422);
  CHECK(r.body.find(R"("code":"cda-document-type")") != std::string::npos);

  // Hostile XML: 400 with an OperationOutcome, and the server keeps serving.
  for (const char* name : {"hostile-xxe.xml", "hostile-billion-laughs.xml"}) {
    r = ingest(c, cda_file(name));
    CHECK(r.status == 400);
    auto oo = json_of(r);
    CHECK(std::string(oo["resourceType"].GetString()) == "OperationOutcome");
    CHECK(r.body.find(R"("code":"cda-xml-doctype")") != std::string::npos);
    CHECK(r.body.find("root:") == std::string::npos);  // nothing of /etc/passwd
  }
  r = ingest(c, "<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><title>");
  CHECK(r.status == 400);
  r = ingest(c, report, "application/pdf");
  CHECK(r.status == 415);

  // Every other document of test-data is accepted.
  for (const char* name : {"biology.xml", "prescription.xml", "discharge-letter.xml", "pdf-report.xml"}) {
    r = ingest(c, cda_file(name));
    INFO(name << ": " << r.body);
    CHECK(r.status == 201);
  }

  // A new version of the report replaces it: the old one is superseded.
  std::string replacement = report;
  const std::string old_uid = "6c1f3a52-8e0b-4c7d-9a51-2f4b7e8d1a01";
  replacement.replace(replacement.find(old_uid), old_uid.size(), "6c1f3a52-8e0b-4c7d-9a51-2f4b7e8d1b01");
  replacement.insert(replacement.find("  <documentationOf>"),
                     "  <relatedDocument typeCode=\"RPLC\"><parentDocument><id root=\"" + old_uid +
                         "\"/></parentDocument></relatedDocument>\n");
  r = ingest(c, replacement);
  INFO(r.body);
  REQUIRE(r.status == 201);
  auto second = json_of(r);
  CHECK(std::string(second["relatesTo"][0]["target"]["reference"].GetString()) == "DocumentReference/" + id);
  auto first = json_of(c.get("/DocumentReference/" + id));
  CHECK(std::string(first["status"].GetString()) == "superseded");

  bundle = json_of(c.get("/DocumentReference?_summary=count"));
  CHECK(bundle["total"].GetInt() == 6);
  bundle = json_of(c.get("/Binary?_summary=count"));
  CHECK(bundle["total"].GetInt() == 6);
}

TEST_CASE("$ingest-cda refuses a document above --max-document-bytes, as ITI-65 does", "[cda]") {
  const std::string report = cda_file("report.xml");
  REQUIRE(report.size() > 2048);
  ServerProcess server({"--max-document-bytes", std::to_string(report.size() - 1)});
  HttpClient c("127.0.0.1", server.port());
  REQUIRE(c.request("POST", "/", cda_file("patients.json"), {{"Content-Type", "application/fhir+json"}}).status == 200);
  HttpResponse r = ingest(c, report);
  INFO(r.body);
  CHECK(r.status == 413);
  CHECK(r.body.find("accepts at most " + std::to_string(report.size() - 1)) != std::string::npos);
  CHECK(json_of(c.get("/DocumentReference?_summary=count"))["total"].GetInt() == 0);
}

TEST_CASE("$ingest-cda accepts a document of exactly --max-document-bytes", "[cda]") {
  const std::string report = cda_file("report.xml");
  ServerProcess server({"--max-document-bytes", std::to_string(report.size())});
  HttpClient c("127.0.0.1", server.port());
  REQUIRE(c.request("POST", "/", cda_file("patients.json"), {{"Content-Type", "application/fhir+json"}}).status == 200);
  HttpResponse r = ingest(c, report);
  INFO(r.body);
  CHECK(r.status == 201);
}
