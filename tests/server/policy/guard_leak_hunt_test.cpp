// Leak hunt (acceptance of issue 8), in-process: the real DMP policy (real
// ES256 tokens, real rules, the guard) over a real SQLite store loaded with
// test-data/policy/spaces.json, through http::FhirApi. For each hidden thing
//   - a MASQUE_PS document (and its Binary) seen by a professional who is not its author,
//   - INVISIBLE_PATIENT data seen by the patient,
//   - a professional the patient blocked, and one the patient never granted,
// every interaction is tried twice: once on the hidden resource (or patient)
// and once on an id that was never written. The two answers must be the same
// (status, headers and body, once the hidden id is put in place of the absent
// one and random Bundle ids and times are masked). Searches that cannot be
// paired must carry no trace of the hidden ids, and their totals must count
// only what they show. A control caller who may see each hidden thing proves
// it is really there.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "espace/fhir/json.h"
#include "espace/http/fhir_api.h"
#include "espace/http/worker_pool.h"
#include "espace/interactions/api.h"
#include "espace/policy/auth.h"
#include "espace/policy/rules.h"
#include "espace/storage/storage.h"
#include "model_fixture.h"
#include "text_helpers.h"

namespace {

using espace::testing::read_text;
using espace::testing::to_json;

using namespace espace;

std::string member(const rapidjson::Value& v, const char* name) {
  auto it = v.FindMember(name);
  return it != v.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

// Masks what differs between two identical answers: server-made UUIDs
// (Bundle ids, ids of resources created by the attempts) and times (Bundle
// timestamps, the times of those created resources).
std::string normalize(const std::string& text) {
  static const std::regex uuid("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}");
  static const std::regex stamp(R"("lastUpdated":"[^"]*")");
  static const std::regex modified("Last-Modified: [^\n]*");
  std::string out = std::regex_replace(text, uuid, "<uuid>");
  out = std::regex_replace(out, stamp, R"("lastUpdated":"<time>")");
  return std::regex_replace(out, modified, "Last-Modified: <time>");
}

struct Answer {
  int status = 0;
  std::string text;  // headers and body
};

class World {
 public:
  World() {
    char tmpl[] = "/tmp/espace-leak-hunt-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    const fhir::Definitions& defs = test_definitions();
    interactions::prepare_search(defs);
    REQUIRE(policy::make_dev_keys(dir_).is_ok());
    storage::SqliteOptions sopts;
    sopts.path = dir_ + "/leak.db";
    sopts.synchronous_full = false;
    REQUIRE(storage::open_sqlite(sopts, &store_).is_ok());
    services_.defs = &defs;
    services_.store = store_.get();

    const std::string root = ESPACE_SOURCE_DIR;
    rapidjson::Document spaces;
    std::string spaces_text = read_text(root + "/test-data/policy/spaces.json");
    spaces.Parse(spaces_text.data(), spaces_text.size());
    REQUIRE_FALSE(spaces.HasParseError());
    for (const auto& r : spaces["resources"].GetArray()) {
      interactions::FhirRequest put;
      put.interaction = interactions::Interaction::Update;
      put.type = member(r, "resourceType");
      put.id = member(r, "id");
      put.base_url = "http://espace.test";
      fhir::Node node;
      REQUIRE(fhir::parse_json(defs, to_json(r), &node).is_ok());
      put.resource = std::move(node);
      REQUIRE(interactions::dispatch(services_, put).status == 201);
    }

    rapidjson::Document table;
    std::string table_text = read_text(root + "/test-data/policy/cases.json");
    table.Parse(table_text.data(), table_text.size());
    REQUIRE_FALSE(table.HasParseError());
    REQUIRE(policy::RulesConfig::load(&config_).is_ok());
    int64_t now_first = 0, now_last = 0;
    REQUIRE(policy::fhir_date_range(member(table, "now"), &now_first, &now_last));
    policy::DmpPolicyConfig pconf;
    pconf.auth.jwks_file = dir_ + "/jwks.json";
    pconf.auth.issuers = {policy::MintOptions().issuer};
    pconf.auth.audience = policy::MintOptions().audience;
    pconf.clock_us = [now_first] { return now_first; };
    fhir::Status made = policy::make_dmp_policy(pconf, config_, defs, &policy_);
    INFO(made.message());
    REQUIRE(made.is_ok());
    http::ApiOptions api_opts;
    api_opts.base_url = "http://espace.test";
    api_ = std::make_unique<http::FhirApi>(services_, *policy_, pool_, api_opts);
    open_policy_ = policy::make_open_policy();
    open_api_ = std::make_unique<http::FhirApi>(services_, *open_policy_, pool_, api_opts);

    for (auto it = table["callers"].MemberBegin(); it != table["callers"].MemberEnd(); ++it) {
      const rapidjson::Value& c = it->value;
      policy::MintOptions m;
      m.key_file = dir_ + "/dev-signing-key.pem";
      m.subject = member(c, "subject");
      m.role = member(c, "role");
      m.fhir_user = member(c, "fhir_user");
      m.patient = member(c, "patient");
      m.national_id = member(c, "national_id");
      m.profession = member(c, "profession");
      m.organization = member(c, "organization");
      m.purpose = member(c, "purpose");
      m.scope = member(c, "scope");
      if (c.HasMember("represents"))
        for (const auto& p : c["represents"].GetArray()) m.represents.emplace_back(p.GetString());
      std::string jwt;
      REQUIRE(policy::mint_token(m, &jwt).is_ok());
      tokens_[it->name.GetString()] = jwt;
    }
  }
  ~World() {
    api_.reset();
    open_api_.reset();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  Answer as(const std::string& caller, const std::string& method, const std::string& target,
            const std::string& body = "", const std::string& extra_header = "") {
    http::Request req;
    req.method = method;
    req.target = target;
    REQUIRE(http::parse_target(target, &req.path, &req.query));
    req.headers.add("Host", "espace.test");
    req.headers.add("Accept", "application/fhir+json");
    if (!caller.empty()) req.headers.add("Authorization", "Bearer " + tokens_.at(caller));
    if (!body.empty())
      req.headers.add("Content-Type", method == "PATCH" ? "application/json-patch+json" : "application/fhir+json");
    if (!extra_header.empty()) {
      size_t colon = extra_header.find(':');
      req.headers.add(extra_header.substr(0, colon), extra_header.substr(colon + 2));
    }
    req.body = body;
    req.remote_address = "127.0.0.1";
    http::Response res = (caller.empty() ? *open_api_ : *api_).handle_now(req);
    Answer a;
    a.status = res.status;
    for (const auto& [k, v] : res.headers.items()) a.text += k + ": " + v + "\n";
    a.text += res.body;
    return a;
  }
  // Under the open policy: what is really stored.
  Answer stored(const std::string& target) { return as("", "GET", target); }

 private:
  std::string dir_;
  std::unique_ptr<storage::Storage> store_;
  interactions::Services services_;
  policy::RulesConfig config_;
  std::unique_ptr<policy::Policy> policy_, open_policy_;
  http::WorkerPool pool_{1, 16};
  std::unique_ptr<http::FhirApi> api_, open_api_;
  std::map<std::string, std::string> tokens_;
};

const char* kAbsent = "zz-never-written";

struct Request {
  std::string method, target, body, header;
};

std::string minimal_body(const std::string& type, const std::string& id, const std::string& patient) {
  std::string id_part = id.empty() ? "" : R"("id":")" + id + R"(",)";
  if (type == "Binary") return R"({"resourceType":"Binary",)" + id_part + R"("contentType":"text/plain","data":"SGk="})";
  if (type == "Observation")
    return R"({"resourceType":"Observation",)" + id_part + R"("status":"final","code":{"text":"x"},"subject":{"reference":"Patient/)" +
           patient + R"("}})";
  return R"({"resourceType":"DocumentReference",)" + id_part +
         R"("status":"current","subject":{"reference":"Patient/)" + patient +
         R"("},"content":[{"attachment":{"contentType":"text/plain"}}]})";
}

