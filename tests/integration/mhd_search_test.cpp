// ITI-67 Find Document References and ITI-66 Find Lists: every MHD search
// parameter, each with a query that must match and one that must not.
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "http_client.h"
#include "json_checks.h"
#include "mhd_support.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::json_of;
using espace::testing::ServerProcess;
using espace::testing::str;
using namespace mhd_test;

namespace {

std::set<std::string> ids_of(HttpClient& c, const std::string& query) {
  HttpResponse r = c.get(query);
  INFO(query << " -> " << r.body.substr(0, 600));
  REQUIRE(r.status == 200);
  auto j = json_of(r);
  std::set<std::string> ids;
  if (j.HasMember("entry"))
    for (auto& e : j["entry"].GetArray()) ids.insert(str(e["resource"], "resourceType") + "/" + str(e["resource"], "id"));
  return ids;
}

struct Stored {
  std::string list, doc;
};

Stored submit(HttpClient& c, Submission s) {
  HttpResponse r = post_bundle(c, provide_bundle(s));
  INFO(r.body);
  REQUIRE(r.status == 200);
  auto j = json_of(r);
  return {target_of(str(j["entry"][0]["response"], "location"), "List"),
          target_of(str(j["entry"][1]["response"], "location"), "DocumentReference")};
}

}  // namespace

TEST_CASE("ITI-67 and ITI-66 search parameters", "[mhd]") {
  ServerProcess server;
  HttpClient c("127.0.0.1", server.port());
  load_fixtures(c);

  Submission first;
  first.unique_id = "1.2.250.1.999.50.1";
  Document a;
  a.unique_id = "1.2.250.1.999.60.1";
  a.type_code = "11488-4";
  a.date = "2026-11-20T10:00:00+01:00";
  a.security = "N";
  a.related = "ServiceRequest/mhd-order-1";
  first.documents.push_back(a);
  Stored one = submit(c, first);

  Submission second;
  second.unique_id = "1.2.250.1.999.50.2";
  second.patient = "Patient/mhd-qualified-2";
  Document b;
  b.unique_id = "1.2.250.1.999.60.2";
  b.type_code = "34133-9";
  b.date = "2025-03-01T08:00:00+01:00";
  b.security = "R";
  b.facility = "SA07";
  second.documents.push_back(b);
  Stored two = submit(c, second);

  const std::set<std::string> only_a{one.doc}, only_b{two.doc}, both{one.doc, two.doc}, none{};
  const std::string q = "/DocumentReference?";

  SECTION("patient and patient.identifier") {
    CHECK(ids_of(c, q + "patient=Patient/mhd-qualified") == only_a);
    CHECK(ids_of(c, q + "patient=mhd-qualified-2") == only_b);
    CHECK(ids_of(c, q + "patient.identifier=urn:oid:1.2.250.1.213.1.4.8|248097510812364") == only_a);
    CHECK(ids_of(c, q + "patient.identifier=urn:oid:1.2.250.1.213.1.4.8|000000000000000") == none);
  }
  SECTION("status, type, category, date, security-label, identifier") {
    CHECK(ids_of(c, q + "status=current") == both);
    CHECK(ids_of(c, q + "status=superseded") == none);
    CHECK(ids_of(c, q + "type=http://loinc.org|34133-9") == only_b);
    CHECK(ids_of(c, q + "category=urn:oid:1.2.250.1.213.1.1.4.1|10") == both);
    CHECK(ids_of(c, q + "category=urn:oid:1.2.250.1.213.1.1.4.1|99") == none);
    CHECK(ids_of(c, q + "date=ge2026-01-01") == only_a);
    CHECK(ids_of(c, q + "date=lt2026-01-01") == only_b);
    CHECK(ids_of(c, q + "security-label=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R") == only_b);
    CHECK(ids_of(c, q + "identifier=urn:ietf:rfc:3986|urn:oid:1.2.250.1.999.60.1") == only_a);
  }
  SECTION("context: period, setting, facility, event, related; format") {
    CHECK(ids_of(c, q + "period=ge2026-11-18&period=le2026-11-19") == both);
    CHECK(ids_of(c, q + "period=ge2027-01-01") == none);
    CHECK(ids_of(c, q + "setting=" + kSettingSystem + "|ETABLISSEMENT") == both);
    CHECK(ids_of(c, q + "setting=" + kSettingSystem + "|AUTRE") == none);
    CHECK(ids_of(c, q + "facility=" + kFacilitySystem + "|SA07") == only_b);
    CHECK(ids_of(c, q + "event=urn:oid:2.16.840.1.113883.6.3|C34") == both);
    CHECK(ids_of(c, q + "event=urn:oid:2.16.840.1.113883.6.3|C50") == none);
    CHECK(ids_of(c, q + "related=ServiceRequest/mhd-order-1") == only_a);
    CHECK(ids_of(c, q + "format=" + kFormatSystem + "|urn:ihe:iti:xds:2017:mimeTypeSufficient") == both);
    CHECK(ids_of(c, q + "format=" + kFormatSystem + "|other") == none);
  }
  SECTION("author.given and author.family (chained)") {
    CHECK(ids_of(c, q + "author.given=CLAUDE") == both);
    CHECK(ids_of(c, q + "author.family=TESTEUR&patient=Patient/mhd-qualified") == only_a);
    CHECK(ids_of(c, q + "author.family=Inconnu") == none);
  }
  SECTION("ITI-66 Find Lists") {
    const std::string l = "/List?";
    const std::set<std::string> list_a{one.list}, lists{one.list, two.list};
    CHECK(ids_of(c, l + "code=https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes|submissionset") == lists);
    CHECK(ids_of(c, l + "code=https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes|folder") == none);
    CHECK(ids_of(c, l + "patient=Patient/mhd-qualified") == list_a);
    CHECK(ids_of(c, l + "designationType=http://loinc.org|11488-4") == list_a);
    CHECK(ids_of(c, l + "designationType=http://loinc.org|00000-0") == none);
    CHECK(ids_of(c, l + "sourceId=urn:oid:1.2.250.1.999.1") == lists);
    CHECK(ids_of(c, l + "sourceId=urn:oid:1.2.250.1.999.2") == none);
    CHECK(ids_of(c, l + "source.given=CLAUDE") == lists);
    CHECK(ids_of(c, l + "source.family=Inconnu") == none);
    CHECK(ids_of(c, l + "identifier=urn:ietf:rfc:3986|urn:oid:1.2.250.1.999.50.2") ==
          std::set<std::string>{two.list});
    CHECK(ids_of(c, l + "status=current&patient.identifier=urn:oid:1.2.250.1.213.1.4.8|290056912345637") ==
          std::set<std::string>{two.list});
  }
}
