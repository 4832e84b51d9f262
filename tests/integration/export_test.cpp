// FHIR Bulk Data $export (hl7.org/fhir/uv/bulkdata/export.html) through the
// real binary: `espace serve --auth jwt` with callers from `espace token mint`.
// Kick-off, polling, manifest, NDJSON files, _type/_since/_outputFormat, the
// access rules (own record, GP, strangers, systems with and without a grant,
// administrators), ownership of the job, cancellation, expiry and the audit
// trail of kick-offs and downloads.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "dev_tokens.h"
#include "http_client.h"
#include "json_checks.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::json_of;
using espace::testing::run_espace;
using espace::testing::ServerProcess;
using espace::testing::str;
using espace::testing::kTestIssuer;
using espace::testing::kTestAudience;
using espace::testing::mint_dev_token;
using espace::testing::init_dev_keys;

namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

// The records: pa (GP dr-gp; one Observation hidden from the patient), pb
// (grants the hospital organization), pc (nobody but itself).
const char* const kResources[] = {
    R"({"resourceType":"Practitioner","id":"dr-gp","identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810000000001"}],"name":[{"family":"Generaliste"}]})",
    R"({"resourceType":"Organization","id":"hosp","identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.2","value":"010000001"}],"name":"Hopital"})",
    R"({"resourceType":"Patient","id":"pa","name":[{"family":"Alpha"}],"birthDate":"1970-01-01","generalPractitioner":[{"reference":"Practitioner/dr-gp"}]})",
    R"({"resourceType":"Patient","id":"pb","name":[{"family":"Beta"}],"birthDate":"1971-01-01"})",
    R"({"resourceType":"Patient","id":"pc","name":[{"family":"Gamma"}],"birthDate":"1972-01-01"})",
    R"({"resourceType":"Patient","id":"pm","name":[{"family":"Mineur"}],"birthDate":"2020-05-01"})",
    R"({"resourceType":"Observation","id":"obs-pm-1","status":"final","code":{"text":"croissance"},"subject":{"reference":"Patient/pm"}})",
    R"({"resourceType":"Observation","id":"obs-pa-1","status":"final","code":{"text":"poids"},"subject":{"reference":"Patient/pa"}})",
    R"({"resourceType":"Observation","id":"obs-pa-hidden","meta":{"security":[{"system":"urn:oid:1.2.250.1.213.1.1.4.13","code":"INVISIBLE_PATIENT"}]},"status":"final","code":{"text":"resultat"},"subject":{"reference":"Patient/pa"}})",
    R"({"resourceType":"DocumentReference","id":"doc-pa-1","status":"current","subject":{"reference":"Patient/pa"},"content":[{"attachment":{"contentType":"text/plain","url":"Binary/bin-pa-1"}}]})",
    R"({"resourceType":"DocumentReference","id":"doc-pa-hidden","meta":{"security":[{"system":"urn:oid:1.2.250.1.213.1.1.4.13","code":"INVISIBLE_PATIENT"}]},"status":"current","subject":{"reference":"Patient/pa"},"content":[{"attachment":{"contentType":"text/plain","url":"Binary/bin-pa-hidden"}}]})",
    R"({"resourceType":"Binary","id":"bin-pa-1","contentType":"text/plain","securityContext":{"reference":"DocumentReference/doc-pa-1"},"data":"Y29tcHRlIHJlbmR1"})",
    R"({"resourceType":"Binary","id":"bin-pa-hidden","contentType":"text/plain","securityContext":{"reference":"DocumentReference/doc-pa-hidden"},"data":"c2VjcmV0"})",
    R"({"resourceType":"Observation","id":"obs-pb-1","status":"final","code":{"text":"taille"},"subject":{"reference":"Patient/pb"}})",
    R"({"resourceType":"Observation","id":"obs-pc-1","status":"final","code":{"text":"tension"},"subject":{"reference":"Patient/pc"}})",
    R"({"resourceType":"Consent","id":"grant-pb-hosp","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"reference":"Patient/pb"},"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},"provision":{"type":"permit","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PRCP"}]},"reference":{"reference":"Organization/hosp"}}]}})",
};

std::string type_and_id(const std::string& json, std::string* type) {
  rapidjson::Document d;
  d.Parse(json.c_str());
  *type = str(d, "resourceType");
  return str(d, "id");
}

