// Patient/[id]/$everything (hl7.org/fhir/R4/patient-operation-everything.html)
// through the real binary under the DMP policy: pages of _count entries linked
// by next links until the record is complete, each resource once; the rules
// filter exactly as for a search (a hidden result stays hidden from the
// patient, the GP sees it, strangers and other patients are refused);
// _type, _since, includes of referenced practitioners, refused parameters.
#include <rapidjson/document.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
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

const char* const kJson = "application/fhir+json";
constexpr int kObservations = 7;

std::string observation(const std::string& id, const std::string& patient, const std::string& extra = "") {
  return R"({"resourceType":"Observation","id":")" + id + R"(",)" + extra +
         R"("status":"final","code":{"text":"mesure"},"subject":{"reference":"Patient/)" + patient + R"("}})";
}

std::string target_of(const std::string& url) {
  size_t scheme = url.find("://");
  size_t slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  return slash == std::string::npos ? "/" : url.substr(slash);
}

std::string link(const rapidjson::Value& bundle, const char* relation) {
  if (!bundle.HasMember("link")) return "";
  for (const auto& l : bundle["link"].GetArray())
    if (str(l, "relation") == relation) return str(l, "url");
  return "";
}

struct Walk {
  std::vector<std::string> matches;  // "Type/id" in page order
  std::set<std::string> includes;
  int pages = 0;
};

