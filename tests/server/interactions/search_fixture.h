// A real SQLite storage in a temporary directory plus the interactions
// dispatch, for search tests that go through the whole engine.
#pragma once

#include <catch2/catch.hpp>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <rapidjson/document.h>

#include "model_fixture.h"
#include "espace/fhir/json.h"
#include "espace/interactions/api.h"
#include "espace/storage/storage.h"

namespace search_test {

inline const espace::fhir::Definitions& defs() { return test_definitions(); }

// Splits "a=1&b=x%7Cy" into decoded pairs.
inline std::vector<std::pair<std::string, std::string>> query_params(const std::string& query) {
  std::vector<std::pair<std::string, std::string>> out;
  auto decode = [](std::string_view s) {
    std::string r;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '%' && i + 2 < s.size()) {
        r.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
        i += 2;
      } else {
        r.push_back(s[i] == '+' ? ' ' : s[i]);
      }
    }
    return r;
  };
  size_t start = 0;
  while (start <= query.size()) {
    size_t amp = query.find('&', start);
    std::string part = query.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    if (!part.empty()) {
      size_t eq = part.find('=');
      out.emplace_back(decode(part.substr(0, eq)), eq == std::string::npos ? "" : decode(part.substr(eq + 1)));
    }
    if (amp == std::string::npos) break;
    start = amp + 1;
  }
  return out;
}

class Server {
 public:
  Server() {
    char tmpl[] = "/tmp/espace-search-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    espace::storage::SqliteOptions opts;
    opts.path = dir_ + "/db";
    opts.synchronous_full = false;
    REQUIRE(espace::storage::open_sqlite(opts, &store_).is_ok());
    services_.defs = &defs();
    services_.store = store_.get();
  }
  ~Server() {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  espace::interactions::Services& services() { return services_; }

  // PUT of a resource with its id; returns the HTTP status.
  int put(const std::string& json) {
    espace::fhir::Node node;
    auto s = espace::fhir::parse_json(defs(), json, &node);
    INFO(s.message());
    REQUIRE(s.is_ok());
    espace::interactions::FhirRequest req;
    req.interaction = espace::interactions::Interaction::Update;
    req.type = std::string(espace::fhir::resource_type(node));
    req.id = std::string(espace::fhir::resource_id(node));
    req.resource = std::move(node);
    req.base_url = "http://test";
    auto r = espace::interactions::dispatch(services_, req);
    INFO(r.error.message());
    return r.error.is_ok() ? r.status : espace::interactions::http_status(r.error.category());
  }

  espace::interactions::FhirResponse search(const std::string& type, const std::string& query, bool lenient = false) {
    espace::interactions::FhirRequest req;
    req.interaction = type.empty() ? espace::interactions::Interaction::SearchSystem
                                   : espace::interactions::Interaction::SearchType;
    req.type = type;
    req.params = query_params(query);
    req.base_url = "http://test";
    req.lenient = lenient;
    return espace::interactions::dispatch(services_, req);
  }

 private:
  std::string dir_;
  std::unique_ptr<espace::storage::Storage> store_;
  espace::interactions::Services services_;
};

// "Type/id" of the entries with search.mode `mode`, in Bundle order.
inline std::vector<std::string> entry_refs(const std::string& bundle_json, const char* mode = "match") {
  rapidjson::Document d;
  d.Parse(bundle_json.data(), bundle_json.size());
  std::vector<std::string> out;
  if (d.HasParseError() || !d.HasMember("entry")) return out;
  for (auto& e : d["entry"].GetArray())
    if (std::string(e["search"]["mode"].GetString()) == mode)
      out.push_back(std::string(e["resource"]["resourceType"].GetString()) + "/" +
                    (e["resource"].HasMember("id") ? e["resource"]["id"].GetString() : ""));
  return out;
}

inline std::vector<std::string> match_ids(const std::string& bundle_json) {
  std::vector<std::string> ids;
  for (auto& r : entry_refs(bundle_json)) ids.push_back(r.substr(r.find('/') + 1));
  return ids;
}

}  // namespace search_test
