// In-process setup for the guard tests: a real SQLite store in /tmp, the
// FHIR API over it twice — once under the open policy (to seed data and to
// check what is really stored) and once under a test Policy whose rules are
// simple fakes run through make_guard:
//   - a version is hidden when its meta.security holds the code HIDE;
//   - searches of Observation are narrowed to the compartment of one patient
//     (subject = Patient/<patient>), and _has on Patient is refused;
//   - a write over a hidden version, and update-as-create, are refused with
//     the same 403.
#pragma once

#include <rapidjson/document.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "espace/http/fhir_api.h"
#include "espace/http/worker_pool.h"
#include "espace/interactions/api.h"
#include "espace/policy/guard.h"
#include "espace/policy/policy.h"
#include "espace/storage/storage.h"
#include "model_fixture.h"

namespace guard_test {

using espace::fhir::ErrorCategory;
using espace::fhir::Status;
namespace policy = espace::policy;
namespace storage = espace::storage;
namespace http = espace::http;

inline bool has_security_code(const std::string& json, const char* code) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsObject()) return false;
  auto meta = doc.FindMember("meta");
  if (meta == doc.MemberEnd() || !meta->value.IsObject()) return false;
  auto security = meta->value.FindMember("security");
  if (security == meta->value.MemberEnd() || !security->value.IsArray()) return false;
  for (const auto& coding : security->value.GetArray()) {
    if (!coding.IsObject()) continue;
    auto c = coding.FindMember("code");
    if (c != coding.MemberEnd() && c->value.IsString() && std::string(c->value.GetString()) == code) return true;
  }
  return false;
}

struct FakeRules final : policy::ResourceRules {
  std::string patient;  // Observation searches are narrowed to this patient
  explicit FakeRules(std::string p) : patient(std::move(p)) {}

  policy::Verdict may_see(const storage::ResourceVersion& v, policy::AccessRecord* record) override {
    policy::Verdict verdict;
    verdict.visible = !has_security_code(v.json, "HIDE");
    verdict.rule = verdict.visible ? "FAKE_VISIBLE" : "FAKE_HIDDEN";
    if (verdict.visible) record->rules.push_back(verdict.rule);
    return verdict;
  }
  Status may_write(const storage::ResourceVersion* before, const storage::ResourceVersion& after,
                   policy::AccessRecord*) override {
    bool before_hidden = before && !may_see_quiet(*before);
    bool as_create = !before || before_hidden;
    if (before_hidden || (as_create && after.method != "POST"))
      return Status::error(ErrorCategory::Forbidden, "forbidden", "access denied (rule FAKE_NO_PUT_CREATE)");
    return Status::ok();
  }
  Status restrict_search(storage::SearchQuery* q) override {
    for (const auto& c : q->all_of)
      if (c.kind == storage::Condition::Kind::Has && q->type == "Patient")
        return Status::error(ErrorCategory::Forbidden, "forbidden", "access denied (rule FAKE_NO_HAS)");
    if (q->type == "Observation") {
      storage::Condition c;
      storage::IndexTest t;
      t.param = "subject";
      t.kind = "reference";
      t.system = "Patient";
      t.value_op = storage::TextOp::Equal;
      t.value = patient;
      c.any_of.push_back(t);
      q->all_of.push_back(std::move(c));
    }
    return Status::ok();
  }

 private:
  static bool may_see_quiet(const storage::ResourceVersion& v) { return !has_security_code(v.json, "HIDE"); }
};

struct FakePolicy final : policy::Policy {
  std::string patient = "pat-a";
  Status authenticate(const policy::Credentials&, policy::Caller* out) const override {
    *out = policy::Caller();
    out->authenticated = true;
    out->role = policy::Role::Professional;
    return Status::ok();
  }
  Status begin(const policy::Caller&, const espace::interactions::FhirRequest&,
               const espace::interactions::Services& base, std::unique_ptr<policy::RequestGuard>* out) const override {
    *out = policy::make_guard(base, std::make_unique<FakeRules>(patient));
    return Status::ok();
  }
  const char* name() const override { return "fake"; }
};

struct Reply {
  int status = 0;
  std::string body;
  std::string everything;  // headers and body: where no trace may appear
  rapidjson::Document json;
};

