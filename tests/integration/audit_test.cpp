// The audit trail end to end: every request leaves an AuditEvent readable
// through the API (never writable), and `espace audit verify` accepts the
// chain the server wrote and rejects it once the database file is edited.
#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "http_client.h"
#include "json_checks.h"
#include "server_process.h"

using namespace espace::testing;

namespace {

const std::vector<std::pair<std::string, std::string>> kJson = {{"Content-Type", "application/fhir+json"},
                                                                 {"Accept", "application/fhir+json"}};

std::vector<std::string> entry_ids(const rapidjson::Document& bundle) {
  std::vector<std::string> ids;
  if (!bundle.HasMember("entry")) return ids;
  for (const auto& e : bundle["entry"].GetArray()) ids.push_back(str(e["resource"], "id"));
  return ids;
}

bool names_entity(const rapidjson::Value& event, const std::string& reference) {
  if (!event.HasMember("entity")) return false;
  for (const auto& e : event["entity"].GetArray())
    if (e.HasMember("what") && str(e["what"], "reference") == reference) return true;
  return false;
}

// The target of a link ("next", ...) without scheme and authority, or "".
std::string link_target(const rapidjson::Document& bundle, const std::string& relation) {
  for (const auto& l : bundle["link"].GetArray()) {
    if (str(l, "relation") != relation) continue;
    std::string url = str(l, "url");
    size_t path = url.find('/', url.find("//") + 2);
    return url.substr(path);
  }
  return "";
}

}  // namespace

TEST_CASE("every request is audited and the events are read and searched through the API", "[audit]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());

  REQUIRE(c.request("PUT", "/Patient/aud1", R"({"resourceType":"Patient","id":"aud1","name":[{"family":"Durand"}]})",
                    kJson)
              .status == 201);
  REQUIRE(c.request("POST", "/Observation",
                    R"({"resourceType":"Observation","status":"final","code":{"text":"poids"},)"
                    R"("subject":{"reference":"Patient/aud1"}})",
                    kJson)
              .status == 201);
  REQUIRE(c.get("/Patient/aud1", kJson).status == 200);
  REQUIRE(c.get("/Observation?patient=aud1&_count=5", kJson).status == 200);
  REQUIRE(c.get("/Patient/other", kJson).status == 404);

  // The four requests about aud1, newest first; the search itself is not yet among them.
  HttpResponse listed = c.get("/AuditEvent?patient=aud1", kJson);
  REQUIRE(listed.status == 200);
  auto bundle = json_of(listed);
  REQUIRE(str(bundle, "type") == "searchset");
  REQUIRE(bundle["entry"].Size() == 4);
  std::vector<std::string> actions, subtypes;
  for (const auto& e : bundle["entry"].GetArray()) {
    const auto& event = e["resource"];
    CHECK(str(event, "resourceType") == "AuditEvent");
    CHECK(names_entity(event, "Patient/aud1"));
    CHECK(str(event, "outcome") == "0");
    actions.push_back(str(event, "action"));
    subtypes.push_back(str(event["subtype"][0], "code"));
  }
  CHECK(actions == std::vector<std::string>{"E", "R", "C", "U"});
  CHECK(subtypes == std::vector<std::string>{"search-type", "read", "create", "update"});
  // No identifying value of the request in the events (the family name was only in the body).
  CHECK(listed.body.find("Durand") == std::string::npos);

  // The failed read is recorded too, with a failure outcome, about its own patient id.
  auto other = json_of(c.get("/AuditEvent?patient=other", kJson));
  REQUIRE(other["entry"].Size() == 1);
  CHECK(str(other["entry"][0]["resource"], "outcome") == "4");

  // Read, vread, instance history of one event.
  std::string id = entry_ids(bundle).front();
  HttpResponse read = c.get("/AuditEvent/" + id, kJson);
  REQUIRE(read.status == 200);
  CHECK(read.header("ETag") == "W/\"1\"");
  CHECK(str(json_of(read), "id") == id);
  CHECK(c.get("/AuditEvent/" + id + "/_history/1", kJson).status == 200);
  CHECK(c.get("/AuditEvent/" + id + "/_history/2", kJson).status == 404);
  CHECK(c.get("/AuditEvent/no-such-event", kJson).status == 404);
  auto history = json_of(c.get("/AuditEvent/" + id + "/_history", kJson));
  CHECK(entry_ids(history) == std::vector<std::string>{id});

  // The base specification accepts what the server writes.
  HttpResponse validated = c.request("POST", "/AuditEvent/$validate", read.body, kJson);
  INFO(validated.body);
  CHECK(validated.status == 200);
  CHECK(validated.body.find("\"error\"") == std::string::npos);

  // Paging: three events per page, following next links, then all at once.
  std::vector<std::string> paged;
  std::string target = "/AuditEvent?_count=3";
  for (int pages = 0; !target.empty() && pages < 100; ++pages) {
    auto page = json_of(c.get(target, kJson));
    for (const std::string& e : entry_ids(page)) paged.push_back(e);
    target = link_target(page, "next");
  }
  REQUIRE(paged.size() >= 9);
  std::vector<std::string> all = entry_ids(json_of(c.get("/AuditEvent?_count=1000", kJson)));
  // The paging requests themselves were recorded after the first page: newer, first in `all`.
  REQUIRE(all.size() > paged.size());
  CHECK(std::vector<std::string>(all.end() - static_cast<long>(paged.size()), all.end()) == paged);
  CHECK(std::set<std::string>(all.begin(), all.end()).size() == all.size());

  // Dates: nothing recorded in the future, everything before it; the compartment form agrees.
  CHECK(entry_ids(json_of(c.get("/AuditEvent?date=ge2100-01-01", kJson))).empty());
  auto until = json_of(c.get("/AuditEvent?patient=aud1&date=lt2100", kJson));
  CHECK(entry_ids(until).size() >= 5);  // the four plus the first audit search
  std::vector<std::string> in_compartment = entry_ids(json_of(c.get("/Patient/aud1/AuditEvent", kJson)));
  // ... plus the event of the date search just made, the newest.
  REQUIRE(in_compartment.size() == entry_ids(until).size() + 1);
  CHECK(std::vector<std::string>(in_compartment.begin() + 1, in_compartment.end()) == entry_ids(until));
  CHECK(c.get("/AuditEvent?date=nonsense", kJson).status == 400);
  CHECK(c.get("/AuditEvent?family=Durand", kJson).status == 400);
  CHECK(c.get("/AuditEvent?_count=0", kJson).status == 400);
}

