// Shared by the tests of the DMP rules without HTTP (rules_test.cpp and the
// tests of the rules added for prescriptions and connected apps): the data
// files, dates, the rule a refusal names, and a store in a temporary folder
// loaded through the interactions layer.
#pragma once

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <string>

#include "espace/fhir/json.h"
#include "espace/interactions/api.h"
#include "espace/policy/rules.h"
#include "espace/storage/sqlite_storage.h"
#include "espace/storage/storage.h"
#include "model_fixture.h"

namespace espace::policy_test {

// The first microsecond of a FHIR date/dateTime.
inline int64_t at(const char* date) {
  int64_t first = 0, last = 0;
  REQUIRE(policy::fhir_date_range(date, &first, &last));
  return first;
}

// server/policy/data/*.json, loaded once.
inline const policy::RulesConfig& config() {
  static policy::RulesConfig c = [] {
    policy::RulesConfig out;
    fhir::Status s = policy::RulesConfig::load(&out);
    INFO(s.message());
    REQUIRE(s.is_ok());
    return out;
  }();
  return c;
}

// The rule a refusal names (its message id), "" for success.
inline std::string rule_of(const fhir::Status& s) {
  return s.issues().empty() ? "" : s.issues().front().message_id;
}

// A SQLite store in a temporary folder (removed at the end), loaded with
// resources given as JSON through the open interactions layer (PUT).
struct RulesSpace {
  std::string dir;
  std::unique_ptr<storage::Storage> store;
  interactions::Services services;

  RulesSpace() {
    char tmpl[] = "/tmp/espace-rules-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
    storage::SqliteOptions o;
    o.path = dir + "/rules.db";
    o.synchronous_full = false;
    REQUIRE(storage::open_sqlite(o, &store).is_ok());
    services.defs = &test_definitions();
    services.store = store.get();
  }
  ~RulesSpace() {
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  RulesSpace(const RulesSpace&) = delete;
  RulesSpace& operator=(const RulesSpace&) = delete;

  void put(const std::string& json) {
    interactions::FhirRequest req;
    req.interaction = interactions::Interaction::Update;
    fhir::Node node;
    fhir::Status s = fhir::parse_json(test_definitions(), json, &node);
    INFO(s.message());
    REQUIRE(s.is_ok());
    req.type = std::string(fhir::resource_type(node));
    req.id = std::string(fhir::resource_id(node));
    req.base_url = "http://t";
    req.resource = std::move(node);
    interactions::FhirResponse r = interactions::dispatch(services, req);
    INFO(r.error.message());
    REQUIRE((r.status == 201 || r.status == 200));
  }
  storage::ResourceVersion get(const std::string& type, const std::string& id) {
    storage::ResourceVersion v;
    REQUIRE(store->read(type, id, &v).is_ok());
    return v;
  }
};

}  // namespace espace::policy_test
