// The AuditEvent built for a request (BALP mapping, patients, no identifying
// query values) and the trail writing it durably into the storage's chain.
#include <rapidjson/document.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "espace/policy/audit.h"
#include "espace/storage/sqlite_storage.h"
#include "temp_db.h"

using namespace espace;
using policy::AccessRecord;
using policy::Caller;
using policy::Role;
using interactions::FhirRequest;
using interactions::Interaction;

namespace {

rapidjson::Document parse(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.c_str(), json.size());
  REQUIRE_FALSE(d.HasParseError());
  REQUIRE(d.IsObject());
  return d;
}

std::string str(const rapidjson::Value& v) { return std::string(v.GetString(), v.GetStringLength()); }

std::string decode_base64(const std::string& in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  int bits = 0;
  uint32_t acc = 0;
  for (char c : in) {
    int v = value(c);
    if (v < 0) continue;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

Caller professional() {
  Caller c;
  c.authenticated = true;
  c.role = Role::Professional;
  c.subject = "acct-42";
  c.national_id = "810001234567";
  c.profession_code = "10";
  c.specialty_code = "SM54";
  c.organization_id = "750712184";
  c.display_name = "Dr Marie Martin";
  c.fhir_user = "Practitioner/pr1";
  c.client_id = "lgc-cabinet";
  c.token_id = "tok-1";
  c.issuer = "https://idp.example";
  c.purpose_of_use = "TREAT";
  c.remote_address = "127.0.0.1";
  return c;
}

const rapidjson::Value* find_entity(const rapidjson::Document& d, const std::string& reference) {
  if (!d.HasMember("entity")) return nullptr;
  for (const auto& e : d["entity"].GetArray())
    if (e.HasMember("what") && str(e["what"]["reference"]) == reference) return &e;
  return nullptr;
}

using espace::testing::TempDb;

}  // namespace

TEST_CASE("audit outcome codes follow the HTTP status", "[audit]") {
  CHECK(std::string(policy::audit_outcome(200)) == "0");
  CHECK(std::string(policy::audit_outcome(201)) == "0");
  CHECK(std::string(policy::audit_outcome(304)) == "0");
  CHECK(std::string(policy::audit_outcome(403)) == "4");
  CHECK(std::string(policy::audit_outcome(404)) == "4");
  CHECK(std::string(policy::audit_outcome(500)) == "8");
  CHECK(std::string(policy::audit_outcome(503)) == "12");
}

TEST_CASE("a read by a professional: action, agent, patient and resource entities", "[audit]") {
  FhirRequest req;
  req.interaction = Interaction::Read;
  req.type = "Observation";
  req.id = "obs1";
  AccessRecord access;
  access.patients = {"pat1"};
  access.resources = {"Observation/obs1/_history/3"};
  access.rules = {"GP"};
  storage::AuditRecord rec =
      policy::build_audit_record(professional(), req, 200, access, {}, 1795000000123456, "evt-1");
  CHECK(rec.id == "evt-1");
  CHECK(rec.recorded_us == 1795000000123456);
  CHECK(rec.patients == std::vector<std::string>{"pat1"});
  auto d = parse(rec.json);
  CHECK(str(d["resourceType"]) == "AuditEvent");
  CHECK(str(d["id"]) == "evt-1");
  CHECK(str(d["type"]["code"]) == "rest");
  CHECK(str(d["subtype"][0]["code"]) == "read");
  CHECK(str(d["action"]) == "R");
  CHECK(str(d["outcome"]) == "0");
  CHECK(str(d["recorded"]) == "2026-11-18T11:06:40.123456Z");
  CHECK(str(d["purposeOfEvent"][0]["coding"][0]["code"]) == "TREAT");

  const auto& user = d["agent"][0];
  CHECK(user["requestor"].GetBool());
  CHECK(str(user["who"]["reference"]) == "Practitioner/pr1");
  CHECK(str(user["who"]["identifier"]["system"]) == "urn:oid:1.2.250.1.71.4.2.1");
  CHECK(str(user["who"]["identifier"]["value"]) == "810001234567");
  CHECK(str(user["role"][0]["coding"][0]["code"]) == "professional");
  CHECK(str(user["role"][1]["coding"][0]["code"]) == "10");
  CHECK(str(user["policy"][1]) == "urn:jti:tok-1");
  CHECK(str(user["network"]["address"]) == "127.0.0.1");
  CHECK(str(user["extension"][0]["valueString"]) == "GP");
  bool finess = false, server = false;
  for (const auto& a : d["agent"].GetArray()) {
    if (a["who"].HasMember("identifier") && a["who"]["identifier"].HasMember("system") &&
        str(a["who"]["identifier"]["system"]) == "urn:oid:1.2.250.1.71.4.2.2")
      finess = str(a["who"]["identifier"]["value"]) == "750712184";
    if (str(a["type"]["coding"][0]["code"]) == "110152") server = !a["requestor"].GetBool();
  }
  CHECK(finess);
  CHECK(server);
  CHECK(str(d["source"]["type"][0]["code"]) == "4");

  const rapidjson::Value* patient = find_entity(d, "Patient/pat1");
  REQUIRE(patient);
  CHECK(str((*patient)["role"]["code"]) == "1");
  const rapidjson::Value* obs = find_entity(d, "Observation/obs1/_history/3");
  REQUIRE(obs);
  CHECK(str((*obs)["role"]["code"]) == "4");
}

TEST_CASE("the recorded instant keeps every field at its width", "[audit]") {
  FhirRequest req;
  req.interaction = Interaction::Capabilities;
  auto recorded = [&](int64_t us) {
    auto d = parse(policy::build_audit_record(professional(), req, 200, {}, {}, us, "evt-t").json);
    return str(d["recorded"]) + " " + str(d["meta"]["lastUpdated"]);
  };
  CHECK(recorded(1767225600000007) == "2026-01-01T00:00:00.000007Z 2026-01-01T00:00:00.000007Z");
  CHECK(recorded(1) == "1970-01-01T00:00:00.000001Z 1970-01-01T00:00:00.000001Z");
  CHECK(recorded(253402300799999999) == "9999-12-31T23:59:59.999999Z 9999-12-31T23:59:59.999999Z");
}

TEST_CASE("interactions map to C/R/U/D/E and refusals to failure outcomes", "[audit]") {
  struct Case {
    Interaction interaction;
    const char* action;
    const char* subtype;
  };
  for (Case c : {Case{Interaction::Create, "C", "create"}, Case{Interaction::VRead, "R", "vread"},
                 Case{Interaction::Update, "U", "update"}, Case{Interaction::Patch, "U", "patch"},
                 Case{Interaction::Delete, "D", "delete"}, Case{Interaction::SearchType, "E", "search-type"},
                 Case{Interaction::HistoryInstance, "R", "history"}, Case{Interaction::Transaction, "E", "transaction"},
                 Case{Interaction::Operation, "E", "operation"}}) {
    FhirRequest req;
    req.interaction = c.interaction;
    req.type = "Observation";
    auto d = parse(policy::build_audit_record(professional(), req, 403, {}, {}, 1, "x").json);
    INFO(c.subtype);
    CHECK(str(d["action"]) == c.action);
    CHECK(str(d["subtype"][0]["code"]) == c.subtype);
    CHECK(str(d["outcome"]) == "4");
    CHECK(str(d["outcomeDesc"]) == "HTTP 403");
  }
}

TEST_CASE("search events keep the query without identifying values", "[audit]") {
  FhirRequest req;
  req.interaction = Interaction::SearchType;
  req.type = "Patient";
  req.params = {{"family", "Dupont"}, {"birthdate", "1980-02-03"}, {"identifier", "urn:oid:1.2.250.1.213.1.4.8|1800203"},
                {"_count", "10"}, {"general-practitioner.name", "Leblanc"}};
  storage::AuditRecord rec = policy::build_audit_record(professional(), req, 200, {}, {}, 1, "q1");
  for (const char* secret : {"Dupont", "1980-02-03", "1800203", "Leblanc"})
    CHECK(rec.json.find(secret) == std::string::npos);
  auto d = parse(rec.json);
  std::string query;
  for (const auto& e : d["entity"].GetArray())
    if (str(e["role"]["code"]) == "24") query = decode_base64(str(e["query"]));
  CHECK(query == "Patient?family=redacted&birthdate=redacted&identifier=redacted&_count=10&"
                 "general-practitioner.name=redacted");
  for (const char* secret : {"Dupont", "1980", "1800203", "Leblanc"}) CHECK(query.find(secret) == std::string::npos);

  // A DocumentReference search keeps its (non-identifying) criteria and names the patient.
  FhirRequest docs;
  docs.interaction = Interaction::SearchType;
  docs.type = "DocumentReference";
  docs.params = {{"patient", "Patient/p7"}, {"type", "http://loinc.org|11488-4"}, {"date", "ge2026-01-01"}};
  storage::AuditRecord drec = policy::build_audit_record(professional(), docs, 200, {}, {}, 1, "q2");
  CHECK(drec.patients == std::vector<std::string>{"p7"});
  auto dd = parse(drec.json);
  std::string dquery;
  for (const auto& e : dd["entity"].GetArray())
    if (str(e["role"]["code"]) == "24") dquery = decode_base64(str(e["query"]));
  CHECK(dquery == "DocumentReference?patient=Patient/p7&type=http://loinc.org|11488-4&date=ge2026-01-01");
}

TEST_CASE("the patients of an event come from the URL, the criteria, the body and the rules", "[audit]") {
  FhirRequest compartment;
  compartment.interaction = Interaction::SearchType;
  compartment.type = "Observation";
  compartment.compartment_type = "Patient";
  compartment.compartment_id = "c1";
  compartment.params = {{"subject", "Patient/s1,Group/g1,Patient/bad id"}, {"patient", "p2"}};
  AccessRecord access;
  access.patients = {"r1", "c1"};
  auto rec = policy::build_audit_record(professional(), compartment, 200, access, {}, 1, "x");
  CHECK(rec.patients == std::vector<std::string>{"r1", "c1", "s1", "p2"});

  FhirRequest read_patient;
  read_patient.interaction = Interaction::Read;
  read_patient.type = "Patient";
  read_patient.id = "me";
  CHECK(policy::build_audit_record(professional(), read_patient, 404, {}, {}, 1, "y").patients ==
        std::vector<std::string>{"me"});
}

TEST_CASE("break-the-glass access is flagged as ETREAT with our extension", "[audit]") {
  FhirRequest req;
  req.interaction = Interaction::Read;
  req.type = "DocumentReference";
  req.id = "d1";
  AccessRecord access;
  access.break_glass = true;
  access.patients = {"p1"};
  auto d = parse(policy::build_audit_record(professional(), req, 200, access, {}, 1, "b").json);
  CHECK(str(d["purposeOfEvent"][0]["coding"][0]["code"]) == "ETREAT");
  const auto& user = d["agent"][0];
  CHECK(str(user["purposeOfUse"][0]["coding"][0]["code"]) == "ETREAT");
  CHECK(str(user["extension"][0]["url"]) == "https://espace.example/fhir/StructureDefinition/audit-break-the-glass");
  CHECK(user["extension"][0]["valueBoolean"].GetBool());
}

TEST_CASE("the trail appends one durable, chained record per call, also concurrently", "[audit]") {
  TempDb db;
  storage::SqliteOptions opts;
  opts.path = db.path;
  std::unique_ptr<storage::Storage> store;
  REQUIRE(storage::open_sqlite(opts, &store).is_ok());
  auto trail = policy::make_audit_trail(*store);

  constexpr int kThreads = 6, kEach = 40;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        FhirRequest req;
        req.interaction = Interaction::Read;
        req.type = "Patient";
        req.id = "p" + std::to_string(t);
        if (!trail->record(professional(), req, 200, {}).is_ok()) failures.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures.load() == 0);

  storage::AuditVerification v;
  REQUIRE(storage::verify_audit_chain(*store, &v).is_ok());
  CHECK(v.intact);
  CHECK(v.records == kThreads * kEach);
  storage::AuditQuery q;
  q.patient = "p2";
  q.count = 1000;
  storage::AuditPage page;
  REQUIRE(store->search_audit(q, &page).is_ok());
  REQUIRE(page.records.size() == static_cast<size_t>(kEach));
  std::set<std::string> ids;
  for (const auto& r : page.records) {
    ids.insert(r.id);
    // UUID version 7: time first, so ids of later events sort after earlier ones' milliseconds.
    REQUIRE(r.id.size() == 36);
    CHECK(r.id[14] == '7');
    CHECK(r.id.substr(0, 8) <= page.records.front().id.substr(0, 8));
    auto d = parse(r.json);
    CHECK(str(d["id"]) == r.id);
    REQUIRE(find_entity(d, "Patient/p2"));
  }
  CHECK(ids.size() == static_cast<size_t>(kEach));

  // Every event of the run has its own id, a UUID version 7 in lower case.
  storage::AuditQuery all;
  all.count = 1000;
  REQUIRE(store->search_audit(all, &page).is_ok());
  REQUIRE(page.records.size() == static_cast<size_t>(kThreads * kEach));
  ids.clear();
  for (const auto& r : page.records) {
    ids.insert(r.id);
    REQUIRE(r.id.size() == 36);
    CHECK(r.id.find_first_not_of("0123456789abcdef-") == std::string::npos);
    CHECK((r.id[8] == '-' && r.id[13] == '-' && r.id[18] == '-' && r.id[23] == '-'));
    CHECK(std::string("89ab").find(r.id[19]) != std::string::npos);  // the RFC 9562 variant
  }
  CHECK(ids.size() == static_cast<size_t>(kThreads * kEach));
}