// A URL of the server as a request target ("http://host:port/x?y" -> "/x?y").
std::string target_of(const std::string& url) {
  size_t scheme = url.find("://");
  size_t slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  return slash == std::string::npos ? "/" : url.substr(slash);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

class Deployment {
 public:
  explicit Deployment(std::vector<std::string> extra = {}) {
    char tmpl[] = "/tmp/espace-export-it-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    init_dev_keys(dir_ + "/keys");
    {
      ServerProcess open({}, dir_ + "/export.db");
      HttpClient c("127.0.0.1", open.port());
      for (const char* json : kResources) {
        std::string type, id = type_and_id(json, &type);
        HttpResponse put = c.request("PUT", "/" + type + "/" + id, json, {{"Content-Type", "application/fhir+json"}});
        INFO(id << ": " << put.body);
        REQUIRE(put.status == 201);
      }
    }
    std::vector<std::string> args = {"--auth", "jwt", "--jwks", dir_ + "/keys/jwks.json", "--issuer", kTestIssuer,
                                     "--audience", kTestAudience};
    args.insert(args.end(), extra.begin(), extra.end());
    server_ = std::make_unique<ServerProcess>(args, dir_ + "/export.db");
    client_ = std::make_unique<HttpClient>("127.0.0.1", server_->port());
    mint("pa", {"--role", "patient", "--patient", "pa", "--fhir-user", "Patient/pa", "--sub", "account-pa"});
    mint("pb", {"--role", "patient", "--patient", "pb", "--fhir-user", "Patient/pb", "--sub", "account-pb"});
    mint("dr-gp", {"--role", "professional", "--fhir-user", "Practitioner/dr-gp", "--rpps", "810000000001",
                   "--profession", "10", "--sub", "account-dr-gp"});
    mint("dr-stranger", {"--role", "professional", "--fhir-user", "Practitioner/dr-x", "--rpps", "810000000004",
                         "--profession", "10", "--sub", "account-dr-x"});
    mint("hosp", {"--role", "system", "--organization", "010000001", "--sub", "account-hosp"});
    mint("admin", {"--role", "administrator", "--sub", "account-admin"});
    mint("parent", {"--role", "legal-representative", "--represents", "pm", "--sub", "account-parent"});
  }
  ~Deployment() {
    client_.reset();
    server_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  HttpResponse as(const std::string& caller, const std::string& method, const std::string& target,
                  Headers extra = {}) {
    Headers headers = {{"Authorization", "Bearer " + tokens_.at(caller)}};
    headers.insert(headers.end(), extra.begin(), extra.end());
    return client_->request(method, target, "", headers);
  }
  HttpResponse kick_off(const std::string& caller, const std::string& target) {
    return as(caller, "GET", target, {{"Accept", "application/fhir+json"}, {"Prefer", "respond-async"}});
  }
  // Polls the status URL until the job is no longer in progress.
  HttpResponse wait(const std::string& caller, const std::string& status_url) {
    for (int i = 0; i < 600; ++i) {
      HttpResponse r = as(caller, "GET", target_of(status_url));
      if (r.status != 202) return r;
      CHECK_FALSE(r.header("X-Progress").empty());
      CHECK_FALSE(r.header("Retry-After").empty());
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL("the export never completed");
    return {};
  }
  // Kick-off and wait: the manifest.
  rapidjson::Document run(const std::string& caller, const std::string& target, std::string* status_url = nullptr) {
    HttpResponse started = kick_off(caller, target);
    INFO(target << ": " << started.body);
    REQUIRE(started.status == 202);
    std::string url = started.header("Content-Location");
    REQUIRE(url.find("$export-poll-status") != std::string::npos);
    if (status_url) *status_url = url;
    HttpResponse done = wait(caller, url);
    INFO(done.body);
    REQUIRE(done.status == 200);
    CHECK(done.header("Content-Type").find("application/json") == 0);
    CHECK_FALSE(done.header("Expires").empty());
    return json_of(done);
  }
  // type -> the lines of its files, downloaded by `caller`.
  std::map<std::string, std::vector<std::string>> files(const std::string& caller, const rapidjson::Value& manifest) {
    std::map<std::string, std::vector<std::string>> out;
    for (const auto& o : manifest["output"].GetArray()) {
      HttpResponse file = as(caller, "GET", target_of(str(o, "url")), {{"Accept", "application/fhir+ndjson"}});
      INFO(file.body);
      REQUIRE(file.status == 200);
      CHECK(file.header("Content-Type") == "application/fhir+ndjson");
      std::vector<std::string> lines = lines_of(file.body);
      CHECK(static_cast<int64_t>(lines.size()) == o["count"].GetInt64());
      for (const std::string& line : lines) {
        rapidjson::Document d;
        d.Parse(line.c_str());
        REQUIRE_FALSE(d.HasParseError());
        CHECK(str(d, "resourceType") == str(o, "type"));
        out[str(o, "type")].push_back(str(d, "id"));
      }
    }
    return out;
  }
  const std::string& dir() const { return dir_; }

 private:
  void mint(const std::string& name, std::vector<std::string> extra) {
    std::string out = mint_dev_token(dir_ + "/keys", extra);
    tokens_[name] = out;
  }

  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<HttpClient> client_;
  std::map<std::string, std::string> tokens_;
};

std::set<std::string> ids(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

int job_dirs(const std::string& export_dir) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(export_dir, ec))
    if (e.path().filename().string().rfind("job-", 0) == 0) ++n;
  return n;
}

}  // namespace

TEST_CASE("a patient exports their own record, filtered by the rules", "[export][integration]") {
  Deployment d;
  rapidjson::Document manifest = d.run("pa", "/Patient/pa/$export");
  CHECK(manifest["requiresAccessToken"].GetBool());
  CHECK(str(manifest, "request").find("/Patient/pa/$export") != std::string::npos);
  CHECK(str(manifest, "transactionTime").size() >= 20);
  CHECK(manifest["error"].GetArray().Size() == 0);
  auto files = d.files("pa", manifest);
  CHECK(ids(files["Patient"]) == std::set<std::string>{"pa"});
  // The INVISIBLE_PATIENT result stays hidden from the patient; other records never appear.
  CHECK(ids(files["Observation"]) == std::set<std::string>{"obs-pa-1"});
  CHECK(files.count("Practitioner") == 0);
  // Documents come with their content (Binary, outside the compartment), hidden ones with neither.
  CHECK(ids(files["DocumentReference"]) == std::set<std::string>{"doc-pa-1"});
  CHECK(ids(files["Binary"]) == std::set<std::string>{"bin-pa-1"});

  // The GP sees what the patient may not.
  auto gp = d.files("dr-gp", d.run("dr-gp", "/Patient/pa/$export"));
  CHECK(ids(gp["Observation"]) == std::set<std::string>{"obs-pa-1", "obs-pa-hidden"});
  CHECK(ids(gp["DocumentReference"]) == std::set<std::string>{"doc-pa-1", "doc-pa-hidden"});
  CHECK(ids(gp["Binary"]) == std::set<std::string>{"bin-pa-1", "bin-pa-hidden"});
  // _type leaves document contents out unless Binary is asked for.
  auto docs_only = d.files("pa", d.run("pa", "/Patient/pa/$export?_type=DocumentReference"));
  CHECK(docs_only.count("Binary") == 0);
  CHECK(ids(d.files("pa", d.run("pa", "/Patient/pa/$export?_type=DocumentReference,Binary"))["Binary"]) ==
        std::set<std::string>{"bin-pa-1"});
}

TEST_CASE("a legal representative exports the record of the minor they represent", "[export][integration]") {
  Deployment d;
  auto files = d.files("parent", d.run("parent", "/Patient/pm/$export"));
  CHECK(ids(files["Patient"]) == std::set<std::string>{"pm"});
  CHECK(ids(files["Observation"]) == std::set<std::string>{"obs-pm-1"});
  CHECK(d.kick_off("parent", "/Patient/pa/$export").status == 403);
  CHECK(d.kick_off("parent", "/Patient/$export").status == 403);
}

TEST_CASE("$export parameters: _type, _since, _outputFormat and the async requirement", "[export][integration]") {
  Deployment d;
  auto only_obs = d.files("pa", d.run("pa", "/Patient/pa/$export?_type=Observation"));
  CHECK(only_obs.count("Patient") == 0);
  CHECK(ids(only_obs["Observation"]) == std::set<std::string>{"obs-pa-1"});

  rapidjson::Document future = d.run("pa", "/Patient/pa/$export?_since=2100-01-01T00:00:00Z");
  CHECK(future["output"].GetArray().Size() == 0);
  rapidjson::Document past = d.run("pa", "/Patient/pa/$export?_since=2000-01-01T00:00:00Z&_outputFormat=application/fhir%2Bndjson");
  CHECK(past["output"].GetArray().Size() == 4);  // Patient, Observation, DocumentReference, Binary

  CHECK(d.kick_off("pa", "/Patient/pa/$export?_outputFormat=text/csv").status == 400);
  CHECK(d.kick_off("pa", "/Patient/pa/$export?_type=NoSuchType").status == 400);
  CHECK(d.kick_off("pa", "/Patient/pa/$export?_since=yesterday").status == 400);
  CHECK(d.kick_off("pa", "/Patient/pa/$export?_typeFilter=Observation%3Fstatus%3Dfinal").status == 400);
  HttpResponse sync = d.as("pa", "GET", "/Patient/pa/$export", {{"Accept", "application/fhir+json"}});
  CHECK(sync.status == 400);
  CHECK(sync.body.find("respond-async") != std::string::npos);
}

TEST_CASE("$export follows the access rules and only the requester sees the job", "[export][integration]") {
  Deployment d;
  CHECK(d.kick_off("pa", "/Patient/pb/$export").status == 403);
  CHECK(d.kick_off("pa", "/Patient/$export").status == 403);
  CHECK(d.kick_off("pa", "/$export").status == 403);
  CHECK(d.kick_off("dr-stranger", "/Patient/pa/$export").status == 403);
  CHECK(d.kick_off("dr-gp", "/Patient/$export").status == 403);
  CHECK(d.kick_off("admin", "/$export").status == 403);
  CHECK(d.kick_off("admin", "/Patient/pa/$export").status == 403);

  std::string status_url;
  rapidjson::Document manifest = d.run("pa", "/Patient/pa/$export", &status_url);
  REQUIRE(manifest["output"].GetArray().Size() > 0);
  std::string file_url = str(manifest["output"][0], "url");
  // Another caller, even one who may read the record, is told the job does not exist.
  CHECK(d.as("dr-gp", "GET", target_of(status_url)).status == 404);
  CHECK(d.as("pb", "GET", target_of(file_url)).status == 404);
  CHECK(d.as("dr-gp", "DELETE", target_of(status_url)).status == 404);
  CHECK(d.as("pa", "GET", target_of(status_url)).status == 200);
  // Names outside the manifest are not files of the job.
  std::string job = status_url.substr(status_url.find("_jobId=") + 7);
  CHECK(d.as("pa", "GET", "/$export-file?_jobId=" + job + "&_file=..%2Fexport.db").status == 404);
  CHECK(d.as("pa", "GET", "/$export-poll-status?_jobId=not-a-job").status == 404);
  CHECK(d.as("pa", "PUT", target_of(status_url)).status == 405);
  CHECK(d.as("pa", "GET", "/$export-poll-status").status == 400);
}

TEST_CASE("systems export the patients they may reach; data of no patient at system level", "[export][integration]") {
  Deployment d;
  // The hospital has a grant on pb only: pa (GP is a person) and pc are skipped.
  auto group = d.files("hosp", d.run("hosp", "/Patient/$export"));
  CHECK(ids(group["Patient"]) == std::set<std::string>{"pb"});
  CHECK(ids(group["Observation"]) == std::set<std::string>{"obs-pb-1"});
  CHECK(group.count("Practitioner") == 0);

  auto all = d.files("hosp", d.run("hosp", "/$export?_type=Patient,Practitioner,Organization"));
  CHECK(ids(all["Patient"]) == std::set<std::string>{"pb"});
  CHECK(ids(all["Practitioner"]) == std::set<std::string>{"dr-gp"});
  CHECK(ids(all["Organization"]) == std::set<std::string>{"hosp"});
  CHECK(all.count("Observation") == 0);
  CHECK(d.kick_off("hosp", "/Patient/pa/$export").status == 403);
}

TEST_CASE("DELETE of the status URL cancels the job and removes its files", "[export][integration]") {
  Deployment d;
  const std::string export_dir = d.dir() + "/export";
  std::string status_url;
  rapidjson::Document manifest = d.run("pa", "/Patient/pa/$export", &status_url);
  CHECK(job_dirs(export_dir) == 1);
  std::string file_url = str(manifest["output"][0], "url");
  HttpResponse deleted = d.as("pa", "DELETE", target_of(status_url));
  CHECK(deleted.status == 202);
  CHECK(job_dirs(export_dir) == 0);
  CHECK(d.as("pa", "GET", target_of(status_url)).status == 404);
  CHECK(d.as("pa", "GET", target_of(file_url)).status == 404);
}

TEST_CASE("kick-offs and downloads are in the patient's access history", "[export][integration]") {
  Deployment d;
  rapidjson::Document manifest = d.run("pa", "/Patient/pa/$export?_type=Observation");
  d.files("pa", manifest);
  HttpResponse events = d.as("pa", "GET", "/AuditEvent?patient=pa&_count=100", {{"Accept", "application/fhir+json"}});
  REQUIRE(events.status == 200);
  rapidjson::Document bundle = json_of(events);
  bool kick_off = false, download = false;
  for (const auto& e : bundle["entry"].GetArray()) {
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    e["resource"].Accept(w);
    std::string json = buf.GetString();
    if (json.find("$export-file") != std::string::npos) download = true;
    else if (json.find("$export") != std::string::npos) kick_off = true;
  }
  CHECK(kick_off);
  CHECK(download);
}

TEST_CASE("finished exports expire with their files", "[export][integration]") {
  Deployment d({"--export-expiry", "1"});
  std::string status_url;
  d.run("pa", "/Patient/pa/$export", &status_url);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  CHECK(d.as("pa", "GET", target_of(status_url)).status == 404);
  CHECK(job_dirs(d.dir() + "/export") == 0);
}
