// The DMP document lifecycle through the real server: replacement chains,
// metadata update by PATCH, logical deletion, archiving.
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <set>
#include <thread>
#include <vector>
#include <string>

#include "http_client.h"
#include "json_checks.h"
#include "mhd_support.h"
#include "server_process.h"

using espace::testing::history_total;
using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::json_of;
using espace::testing::ServerProcess;
using espace::testing::str;
using namespace mhd_test;

namespace {

// Submits one document (optionally replacing another) and returns "DocumentReference/<id>".
std::string submit(HttpClient& c, const std::string& ss_uid, const std::string& doc_uid,
                   const std::string& replaces = "", int expect = 200, std::string* body = nullptr) {
  Submission s;
  s.unique_id = ss_uid;
  Document d;
  d.unique_id = doc_uid;
  d.replaces = replaces;
  d.content = "contenu " + doc_uid + "\n";
  s.documents.push_back(d);
  HttpResponse r = post_bundle(c, provide_bundle(s));
  if (body) *body = r.body;
  INFO(r.body);
  REQUIRE(r.status == expect);
  if (expect != 200) return {};
  auto j = json_of(r);
  return target_of(str(j["entry"][1]["response"], "location"), "DocumentReference");
}

std::set<std::string> found_ids(HttpClient& c, const std::string& query) {
  HttpResponse r = c.get(query);
  INFO(query << " -> " << r.body);
  REQUIRE(r.status == 200);
  auto j = json_of(r);
  std::set<std::string> ids;
  if (j.HasMember("entry"))
    for (auto& e : j["entry"].GetArray()) ids.insert("DocumentReference/" + str(e["resource"], "id"));
  return ids;
}

HttpResponse patch(HttpClient& c, const std::string& target, const std::string& body) {
  return c.request("PATCH", "/" + target, body, {{"Content-Type", "application/json-patch+json"}});
}

}  // namespace

TEST_CASE("replacement chain: each replaced version becomes superseded and stays retrievable", "[mhd]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load_fixtures(c);
  std::string v1 = submit(c, "1.2.250.1.999.30.1", "1.2.250.1.999.40.1");
  std::string v2 = submit(c, "1.2.250.1.999.30.2", "1.2.250.1.999.40.2", v1);
  std::string v3 = submit(c, "1.2.250.1.999.30.3", "1.2.250.1.999.40.3", v2);
  CHECK(str(json_of(c.get("/" + v1)), "status") == "superseded");
  CHECK(str(json_of(c.get("/" + v2)), "status") == "superseded");
  CHECK(str(json_of(c.get("/" + v3)), "status") == "current");
  auto newest = json_of(c.get("/" + v3));
  CHECK(str(newest["relatesTo"][0]["target"], "reference") == v2);
  // The old document's bytes are still there.
  auto old_doc = json_of(c.get("/" + v1));
  std::string binary = str(old_doc["content"][0]["attachment"], "url");
  HttpResponse bytes = c.get("/" + binary, {{"Accept", "*/*"}});
  CHECK(bytes.status == 200);
  CHECK(bytes.body == "contenu 1.2.250.1.999.40.1\n");
  // ITI-67 by status.
  CHECK(found_ids(c, "/DocumentReference?patient=Patient/mhd-qualified&status=current") == std::set<std::string>{v3});
  CHECK(found_ids(c, "/DocumentReference?patient=Patient/mhd-qualified&status=superseded") ==
        std::set<std::string>{v1, v2});

  const int64_t before = history_total(c);
  std::string body;
  // Replacing a superseded version: 409, nothing stored.
  submit(c, "1.2.250.1.999.30.4", "1.2.250.1.999.40.4", v1, 409, &body);
  CHECK(body.find("is superseded, not current") != std::string::npos);
  // Replacing an unknown document: 422.
  submit(c, "1.2.250.1.999.30.5", "1.2.250.1.999.40.5", "DocumentReference/does-not-exist", 422, &body);
  CHECK(body.find("is not a DocumentReference of this server") != std::string::npos);
  CHECK(history_total(c) == before);
}

