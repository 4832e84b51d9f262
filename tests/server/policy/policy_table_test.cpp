// The DMP policy table: test-data/policy/cases.json (written by
// tools/generate-policy-cases.py from its own reading of the rules) run
// in-process through the real FhirApi, a real SQLite store loaded with
// test-data/policy/spaces.json, real ES256 tokens checked against a JWKS, and
// the real rules and guard. Each case names the caller, the request, the
// status expected, the rule a 403 names, and for searches the exact ids.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
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

std::string member_string(const rapidjson::Value& v, const char* name) {
  if (!v.IsObject()) return "";
  auto it = v.FindMember(name);
  return it != v.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/espace-policy-table-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// "Observation/obs-1" of each matched entry of a searchset, sorted.
std::vector<std::string> matched_ids(const std::string& bundle) {
  std::vector<std::string> ids;
  rapidjson::Document doc;
  doc.Parse(bundle.data(), bundle.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("entry") || !doc["entry"].IsArray()) return ids;
  for (const auto& e : doc["entry"].GetArray()) {
    auto search = e.FindMember("search");
    if (search != e.MemberEnd() && member_string(search->value, "mode") != "match") continue;
    auto resource = e.FindMember("resource");
    if (resource == e.MemberEnd()) continue;
    ids.push_back(member_string(resource->value, "resourceType") + "/" + member_string(resource->value, "id"));
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return "[" + out + "]";
}

}  // namespace

TEST_CASE("policy table: every case answers as the rules say", "[policy][table]") {
  const fhir::Definitions& defs = test_definitions();
  interactions::prepare_search(defs);
  const std::string root = ESPACE_SOURCE_DIR;

  rapidjson::Document table;
  std::string table_text = read_text(root + "/test-data/policy/cases.json");
  table.Parse(table_text.data(), table_text.size());
  REQUIRE_FALSE(table.HasParseError());
  rapidjson::Document spaces;
  std::string spaces_text = read_text(root + "/test-data/policy/spaces.json");
  spaces.Parse(spaces_text.data(), spaces_text.size());
  REQUIRE_FALSE(spaces.HasParseError());

  TempDir tmp;
  REQUIRE(policy::make_dev_keys(tmp.path).is_ok());
  storage::SqliteOptions sopts;
  sopts.path = tmp.path + "/table.db";
  sopts.synchronous_full = false;
  std::unique_ptr<storage::Storage> store;
  REQUIRE(storage::open_sqlite(sopts, &store).is_ok());
  interactions::Services services;
  services.defs = &defs;
  services.store = store.get();

  // The patient spaces, stored as they are (ids kept) without any policy.
  size_t loaded = 0;
  for (const auto& r : spaces["resources"].GetArray()) {
    interactions::FhirRequest put;
    put.interaction = interactions::Interaction::Update;
    put.type = member_string(r, "resourceType");
    put.id = member_string(r, "id");
    put.base_url = "http://espace.test";
    fhir::Node node;
    fhir::Status parsed = fhir::parse_json(defs, to_json(r), &node);
    INFO(put.type << "/" << put.id << ": " << parsed.message());
    REQUIRE(parsed.is_ok());
    put.resource = std::move(node);
    interactions::FhirResponse out = interactions::dispatch(services, put);
    INFO(out.error.message());
    REQUIRE(out.status == 201);
    ++loaded;
  }
  REQUIRE(loaded > 50);

  policy::RulesConfig config;
  REQUIRE(policy::RulesConfig::load(&config).is_ok());
  int64_t now_first = 0, now_last = 0;
  REQUIRE(policy::fhir_date_range(member_string(table, "now"), &now_first, &now_last));
  policy::DmpPolicyConfig pconf;
  pconf.auth.jwks_file = tmp.path + "/jwks.json";
  pconf.auth.issuers = {policy::MintOptions().issuer};
  pconf.auth.audience = policy::MintOptions().audience;
  pconf.clock_us = [now_first] { return now_first; };
  std::unique_ptr<policy::Policy> dmp;
  fhir::Status made = policy::make_dmp_policy(pconf, config, defs, &dmp);
  INFO(made.message());
  REQUIRE(made.is_ok());

  http::WorkerPool pool(1, 4);
  http::ApiOptions api_opts;
  api_opts.base_url = "http://espace.test";
  http::FhirApi api(services, *dmp, pool, api_opts);

  // One token per caller, minted with the development key.
  std::map<std::string, std::string> tokens;
  for (auto it = table["callers"].MemberBegin(); it != table["callers"].MemberEnd(); ++it) {
    const rapidjson::Value& c = it->value;
    policy::MintOptions m;
    m.key_file = tmp.path + "/dev-signing-key.pem";
    m.subject = member_string(c, "subject");
    m.role = member_string(c, "role");
    m.fhir_user = member_string(c, "fhir_user");
    m.patient = member_string(c, "patient");
    m.national_id = member_string(c, "national_id");
    m.profession = member_string(c, "profession");
    m.organization = member_string(c, "organization");
    m.purpose = member_string(c, "purpose");
    m.scope = member_string(c, "scope");
    if (c.HasMember("represents"))
      for (const auto& p : c["represents"].GetArray()) m.represents.emplace_back(p.GetString());
    std::string jwt;
    fhir::Status minted = policy::mint_token(m, &jwt);
    INFO(it->name.GetString() << ": " << minted.message());
    REQUIRE(minted.is_ok());
    tokens[it->name.GetString()] = jwt;
  }

  const auto& cases = table["cases"].GetArray();
  REQUIRE(cases.Size() >= 300);
  std::vector<std::string> failures;
  size_t run = 0;
  for (const auto& c : cases) {
    std::string name = member_string(c, "name");
    http::Request req;
    req.method = member_string(c, "method");
    req.target = member_string(c, "path");
    REQUIRE(http::parse_target(req.target, &req.path, &req.query));
    req.headers.add("Host", "espace.test");
    req.headers.add("Accept", "application/fhir+json");
    req.headers.add("Authorization", "Bearer " + tokens.at(member_string(c, "caller")));
    if (c.HasMember("body")) {
      req.body = to_json(c["body"]);
      req.headers.add("Content-Type", "application/fhir+json");
    }
    req.remote_address = "127.0.0.1";
    http::Response res = api.handle_now(req);
    ++run;

    int expected = c["status"].GetInt();
    std::string problem;
    if (res.status != expected) {
      problem = "status " + std::to_string(res.status) + ", expected " + std::to_string(expected);
    } else if (c.HasMember("rule")) {
      std::string wanted = std::string("(rule ") + c["rule"].GetString() + ")";
      if (res.body.find(wanted) == std::string::npos) problem = "the refusal does not name " + wanted;
    } else if (c.HasMember("ids")) {
      std::vector<std::string> want;
      for (const auto& id : c["ids"].GetArray()) want.emplace_back(id.GetString());
      std::vector<std::string> got = matched_ids(res.body);
      if (got != want) problem = "ids " + join(got) + ", expected " + join(want);
    }
    if (!problem.empty())
      failures.push_back(name + " (" + req.method + " " + req.target + "): " + problem + " | " +
                         res.body.substr(0, 300));
  }
  std::string report;
  for (size_t i = 0; i < failures.size() && i < 60; ++i) report += failures[i] + "\n";
  INFO(failures.size() << " of " << run << " cases failed:\n" << report);
  CHECK(failures.empty());
  CHECK(run == cases.Size());
}