// Every interaction on one resource, with {X} for its id.
// `creates_by_put`: the caller may create with PUT (systems may, design
// decision): a PUT to a never-written id creates, to a hidden id is refused;
// that difference is inherent, so those requests are left out for them.
std::vector<Request> resource_requests(const std::string& type, const std::string& patient, bool creates_by_put) {
  const std::string t = "/" + type;
  const char* patch = R"([{"op":"add","path":"/language","value":"fr"}])";
  std::vector<Request> out = {
      {"GET", t + "/{X}"},
      {"GET", t + "/{X}/_history/1"},
      {"GET", t + "/{X}/_history/2"},
      {"GET", t + "/{X}/_history"},
      {"GET", t + "/{X}", "", "If-None-Match: W/\"1\""},
      {"DELETE", t + "/{X}"},
      {"DELETE", t + "/{X}", "", "If-Match: W/\"1\""},
      {"PUT", t + "/{X}", minimal_body(type, "{X}", patient)},
      {"PUT", t + "/{X}", minimal_body(type, "{X}", patient), "If-Match: W/\"1\""},
      {"PATCH", t + "/{X}", patch},
      {"POST", "/", R"({"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":")" + type +
                        R"(/{X}"}},{"request":{"method":"GET","url":")" + type + R"(/{X}/_history/1"}}]})"},
      {"POST", "/", R"({"resourceType":"Bundle","type":"transaction","entry":[{"resource":)" +
                        minimal_body(type, "{X}", patient) + R"(,"request":{"method":"PUT","url":")" + type +
                        R"(/{X}"}}]})"},
      {"POST", "/", R"({"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":")" +
                        type + R"(/{X}"}}]})"},
  };
  if (creates_by_put) {
    std::vector<Request> kept;
    for (Request& r : out)
      if (!(r.method == "PUT" && r.target.find("{X}") != std::string::npos) && r.body.find(R"("method":"PUT")") == std::string::npos)
        kept.push_back(std::move(r));
    out = std::move(kept);
  }
  if (type != "Binary") {
    std::string p = "patient=Patient/" + patient;
    out.push_back({"GET", t + "?_id={X}&" + p + "&_total=accurate"});
    out.push_back({"GET", t + "?_id={X}&" + p + "&_summary=count"});
    out.push_back({"GET", t + "?_id={X}&_total=accurate"});
    out.push_back({"GET", "/Patient/" + patient + t + "?_id={X}&_total=accurate"});
    out.push_back({"GET", "/Patient/" + patient + "/*?_id={X}&_total=accurate"});
    out.push_back({"GET", "/?_id={X}&_type=" + type});
    out.push_back({"DELETE", t + "?_id={X}&" + p});
    out.push_back({"PUT", t + "?_id={X}&" + p, minimal_body(type, "", patient)});
    out.push_back({"GET", "/Patient?_id=" + patient + "&_has:" + type + ":patient:_id={X}"});
    out.push_back({"POST", "/", R"({"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":")" +
                                    type + "?_id={X}&" + p + R"("}}]})"});
  }
  return out;
}