TEST_CASE("nobody writes AuditEvents, not even inside batch or transaction", "[audit]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  REQUIRE(c.get("/metadata", kJson).status == 200);
  auto events = json_of(c.get("/AuditEvent?_count=1", kJson));
  REQUIRE(events["entry"].Size() == 1);
  std::string id = str(events["entry"][0]["resource"], "id");
  std::string body = c.get("/AuditEvent/" + id, kJson).body;

  CHECK(c.request("POST", "/AuditEvent", body, kJson).status == 405);
  CHECK(c.request("PUT", "/AuditEvent/" + id, body, kJson).status == 405);
  CHECK(c.request("PUT", "/AuditEvent/fresh-id", body, kJson).status == 405);
  CHECK(c.request("DELETE", "/AuditEvent/" + id, "", kJson).status == 405);
  CHECK(c.request("PATCH", "/AuditEvent/" + id, R"([{"op":"replace","path":"/outcome","value":"8"}])",
                  {{"Content-Type", "application/json-patch+json"}})
            .status == 405);

  // The copy of an event without its id, as a client would submit it.
  std::string copy = body;
  size_t at = copy.find("\"id\":\"" + id + "\",");
  REQUIRE(at != std::string::npos);
  copy.erase(at, id.size() + 8);
  std::string batch = R"({"resourceType":"Bundle","type":"batch","entry":[{"resource":)" + copy +
                      R"(,"request":{"method":"POST","url":"AuditEvent"}},)"
                      R"({"request":{"method":"DELETE","url":"AuditEvent/)" + id + R"("}}]})";
  HttpResponse b = c.request("POST", "/", batch, kJson);
  REQUIRE(b.status == 200);
  auto bj = json_of(b);
  CHECK(str(bj["entry"][0]["response"], "status").rfind("405", 0) == 0);
  CHECK(str(bj["entry"][1]["response"], "status").rfind("405", 0) == 0);
  std::string transaction = R"({"resourceType":"Bundle","type":"transaction","entry":[{"resource":)" + copy +
                            R"(,"request":{"method":"POST","url":"AuditEvent"}}]})";
  HttpResponse t = c.request("POST", "/", transaction, kJson);
  INFO(t.body);
  CHECK(t.status == 405);
  // The event is still there, unchanged.
  CHECK(c.get("/AuditEvent/" + id, kJson).body == body);
}

TEST_CASE("espace audit verify accepts the server's chain and catches an edited database file", "[audit]") {
  {
    ServerProcess server;
    HttpClient c("127.0.0.1", server.port());
    REQUIRE(c.get("/Patient/nobody", kJson).status == 404);  // an event with outcomeDesc "HTTP 404"
    for (int i = 0; i < 5; ++i) REQUIRE(c.get("/metadata", kJson).status == 200);
    // Verification while the server runs reads a consistent snapshot.
    std::string out;
    CHECK(run_espace({"audit", "verify", "--db", server.db_path()}, &out) == 0);
    CHECK(out.find("intact") != std::string::npos);
    REQUIRE(server.stop(15) == 0);

    std::string err;
    REQUIRE(run_espace({"audit", "verify", "--db", server.db_path()}, &out, &err) == 0);
    CHECK(out.find("intact: 6 records") != std::string::npos);

    // Forge the failed read into a success, byte for byte in the file.
    std::string bytes;
    {
      std::ifstream in(server.db_path(), std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    // Bodies are stored in their compact form (server/storage/src/sqlite_audit.cpp),
    // where the fragment `","outcomeDesc":"HTTP ` is the byte 0x08.
    const std::string failed = std::string("\x08") + "404";
    size_t at = bytes.find(failed);
    REQUIRE(at != std::string::npos);
    REQUIRE(bytes.find(failed, at + 1) == std::string::npos);
    bytes.replace(at + 1, 3, "200");
    {
      std::ofstream out_file(server.db_path(), std::ios::binary | std::ios::trunc);
      out_file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    out.clear();
    CHECK(run_espace({"audit", "verify", "--db", server.db_path()}, &out, &err) == 1);
    INFO(out << err);
    CHECK(out.find("BROKEN at record 1: altered") != std::string::npos);
  }
  CHECK(run_espace({"audit", "verify", "--db", "/nonexistent/espace.db"}) == 3);
  CHECK(run_espace({"audit", "verify"}) == 2);
  CHECK(run_espace({"audit", "check", "--db", "x"}) == 2);
}