TEST_CASE("metadata update by PATCH is limited to what the DMP allows", "[mhd]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load_fixtures(c);
  std::string doc = submit(c, "1.2.250.1.999.31.1", "1.2.250.1.999.41.1");

  HttpResponse conf = patch(c, doc, R"([{"op":"replace","path":"/securityLabel/0/coding/0/code","value":"R"}])");
  INFO(conf.body);
  CHECK(conf.status == 200);
  CHECK(str(json_of(c.get("/" + doc))["securityLabel"][0]["coding"][0], "code") == "R");

  HttpResponse type = patch(c, doc, R"([{"op":"replace","path":"/type/coding/0/code","value":"34133-9"}])");
  CHECK(type.status == 422);
  CHECK(type.body.find("path '/type/coding/0/code' is not one of them") != std::string::npos);
  HttpResponse moved = patch(c, doc, R"([{"op":"move","from":"/type","path":"/meta/tag"}])");
  CHECK(moved.status == 422);
  CHECK(moved.body.find("from '/type'") != std::string::npos);
  HttpResponse superseded = patch(c, doc, R"([{"op":"replace","path":"/status","value":"superseded"}])");
  CHECK(superseded.status == 422);
  CHECK(superseded.body.find("changes only to entered-in-error") != std::string::npos);
  CHECK(str(json_of(c.get("/" + doc))["type"]["coding"][0], "code") == "11488-4");
}

TEST_CASE("logical deletion and archiving hide a document from default searches only", "[mhd]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load_fixtures(c);
  std::string kept = submit(c, "1.2.250.1.999.32.1", "1.2.250.1.999.42.1");
  std::string deleted = submit(c, "1.2.250.1.999.32.2", "1.2.250.1.999.42.2");
  std::string archived = submit(c, "1.2.250.1.999.32.3", "1.2.250.1.999.42.3");
  const std::string by_patient = "/DocumentReference?patient=Patient/mhd-qualified";
  CHECK(found_ids(c, by_patient) == std::set<std::string>{kept, deleted, archived});

  HttpResponse del = patch(c, deleted, R"([{"op":"replace","path":"/status","value":"entered-in-error"}])");
  INFO(del.body);
  REQUIRE(del.status == 200);
  HttpResponse arch = patch(c, archived, R"([{"op":"add","path":"/meta/tag","value":[
      {"system":"https://espace.example/fhir/CodeSystem/dmp-document-state","code":"archived"}]}])");
  INFO(arch.body);
  REQUIRE(arch.status == 200);

  // Default search: neither the deleted nor the archived one.
  CHECK(found_ids(c, by_patient) == std::set<std::string>{kept});
  // On demand.
  CHECK(found_ids(c, by_patient + "&status=entered-in-error") == std::set<std::string>{deleted});
  CHECK(found_ids(c, by_patient + "&_tag=https://espace.example/fhir/CodeSystem/dmp-document-state|archived") ==
        std::set<std::string>{archived});
  // Both stay readable; the deletion is a new version (history keeps the old one).
  CHECK(c.get("/" + deleted).status == 200);
  CHECK(c.get("/" + archived).status == 200);
  auto history = json_of(c.get("/" + deleted + "/_history"));
  CHECK(history["total"].GetInt() == 2);
  // A deleted document is not restored.
  HttpResponse undo = patch(c, deleted, R"([{"op":"replace","path":"/status","value":"current"}])");
  CHECK(undo.status == 422);
  // Unarchiving brings it back into default searches.
  HttpResponse unarchive = patch(c, archived, R"([{"op":"remove","path":"/meta/tag"}])");
  INFO(unarchive.body);
  CHECK(unarchive.status == 200);
  CHECK(found_ids(c, by_patient) == std::set<std::string>{kept, archived});
}