// Searches that cannot be paired with an absent twin: they must simply not
// show the hidden ids, and count what they show.
std::vector<std::string> patient_searches(const std::string& patient) {
  std::string p = "Patient/" + patient;
  return {"/DocumentReference?patient=" + p + "&_total=accurate",
          "/DocumentReference?patient=" + p + "&_summary=count",
          "/Observation?patient=" + p + "&_total=accurate",
          "/Patient/" + patient + "/DocumentReference?_total=accurate",
          "/Patient/" + patient + "/*?_total=accurate",
          "/Patient/" + patient + "/$everything",
          "/Patient?_id=" + patient + "&_revinclude=DocumentReference:patient&_revinclude=Observation:patient",
          "/DocumentReference?patient=" + p + "&_include=DocumentReference:author&_count=1",
          "/Binary?_id=bin-doc-a-masked,bin-doc-a-invis,bin-doc-a-consult",
          "/_history",
          "/DocumentReference/_history",
          "/Patient/" + patient + "/_history"};
}

std::string with(const std::string& s, const std::string& id) { return replace_all(s, "{X}", id); }

// Runs every request on `hidden` and on the absent twin as `caller`; returns
// the differences.
std::vector<std::string> differential(World& w, const std::string& caller, const std::string& type,
                                      const std::string& hidden, const std::string& patient,
                                      bool creates_by_put = false) {
  std::vector<std::string> problems;
  for (const Request& r : resource_requests(type, patient, creates_by_put)) {
    Answer h = w.as(caller, r.method, with(r.target, hidden), with(r.body, hidden), r.header);
    Answer a = w.as(caller, r.method, with(r.target, kAbsent), with(r.body, kAbsent), r.header);
    std::string expected = normalize(replace_all(a.text, kAbsent, hidden));
    if (h.status != a.status || normalize(h.text) != expected)
      problems.push_back(caller + " " + r.method + " " + with(r.target, hidden) + ": " + std::to_string(h.status) +
                         " vs absent " + std::to_string(a.status) + "\n  hidden: " + h.text.substr(0, 400) +
                         "\n  absent: " + a.text.substr(0, 400));
  }
  return problems;
}

