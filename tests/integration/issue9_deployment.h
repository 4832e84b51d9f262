// A DMP-policy deployment for the issue-9 integration tests (connected
// devices, messages, appointments): resources stored as they are by an open
// server, then `espace serve --auth jwt` on the same database, with tokens
// minted by `espace token mint` for the callers each test declares.
#pragma once

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dev_tokens.h"
#include "http_client.h"
#include "json_checks.h"
#include "server_process.h"

using espace::testing::kTestIssuer;
using espace::testing::kTestAudience;
using espace::testing::mint_dev_token;
using espace::testing::init_dev_keys;

namespace espace::testing {

struct TokenSpec {
  std::string role, subject;
  std::vector<std::pair<std::string, std::string>> claims;  // mint flags without "--": {"client-id", "app"}
};

class Issue9Deployment {
 public:

  // `seed`: FHIR JSON resources with ids, PUT by an open server in order.
  Issue9Deployment(const std::vector<std::string>& seed, const std::map<std::string, TokenSpec>& callers) {
    char tmpl[] = "/tmp/espace-issue9-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    init_dev_keys(dir_ + "/keys");
    store(seed);
    for (const auto& [name, spec] : callers) {
      std::vector<std::string> claims = {"--role", spec.role, "--sub", spec.subject};
      for (const auto& [flag, value] : spec.claims) {
        claims.push_back("--" + flag);
        claims.push_back(value);
      }
      INFO(name);
      tokens_[name] = mint_dev_token(dir_ + "/keys", claims);
    }
    start();
  }
  ~Issue9Deployment() {
    client_.reset();
    server_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Stores more resources (the policy server is stopped meanwhile).
  void store(const std::vector<std::string>& resources) {
    bool was_running = server_ != nullptr;
    stop();
    {
      ServerProcess open({"--purge-interval", "0"}, db());
      HttpClient c("127.0.0.1", open.port());
      for (const std::string& r : resources) {
        rapidjson::Document d;
        d.Parse(r.c_str());
        REQUIRE_FALSE(d.HasParseError());
        HttpResponse put = c.request("PUT", "/" + str(d, "resourceType") + "/" + str(d, "id"), r,
                                     {{"Content-Type", "application/fhir+json"}});
        INFO(str(d, "resourceType") << "/" << str(d, "id") << ": " << put.body);
        REQUIRE((put.status == 201 || put.status == 200));
      }
    }
    if (was_running) start();
  }

  // `espace import` of files or directories (the policy server is stopped meanwhile).
  void import(const std::string& path) {
    bool was_running = server_ != nullptr;
    stop();
    std::string out, err;
    int rc = run_espace({"import", "--db", db(), path}, &out, &err);
    INFO(out << err);
    REQUIRE(rc == 0);
    if (was_running) start();
  }

  void stop() {
    client_.reset();
    server_.reset();
  }
  void start(std::vector<std::string> extra = {"--purge-interval", "0"}) {
    stop();
    std::vector<std::string> args = {"--auth", "jwt", "--jwks", dir_ + "/keys/jwks.json", "--issuer", kTestIssuer,
                                     "--audience", kTestAudience};
    args.insert(args.end(), extra.begin(), extra.end());
    server_ = std::make_unique<ServerProcess>(args, db());
    client_ = std::make_unique<HttpClient>("127.0.0.1", server_->port());
  }

  HttpResponse as(const std::string& caller, const std::string& method, const std::string& target,
                  const std::string& body = "") {
    std::vector<std::pair<std::string, std::string>> headers = {{"Authorization", "Bearer " + tokens_.at(caller)},
                                                                {"Accept", "application/fhir+json"}};
    if (!body.empty()) headers.emplace_back("Content-Type", "application/fhir+json");
    return client_->request(method, target, body, headers);
  }

  std::string db() const { return dir_ + "/issue9.db"; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<HttpClient> client_;
  std::map<std::string, std::string> tokens_;
};

// The diagnostics of an OperationOutcome answer name the rule: "(rule NAME)".
inline bool names_rule(const HttpResponse& r, const std::string& rule) {
  return r.body.find("(rule " + rule + ")") != std::string::npos;
}

// Total of a searchset Bundle (entries counted when total is absent).
inline size_t entry_count(const HttpResponse& r) {
  rapidjson::Document d = json_of(r);
  auto it = d.FindMember("entry");
  return it != d.MemberEnd() && it->value.IsArray() ? it->value.Size() : 0;
}

}  // namespace espace::testing
