// The CapabilityStatement (hl7.org/fhir/R4/capabilitystatement.html) is
// generated from the server's tables: operations appear where they apply.
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <ctime>
#include <string>

#include "http_client.h"
#include "json_checks.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::json_of;
using espace::testing::ServerProcess;
using espace::testing::str;

namespace {

const rapidjson::Value* resource_entry(const rapidjson::Value& rest, const std::string& type) {
  for (const auto& r : rest["resource"].GetArray())
    if (type == r["type"].GetString()) return &r;
  return nullptr;
}

bool lists_operation(const rapidjson::Value& holder, const std::string& name, const std::string& definition) {
  if (!holder.HasMember("operation")) return false;
  for (const auto& op : holder["operation"].GetArray())
    if (name == op["name"].GetString() && definition == op["definition"].GetString()) return true;
  return false;
}

std::string today_utc() {
  std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

}  // namespace

TEST_CASE("metadata lists the operations where they apply, in JSON and XML", "[rest][capabilities]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  HttpResponse r = c.get("/metadata");
  REQUIRE(r.status == 200);
  auto doc = json_of(r);
  CHECK(str(doc, "resourceType") == "CapabilityStatement");
  CHECK(str(doc, "date") == today_utc());
  const rapidjson::Value& rest = doc["rest"][0];

  const rapidjson::Value* value_set = resource_entry(rest, "ValueSet");
  const rapidjson::Value* code_system = resource_entry(rest, "CodeSystem");
  const rapidjson::Value* observation = resource_entry(rest, "Observation");
  REQUIRE(value_set);
  REQUIRE(code_system);
  REQUIRE(observation);
  CHECK(lists_operation(*value_set, "expand", "http://hl7.org/fhir/OperationDefinition/ValueSet-expand"));
  CHECK(lists_operation(*value_set, "validate-code", "http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code"));
  CHECK(lists_operation(*code_system, "lookup", "http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup"));
  CHECK(lists_operation(*code_system, "subsumes", "http://hl7.org/fhir/OperationDefinition/CodeSystem-subsumes"));
  CHECK(lists_operation(*observation, "validate", "http://hl7.org/fhir/OperationDefinition/Resource-validate"));
  // $export: R4 defines no OperationDefinition for it; the Bulk Data IG does.
  const rapidjson::Value* patient = resource_entry(rest, "Patient");
  REQUIRE(patient);
  CHECK(lists_operation(*patient, "export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"));
  CHECK(lists_operation(rest, "export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"));
  // Type-specific operations stay on their type.
  CHECK_FALSE(lists_operation(*observation, "expand", "http://hl7.org/fhir/OperationDefinition/ValueSet-expand"));

  // The same statement renders as XML (no empty arrays anywhere in it).
  HttpResponse xml = c.get("/metadata", {{"Accept", "application/fhir+xml"}});
  CHECK(xml.status == 200);
  CHECK(xml.body.find("<CapabilityStatement") != std::string::npos);
  CHECK(xml.body.find("ValueSet-expand") != std::string::npos);
}