std::vector<std::string> no_trace(World& w, const std::string& caller, const std::vector<std::string>& hidden_ids,
                                  const std::string& patient) {
  std::vector<std::string> problems;
  for (const std::string& target : patient_searches(patient)) {
    Answer r = w.as(caller, "GET", target);
    // The self link echoes the request; what was asked is no trace.
    static const std::regex self_link(R"(\{"relation":"self","url":"[^"]*"\})");
    std::string shown = std::regex_replace(r.text, self_link, "");
    for (const std::string& id : hidden_ids)
      if (shown.find(id) != std::string::npos)
        problems.push_back(caller + " GET " + target + " shows " + id + ": " + r.text.substr(0, 400));
    // A total counts only what the Bundle shows (all on one page here).
    rapidjson::Document doc;
    std::string body = r.text.substr(r.text.find('{') == std::string::npos ? 0 : r.text.find('{'));
    doc.Parse(body.data(), body.size());
    if (r.status == 200 && doc.IsObject() && doc.HasMember("total") && target.find("_total=accurate") != std::string::npos) {
      int64_t matches = 0;
      if (doc.HasMember("entry"))
        for (const auto& e : doc["entry"].GetArray())
          if (e.HasMember("search") && member(e["search"], "mode") == "match") ++matches;
      if (doc["total"].GetInt64() != matches)
        problems.push_back(caller + " GET " + target + ": total " + std::to_string(doc["total"].GetInt64()) +
                           " but " + std::to_string(matches) + " matches shown");
    }
  }
  return problems;
}

std::string report(const std::vector<std::string>& problems) {
  std::string out;
  for (size_t i = 0; i < problems.size() && i < 20; ++i) out += problems[i] + "\n";
  return out;
}

}  // namespace

TEST_CASE("leak hunt: a masked document and its Binary, for professionals who are neither author nor GP",
          "[guard][leak]") {
  World w;
  // Really there: the author and the GP see it (DMP rule); the callers below
  // see the patient's other documents, so only MASQUE_PS hides this one.
  REQUIRE(w.stored("/DocumentReference/doc-a-masked").status == 200);
  CHECK(w.as("dr-granted", "GET", "/DocumentReference/doc-a-masked").status == 200);
  CHECK(w.as("dr-gp", "GET", "/Binary/bin-doc-a-masked").status == 200);
  std::vector<std::string> problems;
  for (const char* caller : {"dr-emergency", "hosp-system"}) {
    CHECK(w.as(caller, "GET", "/DocumentReference/doc-a-consult").status == 200);
    CHECK(w.as(caller, "GET", "/Patient/pat-a/$everything").status == 200);
    bool creates_by_put = std::string(caller) == "hosp-system";
    auto more = differential(w, caller, "DocumentReference", "doc-a-masked", "pat-a", creates_by_put);
    problems.insert(problems.end(), more.begin(), more.end());
    more = differential(w, caller, "Binary", "bin-doc-a-masked", "pat-a", creates_by_put);
    problems.insert(problems.end(), more.begin(), more.end());
    more = no_trace(w, caller, {"doc-a-masked", "bin-doc-a-masked"}, "pat-a");
    problems.insert(problems.end(), more.begin(), more.end());
  }
  INFO(problems.size() << " leaks:\n" << report(problems));
  CHECK(problems.empty());
  // Nothing was changed by the attempts.
  Answer after = w.stored("/DocumentReference/doc-a-masked/_history");
  CHECK(after.text.find("\"total\":1") != std::string::npos);
}