class Env {
 public:
  Env() {
    static std::atomic<int> counter{0};
    path_ = "/tmp/espace-guard-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + ".db";
    remove_files();
    storage::SqliteOptions opts;
    opts.path = path_;
    opts.reader_connections = 2;
    opts.synchronous_full = false;
    Status s = storage::open_sqlite(opts, &store_);
    INFO(s.message());
    REQUIRE(s.is_ok());
    services_.defs = &test_definitions();
    services_.store = store_.get();
    espace::interactions::prepare_search(test_definitions());
    http::ApiOptions options;
    options.base_url = "http://test";
    open_policy_ = policy::make_open_policy();
    open_api_ = std::make_unique<http::FhirApi>(services_, *open_policy_, pool_, options);
    api_ = std::make_unique<http::FhirApi>(services_, fake_, pool_, options);
  }
  ~Env() {
    api_.reset();
    open_api_.reset();
    store_.reset();
    remove_files();
  }

  // As the guarded caller.
  Reply call(const std::string& method, const std::string& target, const std::string& body = "",
             const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    return run(*api_, method, target, body, headers);
  }
  // Under the open policy (seeding and checking the store).
  Reply open(const std::string& method, const std::string& target, const std::string& body = "",
             const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    return run(*open_api_, method, target, body, headers);
  }
  // PUT under the open policy, which must succeed.
  void put(const std::string& type, const std::string& id, const std::string& body) {
    Reply r = open("PUT", "/" + type + "/" + id, body);
    INFO(r.body);
    REQUIRE((r.status == 200 || r.status == 201));
  }

  FakePolicy& policy() { return fake_; }
  void set_audit_trail(policy::AuditTrail* audit) { api_->set_audit_trail(audit); }

 private:
  Reply run(http::FhirApi& api, const std::string& method, const std::string& target, const std::string& body,
            const std::vector<std::pair<std::string, std::string>>& headers) {
    http::Request req;
    req.method = method;
    req.target = target;
    REQUIRE(http::parse_target(target, &req.path, &req.query));
    req.headers.add("Host", "test");
    req.headers.add("Accept", "application/fhir+json");
    if (!body.empty())
      req.headers.add("Content-Type", method == "PATCH" ? "application/json-patch+json" : "application/fhir+json");
    for (const auto& [k, v] : headers) req.headers.set(k, v);
    req.body = body;
    http::Response resp = api.handle_now(req);
    Reply r;
    r.status = resp.status;
    r.body = resp.body;
    for (const auto& [k, v] : resp.headers.items()) r.everything += k + ": " + v + "\n";
    r.everything += resp.body;
    if (!r.body.empty()) r.json.Parse(r.body.data(), r.body.size());
    return r;
  }
  void remove_files() const {
    std::remove(path_.c_str());
    std::remove((path_ + "-wal").c_str());
    std::remove((path_ + "-shm").c_str());
    std::remove((path_ + "-audit").c_str());
  }

  std::string path_;
  std::unique_ptr<storage::Storage> store_;
  espace::interactions::Services services_;
  http::WorkerPool pool_{1, 64};
  std::unique_ptr<policy::Policy> open_policy_;
  FakePolicy fake_;
  std::unique_ptr<http::FhirApi> open_api_, api_;
};

// "Type/id" of every entry of a Bundle, by search mode when given.
inline std::vector<std::string> entry_refs(const rapidjson::Document& bundle, const char* mode = nullptr) {
  std::vector<std::string> out;
  if (!bundle.IsObject() || !bundle.HasMember("entry")) return out;
  for (const auto& e : bundle["entry"].GetArray()) {
    if (mode) {
      if (!e.HasMember("search") || std::string(e["search"]["mode"].GetString()) != mode) continue;
    }
    if (!e.HasMember("resource")) {
      std::string url = e["fullUrl"].GetString();
      out.push_back(url.substr(std::string("http://test/").size()));
      continue;
    }
    const auto& r = e["resource"];
    out.push_back(std::string(r["resourceType"].GetString()) + "/" + r["id"].GetString());
  }
  return out;
}

inline std::string link_target(const rapidjson::Document& bundle, const char* relation) {
  if (!bundle.IsObject() || !bundle.HasMember("link")) return {};
  for (const auto& l : bundle["link"].GetArray())
    if (std::string(l["relation"].GetString()) == relation) {
      std::string url = l["url"].GetString();
      return url.substr(std::string("http://test").size());
    }
  return {};
}

inline int64_t bundle_total(const rapidjson::Document& bundle) {
  return bundle.IsObject() && bundle.HasMember("total") ? bundle["total"].GetInt64() : -1;
}

}  // namespace guard_test