class Deployment {
 public:
  Deployment() {
    char tmpl[] = "/tmp/espace-everything-it-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    init_dev_keys(dir_ + "/keys");
    {
      ServerProcess open({}, dir_ + "/everything.db");
      HttpClient c("127.0.0.1", open.port());
      std::vector<std::pair<std::string, std::string>> resources = {
          {"Practitioner/dr-gp",
           R"({"resourceType":"Practitioner","id":"dr-gp","identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810000000001"}],"name":[{"family":"Generaliste"}]})"},
          {"Patient/pa",
           R"({"resourceType":"Patient","id":"pa","name":[{"family":"Alpha"}],"birthDate":"1970-01-01","generalPractitioner":[{"reference":"Practitioner/dr-gp"}]})"},
          {"Patient/pb", R"({"resourceType":"Patient","id":"pb","name":[{"family":"Beta"}],"birthDate":"1971-01-01"})"},
          {"Observation/obs-pb", observation("obs-pb", "pb")},
          {"Observation/obs-pa-hidden",
           observation("obs-pa-hidden", "pa",
                       R"("meta":{"security":[{"system":"urn:oid:1.2.250.1.213.1.1.4.13","code":"INVISIBLE_PATIENT"}]},)")},
          {"Observation/obs-pa-performed",
           observation("obs-pa-performed", "pa", R"("performer":[{"reference":"Practitioner/dr-gp"}],)")},
      };
      for (int i = 0; i < kObservations - 1; ++i) {
        std::string id = "obs-pa-" + std::to_string(i);
        resources.emplace_back("Observation/" + id, observation(id, "pa"));
      }
      for (const auto& [path, json] : resources) {
        HttpResponse put = c.request("PUT", "/" + path, json, {{"Content-Type", kJson}});
        INFO(path << ": " << put.body);
        REQUIRE(put.status == 201);
      }
    }
    server_ = std::make_unique<ServerProcess>(
        std::vector<std::string>{"--auth", "jwt", "--jwks", dir_ + "/keys/jwks.json", "--issuer", kTestIssuer,
                                 "--audience", kTestAudience},
        dir_ + "/everything.db");
    client_ = std::make_unique<HttpClient>("127.0.0.1", server_->port());
    mint("pa", {"--role", "patient", "--patient", "pa", "--fhir-user", "Patient/pa", "--sub", "account-pa"});
    mint("pb", {"--role", "patient", "--patient", "pb", "--fhir-user", "Patient/pb", "--sub", "account-pb"});
    mint("dr-gp", {"--role", "professional", "--fhir-user", "Practitioner/dr-gp", "--rpps", "810000000001",
                   "--profession", "10", "--sub", "account-dr-gp"});
    mint("dr-stranger", {"--role", "professional", "--rpps", "810000000004", "--profession", "10", "--sub", "account-x"});
    mint("admin", {"--role", "administrator", "--sub", "account-admin"});
  }
  ~Deployment() {
    client_.reset();
    server_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  HttpResponse get(const std::string& caller, const std::string& target) {
    return client_->request("GET", target, "", {{"Authorization", "Bearer " + tokens_.at(caller)}, {"Accept", kJson}});
  }
  // Follows next links from `target` to the end.
  Walk walk(const std::string& caller, std::string target) {
    Walk w;
    while (!target.empty()) {
      REQUIRE(w.pages < 50);
      HttpResponse r = get(caller, target);
      INFO(target << ": " << r.body.substr(0, 500));
      REQUIRE(r.status == 200);
      rapidjson::Document b = json_of(r);
      CHECK(str(b, "type") == "searchset");
      ++w.pages;
      if (b.HasMember("entry"))
        for (const auto& e : b["entry"].GetArray()) {
          std::string ref = str(e["resource"], "resourceType") + "/" + str(e["resource"], "id");
          if (str(e["search"], "mode") == "include")
            w.includes.insert(ref);
          else
            w.matches.push_back(ref);
        }
      std::string next = link(b, "next");
      target = next.empty() ? "" : target_of(next);
    }
    return w;
  }

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

std::set<std::string> as_set(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

}  // namespace

TEST_CASE("$everything pages with _count and next links, each resource once", "[everything][integration]") {
  Deployment d;
  Walk gp = d.walk("dr-gp", "/Patient/pa/$everything?_count=3");
  // The Patient, the seven visible-to-the-GP Observations and the hidden one: 9 matches over 3 pages or more.
  std::set<std::string> expected = {"Patient/pa", "Observation/obs-pa-hidden", "Observation/obs-pa-performed"};
  for (int i = 0; i < kObservations - 1; ++i) expected.insert("Observation/obs-pa-" + std::to_string(i));
  CHECK(as_set(gp.matches) == expected);
  CHECK(gp.matches.size() == expected.size());  // no duplicates across pages
  CHECK(gp.pages >= 3);
  CHECK(gp.matches.front() == "Patient/pa");
  CHECK(gp.includes.count("Practitioner/dr-gp") == 1);
  // Nothing of another patient.
  for (const std::string& m : gp.matches) CHECK(m != "Observation/obs-pb");

  // One page when everything fits: no next link.
  HttpResponse whole = d.get("dr-gp", "/Patient/pa/$everything?_count=100");
  REQUIRE(whole.status == 200);
  CHECK(link(json_of(whole), "next").empty());
  CHECK(d.walk("dr-gp", "/Patient/pa/$everything?_count=100").matches.size() == expected.size());
}

TEST_CASE("$everything is filtered and refused by the access rules", "[everything][integration]") {
  Deployment d;
  Walk own = d.walk("pa", "/Patient/pa/$everything?_count=2");
  CHECK(std::count(own.matches.begin(), own.matches.end(), "Observation/obs-pa-hidden") == 0);
  // The Patient and every Observation but the hidden one.
  CHECK(own.matches.size() == static_cast<size_t>(1 + kObservations));
  CHECK(std::count(own.matches.begin(), own.matches.end(), "Patient/pa") == 1);

  CHECK(d.get("pa", "/Patient/pb/$everything").status == 403);
  CHECK(d.get("pb", "/Patient/pa/$everything").status == 403);
  CHECK(d.get("dr-stranger", "/Patient/pa/$everything").status == 403);
  CHECK(d.get("admin", "/Patient/pa/$everything").status == 403);
  // A patient never written answers like a refused one for a stranger: no oracle.
  CHECK(d.get("dr-stranger", "/Patient/nobody/$everything").status == 403);
}

TEST_CASE("$everything parameters: _type, _since, refused start/end and unknown ones", "[everything][integration]") {
  Deployment d;
  Walk obs = d.walk("dr-gp", "/Patient/pa/$everything?_type=Observation&_count=50");
  CHECK(std::count(obs.matches.begin(), obs.matches.end(), "Patient/pa") == 0);
  CHECK(obs.matches.size() == static_cast<size_t>(kObservations + 1));
  CHECK(obs.includes.empty());  // Practitioner not asked for
  Walk later = d.walk("dr-gp", "/Patient/pa/$everything?_since=2100-01-01T00:00:00Z");
  CHECK(later.matches.empty());
  CHECK(d.get("dr-gp", "/Patient/pa/$everything?start=2020-01-01").status == 400);
  CHECK(d.get("dr-gp", "/Patient/pa/$everything?_since=soon").status == 400);
  CHECK(d.get("dr-gp", "/Patient/pa/$everything?_type=Nothing").status == 400);
  CHECK(d.get("dr-gp", "/Patient/pa/$everything?color=blue").status == 400);
}
