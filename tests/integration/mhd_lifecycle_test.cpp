// The DMP document lifecycle through the real server: replacement chains,
// metadata update by PATCH, logical deletion, archiving.
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <set>
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