// ---- plain REST writes of a DocumentReference (documents/document_writes.cpp) ----

namespace {

// A DocumentReference as a client would POST it, outside ITI-65.
std::string plain_document(const std::string& unique_id, const std::string& description,
                           const std::string& id = "") {
  return std::string(R"({"resourceType":"DocumentReference",)") + (id.empty() ? "" : R"("id":")" + id + R"(",)") +
         R"("masterIdentifier":{"system":"urn:ietf:rfc:3986","value":"urn:oid:)" + unique_id + R"("},)" +
         R"("status":"current","type":{"coding":[{"system":"http://loinc.org","code":"11488-4"}]},)" +
         R"("subject":{"reference":"Patient/mhd-qualified"},"description":")" + description + R"(",)" +
         R"("securityLabel":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"N"}]}],)" +
         R"("content":[{"attachment":{"contentType":"text/plain","data":"Y29udGVudQ=="}}]})";
}

HttpResponse post_document(HttpClient& c, const std::string& json) {
  return c.request("POST", "/DocumentReference", json, {{"Content-Type", "application/fhir+json"}});
}

HttpResponse put_document(HttpClient& c, const std::string& target, const std::string& json) {
  return c.request("PUT", "/" + target, json, {{"Content-Type", "application/fhir+json"}});
}

// Replaces the first occurrence of `from` in `text`.
std::string replaced(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("POST of a DocumentReference cannot duplicate a stored masterIdentifier", "[mhd]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load_fixtures(c);
  // Stored through ITI-65 first: a plain POST with its uniqueId is refused.
  std::string submitted = submit(c, "1.2.250.1.999.35.1", "1.2.250.1.999.45.1");
  int64_t before = history_total(c);
  HttpResponse dup = post_document(c, plain_document("1.2.250.1.999.45.1", "autre document"));
  INFO(dup.body);
  CHECK(dup.status == 409);
  CHECK(str(json_of(dup), "resourceType") == "OperationOutcome");
  CHECK(dup.body.find("masterIdentifier urn:oid:1.2.250.1.999.45.1 is already the uniqueId of " + submitted) !=
        std::string::npos);
  CHECK(history_total(c) == before);

  // A new uniqueId by POST; the identical resource again is answered with the
  // stored one (a retry), a different one with the same uniqueId is refused.
  HttpResponse first = post_document(c, plain_document("1.2.250.1.999.45.2", "compte rendu"));
  INFO(first.body);
  REQUIRE(first.status == 201);
  std::string stored = target_of(first.header("Location"), "DocumentReference");
  before = history_total(c);
  HttpResponse again = post_document(c, plain_document("1.2.250.1.999.45.2", "compte rendu"));
  CHECK(again.status == 200);
  CHECK(target_of(again.header("Location"), "DocumentReference") == stored);
  HttpResponse other = post_document(c, plain_document("1.2.250.1.999.45.2", "un autre compte rendu"));
  CHECK(other.status == 409);
  CHECK(other.body.find("is already the uniqueId of " + stored) != std::string::npos);
  CHECK(history_total(c) == before);

  // The other way round: ITI-65 with a uniqueId stored by POST.
  std::string body;
  submit(c, "1.2.250.1.999.35.2", "1.2.250.1.999.45.2", "", 409, &body);
  CHECK(history_total(c) == before);
  auto found = json_of(c.get("/DocumentReference?identifier=urn:oid:1.2.250.1.999.45.2"));
  CHECK(found["total"].GetInt() == 1);
}

TEST_CASE("concurrent POSTs of one masterIdentifier store exactly one document", "[mhd]") {
  ServerProcess server;
  {
    HttpClient c("127.0.0.1", server.port());
    load_fixtures(c);
  }
  constexpr int kClients = 8;
  std::vector<int> statuses(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i)
    clients.emplace_back([&, i] {
      HttpClient c("127.0.0.1", server.port());
      // Different content each: no request is a replay of another.
      statuses[i] = post_document(c, plain_document("1.2.250.1.999.46.1", "version " + std::to_string(i))).status;
    });
  for (std::thread& t : clients) t.join();
  CHECK(std::count(statuses.begin(), statuses.end(), 201) == 1);
  CHECK(std::count(statuses.begin(), statuses.end(), 409) == kClients - 1);
  HttpClient c("127.0.0.1", server.port());
  auto found = json_of(c.get("/DocumentReference?identifier=urn:oid:1.2.250.1.999.46.1"));
  CHECK(found["total"].GetInt() == 1);
}

TEST_CASE("PUT on a DocumentReference obeys the limits of the metadata update", "[mhd]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load_fixtures(c);
  std::string doc = submit(c, "1.2.250.1.999.36.1", "1.2.250.1.999.47.1");
  std::string stored = c.get("/" + doc).body;
  const int64_t before = history_total(c);

  HttpResponse type = put_document(c, doc, replaced(stored, "\"11488-4\"", "\"34133-9\""));
  INFO(type.body);
  CHECK(type.status == 422);
  CHECK(type.body.find("type differs from the stored version") != std::string::npos);
  HttpResponse uid = put_document(c, doc, replaced(stored, "1.2.250.1.999.47.1", "1.2.250.1.999.47.9"));
  CHECK(uid.status == 422);
  CHECK(uid.body.find("masterIdentifier differs from the stored version") != std::string::npos);
  HttpResponse superseded = put_document(c, doc, replaced(stored, "\"status\":\"current\"", "\"status\":\"superseded\""));
  CHECK(superseded.status == 422);
  CHECK(superseded.body.find("changes only to entered-in-error") != std::string::npos);
  CHECK(history_total(c) == before);
  CHECK(c.get("/" + doc).body == stored);

  // What the lifecycle allows: the same document, the confidentiality, then the deletion.
  CHECK(put_document(c, doc, stored).status == 200);
  std::string restricted = replaced(stored, "\"code\":\"N\"", "\"code\":\"R\"");
  CHECK(put_document(c, doc, restricted).status == 200);
  CHECK(str(json_of(c.get("/" + doc))["securityLabel"][0]["coding"][0], "code") == "R");
  std::string deleted = replaced(restricted, "\"status\":\"current\"", "\"status\":\"entered-in-error\"");
  CHECK(put_document(c, doc, deleted).status == 200);
  HttpResponse restored = put_document(c, doc, restricted);
  CHECK(restored.status == 422);
  CHECK(restored.body.find("changes only to entered-in-error") != std::string::npos);
  CHECK(str(json_of(c.get("/" + doc)), "status") == "entered-in-error");
}

TEST_CASE("PUT cannot create a DocumentReference beside the uniqueness rule", "[mhd]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load_fixtures(c);
  std::string doc = submit(c, "1.2.250.1.999.37.1", "1.2.250.1.999.48.1");
  const int64_t before = history_total(c);
  // A stored uniqueId under another id: 409 naming the stored document.
  HttpResponse dup = put_document(c, "DocumentReference/client-chosen-1",
                                  plain_document("1.2.250.1.999.48.1", "copie", "client-chosen-1"));
  INFO(dup.body);
  CHECK(dup.status == 409);
  CHECK(dup.body.find("is already the uniqueId of " + doc) != std::string::npos);
  // A new uniqueId under an id of the client's choosing: created by POST only.
  HttpResponse fresh = put_document(c, "DocumentReference/client-chosen-2",
                                    plain_document("1.2.250.1.999.48.2", "nouveau", "client-chosen-2"));
  CHECK(fresh.status == 422);
  CHECK(fresh.body.find("is created with POST") != std::string::npos);
  CHECK(history_total(c) == before);
  CHECK(c.get("/DocumentReference/client-chosen-2").status == 404);
}
