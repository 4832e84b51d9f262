// JSON helpers shared by the integration tests.
#pragma once

#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>

#include "http_client.h"

namespace espace::testing {

// The response body parsed as JSON; fails the test (showing the body's
// start) when it is not JSON.
inline rapidjson::Document json_of(const HttpResponse& r) {
  rapidjson::Document d;
  d.Parse(r.body.c_str());
  INFO(r.body.substr(0, 2000));
  REQUIRE_FALSE(d.HasParseError());
  return d;
}

// A string member, or "" when absent or not a string.
inline std::string str(const rapidjson::Value& v, const char* key) {
  auto it = v.FindMember(key);
  return it != v.MemberEnd() && it->value.IsString() ? it->value.GetString() : std::string();
}

// How many versions the server holds in all (system history total).
inline int64_t history_total(HttpClient& c) { return json_of(c.get("/_history?_count=0"))["total"].GetInt64(); }

}  // namespace espace::testing