TEST_CASE("leak hunt: INVISIBLE_PATIENT data, for the patient", "[guard][leak]") {
  World w;
  REQUIRE(w.stored("/DocumentReference/doc-a-invis").status == 200);
  CHECK(w.as("dr-gp", "GET", "/DocumentReference/doc-a-invis").status == 200);
  CHECK(w.as("dr-gp", "GET", "/Observation/obs-a-invis").status == 200);
  CHECK(w.as("pat-a", "GET", "/Observation/obs-a1").status == 200);

  std::vector<std::string> problems = differential(w, "pat-a", "DocumentReference", "doc-a-invis", "pat-a");
  auto more = differential(w, "pat-a", "Observation", "obs-a-invis", "pat-a");
  problems.insert(problems.end(), more.begin(), more.end());
  more = no_trace(w, "pat-a", {"doc-a-invis", "obs-a-invis", "bin-doc-a-invis"}, "pat-a");
  problems.insert(problems.end(), more.begin(), more.end());
  INFO(problems.size() << " leaks:\n" << report(problems));
  CHECK(problems.empty());
  CHECK(w.stored("/Observation/obs-a-invis/_history").text.find("\"total\":1") != std::string::npos);
}

namespace {

std::vector<std::string> patient_level_problems(World& w, const char* caller) {
  // Patient-level twins: the patient pat-a against a patient never written.
  const std::vector<std::string> patient_targets = {
      "/Patient/{X}",
      "/Patient/{X}/_history",
      "/Observation?patient=Patient/{X}&_total=accurate",
      "/DocumentReference?patient=Patient/{X}&_summary=count",
      "/Patient/{X}/Observation",
      "/Patient/{X}/*",
      "/Patient/{X}/$everything",
      "/Patient?_id={X}",
      "/Patient?_id={X}&_revinclude=Observation:patient",
  };
  std::vector<std::string> problems;
  {
    for (const std::string& target : patient_targets) {
      Answer h = w.as(caller, "GET", with(target, "pat-a"));
      Answer a = w.as(caller, "GET", with(target, kAbsent));
      if (h.status != a.status || normalize(h.text) != normalize(replace_all(a.text, kAbsent, "pat-a")))
        problems.push_back(std::string(caller) + " GET " + with(target, "pat-a") + ": " + std::to_string(h.status) +
                           " vs absent " + std::to_string(a.status) + "\n  hidden: " + h.text.substr(0, 300) +
                           "\n  absent: " + a.text.substr(0, 300));
    }
    for (const auto& [type, id] : std::vector<std::pair<std::string, std::string>>{
             {"Observation", "obs-a1"}, {"DocumentReference", "doc-a-consult"}, {"Binary", "bin-doc-a-consult"}}) {
      auto more = differential(w, caller, type, id, "pat-a");
      problems.insert(problems.end(), more.begin(), more.end());
    }
  }
  return problems;
}

}  // namespace

TEST_CASE("leak hunt: a professional without a grant learns nothing of the patient", "[guard][leak]") {
  World w;
  CHECK(w.as("dr-gp", "GET", "/Observation/obs-a1").status == 200);
  std::vector<std::string> problems = patient_level_problems(w, "dr-stranger");
  INFO(problems.size() << " leaks:\n" << report(problems));
  CHECK(problems.empty());
}

// This hunt found that the 403 named rule BLOCKED for a patient who blocked
// the caller and NO_GRANT for a patient never written (an existence oracle);
// the rules now answer both as NO_GRANT (commit 15e805d).
TEST_CASE("leak hunt: a blocked professional learns nothing of the patient", "[guard][leak]") {
  World w;
  CHECK(w.as("dr-gp", "GET", "/Observation/obs-a1").status == 200);
  std::vector<std::string> problems = patient_level_problems(w, "dr-blocked");
  INFO(problems.size() << " leaks:\n" << report(problems));
  CHECK(problems.empty());
}
