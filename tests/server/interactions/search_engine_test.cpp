// Search engine features beyond the differential set: modifiers, special
// parameters, result parameters (_sort, _count and paging, _total,
// _summary, _elements, _include/_revinclude), lenient handling, compartments,
// and the helpers (string normalization, date ranges).
#include "../../../server/interactions/src/search/registry.h"
#include "../../../server/interactions/src/search/query.h"
#include "espace/interactions/compartments.h"
#include "search_fixture.h"

using namespace search_test;
using espace::interactions::search::date_range;
using espace::interactions::search::normalize_string;
using espace::interactions::search::Registry;

namespace {

rapidjson::Document parse(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.data(), json.size());
  REQUIRE_FALSE(d.HasParseError());
  return d;
}

std::string link(const rapidjson::Document& bundle, const std::string& relation) {
  if (!bundle.HasMember("link")) return {};
  for (auto& l : bundle["link"].GetArray())
    if (relation == l["relation"].GetString()) return l["url"].GetString();
  return {};
}

// The query part of a link, without the base and path.
std::string query_of(const std::string& url) {
  size_t q = url.find('?');
  return q == std::string::npos ? std::string() : url.substr(q + 1);
}

std::vector<std::string> ids(const espace::interactions::FhirResponse& r) {
  INFO(r.error.message());
  REQUIRE(r.error.is_ok());
  return match_ids(r.json);
}

std::set<std::string> id_set(const espace::interactions::FhirResponse& r) {
  auto v = ids(r);
  return {v.begin(), v.end()};
}

void load_basic(Server& s) {
  REQUIRE(s.put(R"({"resourceType":"Organization","id":"org1","name":"Clinique"})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Practitioner","id":"dr1","name":[{"family":"House"}]})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Patient","id":"a","name":[{"family":"Zola","given":["Émile"]}],"birthDate":"1990-01-01",)"
                R"("gender":"male","managingOrganization":{"reference":"Organization/org1"},)"
                R"("generalPractitioner":[{"reference":"http://test/Practitioner/dr1"}],)"
                R"("identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"urn:mr","value":"111"}]})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Patient","id":"b","name":[{"family":"Hugo","given":["Victor"]}],"birthDate":"1985-06-15","gender":"male"})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Patient","id":"c","name":[{"family":"Sand","given":["George"]}],"birthDate":"1990-03-02","gender":"female"})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Observation","id":"o1","status":"final","code":{"text":"pouls"},"subject":{"reference":"Patient/a"},)"
                R"("performer":[{"reference":"Practitioner/dr1"}],"valueQuantity":{"value":60},"note":[{"text":"au repos"}]})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Observation","id":"o2","status":"final","code":{"text":"poids"},"subject":{"reference":"Patient/b"}})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/a"},)"
                R"("serviceProvider":{"identifier":{"system":"urn:finess","value":"750000001"}}})") == 201);
  REQUIRE(s.put(R"({"resourceType":"ValueSet","id":"vs1","status":"active","url":"http://example.org/fhir/ValueSet/colors"})") == 201);
  REQUIRE(s.put(R"({"resourceType":"RiskAssessment","id":"r1","status":"final","subject":{"reference":"Patient/a"},)"
                R"("prediction":[{"probabilityDecimal":0.25}]})") == 201);
}

}  // namespace

TEST_CASE("normalized strings drop case and accents", "[search]") {
  CHECK(normalize_string("Élodie") == "elodie");
  CHECK(normalize_string("DUPRÉ") == "dupre");
  CHECK(normalize_string("Garçon Noël Œuvre Straße") == "garcon noel oeuvre strasse");
  CHECK(normalize_string("Łódź") == "lodz");
  CHECK(normalize_string("e\xCC\x81t\xC3\xA9") == "ete");  // combining acute accent
  CHECK(normalize_string("日本") == "日本");                 // other scripts kept as they are
}

TEST_CASE("partial dates cover their implicit range", "[search]") {
  int64_t lo = 0, hi = 0;
  REQUIRE(date_range("2024", &lo, &hi));
  int64_t lo2 = 0, hi2 = 0;
  REQUIRE(date_range("2024-12-31T23:59:59Z", &lo2, &hi2));
  CHECK(hi == hi2 + 0);  // the last second of the year ends with the year
  REQUIRE(date_range("2024-02", &lo, &hi));
  CHECK(hi - lo + 1 == 29LL * 86400 * 1000000);  // leap February
  REQUIRE(date_range("2024-03-01T10:00+02:00", &lo, &hi));
  REQUIRE(date_range("2024-03-01T08:00Z", &lo2, &hi2));
  CHECK(lo == lo2);
  CHECK(hi - lo + 1 == 60LL * 1000000);  // minute precision
  REQUIRE(date_range("2024-03-01T08:00:00.5Z", &lo, &hi));
  CHECK(hi - lo + 1 == 100000);
  CHECK_FALSE(date_range("2024-13", &lo, &hi));
  CHECK_FALSE(date_range("yesterday", &lo, &hi));
}

TEST_CASE("the registry covers every resource type from the package definitions", "[search]") {
  const Registry& r = Registry::get(defs());
  CHECK(r.find("Patient", "family") != nullptr);
  CHECK(r.find("Observation", "code") != nullptr);
  CHECK(r.find("Account", "_lastUpdated") != nullptr);  // Resource-level parameters on every type
  CHECK(r.find("Patient", "nonsense") == nullptr);
  CHECK(r.compartment("Patient") != nullptr);
  CHECK(r.compartment("Patient")->count("Observation"));
  INFO(r.compile_failures().size() << " expressions failed to compile");
  CHECK(r.compile_failures().size() < 10);
}

TEST_CASE("token, reference and uri modifiers", "[search]") {
  Server s;
  load_basic(s);
  CHECK(ids(s.search("Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|111")) ==
        std::vector<std::string>{"a"});
  CHECK(ids(s.search("Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|222")).empty());
  CHECK(s.search("Patient", "identifier:of-type=MR|111").error.category() == espace::fhir::ErrorCategory::Invalid);
  CHECK(ids(s.search("Observation", "code:text=pou")) == std::vector<std::string>{"o1"});
  // Reference forms: Type/id, bare id, absolute URL of this server, :identifier.
  CHECK(ids(s.search("Patient", "organization=Organization/org1")) == std::vector<std::string>{"a"});
  CHECK(ids(s.search("Patient", "organization=org1")) == std::vector<std::string>{"a"});
  CHECK(ids(s.search("Patient", "organization=http://test/Organization/org1")) == std::vector<std::string>{"a"});
  CHECK(ids(s.search("Patient", "general-practitioner=Practitioner/dr1")) == std::vector<std::string>{"a"});
  CHECK(ids(s.search("Encounter", "service-provider:identifier=urn:finess|750000001")) == std::vector<std::string>{"e1"});
  CHECK(ids(s.search("Encounter", "service-provider:identifier=urn:finess|1")).empty());
  CHECK(ids(s.search("Observation", "subject:Patient=a")) == std::vector<std::string>{"o1"});
  CHECK(s.search("Observation", "subject=Group/a&subject:Patient=Group/a").error.category() ==
        espace::fhir::ErrorCategory::Invalid);
  // uri: exact, :below, :above.
  CHECK(ids(s.search("ValueSet", "url=http://example.org/fhir/ValueSet/colors")) == std::vector<std::string>{"vs1"});
  CHECK(ids(s.search("ValueSet", "url=http://example.org/fhir")).empty());
  CHECK(ids(s.search("ValueSet", "url:below=http://example.org/fhir")) == std::vector<std::string>{"vs1"});
  CHECK(ids(s.search("ValueSet", "url:above=http://example.org/fhir/ValueSet/colors/v2")) ==
        std::vector<std::string>{"vs1"});
  CHECK(ids(s.search("ValueSet", "url:above=http://example.org/other")).empty());
  // number with the precision of the value
  CHECK(ids(s.search("RiskAssessment", "probability=0.25")) == std::vector<std::string>{"r1"});
  CHECK(ids(s.search("RiskAssessment", "probability=0.3")) == std::vector<std::string>{"r1"});  // [0.25, 0.35)
  CHECK(ids(s.search("RiskAssessment", "probability=0.4")).empty());
  CHECK(ids(s.search("RiskAssessment", "probability=gt0.2")) == std::vector<std::string>{"r1"});
  CHECK(ids(s.search("RiskAssessment", "probability=lt0.2")).empty());
}

TEST_CASE("string :exact matches the whole text with its case and accents, also past what the index keeps", "[search]") {
  Server s;
  const std::string long_name = "Lefèvre-" + std::string(600, 'x');  // cut in the index (512 bytes)
  REQUIRE(s.put(R"({"resourceType":"Patient","id":"accent","name":[{"family":"Lefèvre"}]})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Patient","id":"plain","name":[{"family":"Lefevre"}]})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Patient","id":"upper","name":[{"family":"LEFÈVRE"}]})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Patient","id":"longer","name":[{"family":"Lefèvre-Martin"}]})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Patient","id":"long","name":[{"family":")" + long_name + R"("}]})") == 201);
  CHECK(ids(s.search("Patient", "family:exact=Lef%C3%A8vre")) == std::vector<std::string>{"accent"});
  CHECK(ids(s.search("Patient", "family:exact=Lefevre")) == std::vector<std::string>{"plain"});
  CHECK(ids(s.search("Patient", "family:exact=LEF%C3%88VRE")) == std::vector<std::string>{"upper"});
  CHECK(ids(s.search("Patient", "family:exact=lef%C3%A8vre")).empty());
  CHECK(ids(s.search("Patient", "family:exact=Lef%C3%A8vre-Martin,Lefevre")) ==
        std::vector<std::string>{"plain", "longer"});
  // The plain search still finds them all by prefix, case and accents aside.
  CHECK(id_set(s.search("Patient", "family=lefevre")) == std::set<std::string>{"accent", "plain", "upper", "longer", "long"});
  // A text longer than the index keeps is compared on what it keeps, as before.
  CHECK(ids(s.search("Patient", "family:exact=" + long_name.substr(0, 512))) == std::vector<std::string>{"long"});
}

TEST_CASE("_id, _lastUpdated, _type and system-level search", "[search]") {
  Server s;
  load_basic(s);
  CHECK(id_set(s.search("", "_id=a,o1")) == std::set<std::string>{"a", "o1"});
  CHECK(id_set(s.search("", "_type=Observation")) == std::set<std::string>{"o1", "o2"});
  CHECK(s.search("", "family=Zola").error.category() == espace::fhir::ErrorCategory::Invalid);
  CHECK(id_set(s.search("Patient", "_lastUpdated=gt2000-01-01")) == std::set<std::string>{"a", "b", "c"});
  CHECK(ids(s.search("Patient", "_lastUpdated=lt2000-01-01")).empty());
  CHECK(ids(s.search("Patient", "_lastUpdated=ge2999")).empty());
}

TEST_CASE("unknown parameters: 400 naming them, or ignored and reported under handling=lenient", "[search]") {
  Server s;
  load_basic(s);
  auto strict = s.search("Patient", "famly=Zola");
  REQUIRE_FALSE(strict.error.is_ok());
  CHECK(strict.error.category() == espace::fhir::ErrorCategory::Invalid);
  CHECK(strict.error.message().find("famly") != std::string::npos);
  CHECK_FALSE(s.search("Patient", "family:fuzzy=Zola").error.is_ok());
  CHECK_FALSE(s.search("Patient", "birthdate=notadate").error.is_ok());
  CHECK_FALSE(s.search("Patient", "_count=-1").error.is_ok());
  CHECK_FALSE(s.search("Patient", "_sort=nonsense").error.is_ok());

  auto lenient = s.search("Patient", "famly=Zola&gender=female", true);
  REQUIRE(lenient.error.is_ok());
  CHECK(match_ids(lenient.json) == std::vector<std::string>{"c"});
  auto d = parse(lenient.json);
  // The self link shows what was applied; an OperationOutcome entry says what was not.
  CHECK(query_of(link(d, "self")) == "gender=female");
  auto outcomes = entry_refs(lenient.json, "outcome");
  REQUIRE(outcomes.size() == 1);
  CHECK(lenient.json.find("famly") != std::string::npos);
}

TEST_CASE("_sort with several keys and descending order", "[search]") {
  Server s;
  load_basic(s);
  // Under both plans: key sets, and conditions probed per candidate.
  auto threshold = GENERATE(int64_t{5000}, int64_t{1});
  s.services().limits.search_walk_threshold = threshold;
  CHECK(ids(s.search("Patient", "gender=male&_sort=-birthdate")) == std::vector<std::string>{"a", "b"});
  CHECK(ids(s.search("Patient", "_sort=birthdate")) == std::vector<std::string>{"b", "a", "c"});
  CHECK(ids(s.search("Patient", "_sort=-birthdate")) == std::vector<std::string>{"c", "a", "b"});
  CHECK(ids(s.search("Patient", "_sort=family")) == std::vector<std::string>{"b", "c", "a"});
  CHECK(ids(s.search("Patient", "_sort=gender,-birthdate")) == std::vector<std::string>{"c", "a", "b"});
  CHECK(ids(s.search("Patient", "_sort=-_id")) == std::vector<std::string>{"c", "b", "a"});
}

TEST_CASE("paging: next links stay correct while data changes", "[search]") {
  Server s;
  for (int i = 0; i < 7; ++i)
    REQUIRE(s.put(R"({"resourceType":"Patient","id":"p)" + std::to_string(i) + R"(","gender":"other"})") == 201);
  auto first = s.search("Patient", "gender=other&_count=3");
  CHECK(ids(first) == std::vector<std::string>{"p0", "p1", "p2"});
  auto d = parse(first.json);
  std::string next = link(d, "next");
  REQUIRE_FALSE(next.empty());
  CHECK(query_of(link(d, "self")) == "gender=other&_count=3");
  // A resource of the first page is deleted and one is added before the next page is read.
  espace::interactions::FhirRequest del;
  del.interaction = espace::interactions::Interaction::Delete;
  del.type = "Patient";
  del.id = "p1";
  REQUIRE(espace::interactions::dispatch(s.services(), del).error.is_ok());
  REQUIRE(s.put(R"({"resourceType":"Patient","id":"p7","gender":"other"})") == 201);
  auto second = s.search("Patient", query_of(next));
  CHECK(ids(second) == std::vector<std::string>{"p3", "p4", "p5"});
  auto third = s.search("Patient", query_of(link(parse(second.json), "next")));
  CHECK(ids(third) == std::vector<std::string>{"p6", "p7"});
  CHECK(link(parse(third.json), "next").empty());
  // Previous links walk back by key as well.
  auto back = s.search("Patient", query_of(link(parse(third.json), "previous")));
  CHECK(ids(back) == std::vector<std::string>{"p3", "p4", "p5"});
  auto back2 = s.search("Patient", query_of(link(parse(back.json), "previous")));
  CHECK(ids(back2) == std::vector<std::string>{"p0", "p2"});
  CHECK(link(parse(back2.json), "previous").empty());
  CHECK(ids(s.search("Patient", query_of(link(parse(back2.json), "next")))) ==
        std::vector<std::string>{"p3", "p4", "p5"});

  // With an explicit sort, pages follow by offset and link back.
  auto sorted = s.search("Patient", "_sort=-_id&_count=4");
  CHECK(ids(sorted) == std::vector<std::string>{"p7", "p6", "p5", "p4"});
  auto sorted2 = s.search("Patient", query_of(link(parse(sorted.json), "next")));
  CHECK(ids(sorted2) == std::vector<std::string>{"p3", "p2", "p0"});
  CHECK_FALSE(link(parse(sorted2.json), "previous").empty());
}

TEST_CASE("_total and _summary=count", "[search]") {
  Server s;
  load_basic(s);
  auto d = parse(s.search("Patient", "_count=1&_total=accurate").json);
  CHECK(d["total"].GetInt64() == 3);
  CHECK(d["entry"].Size() == 1);
  auto none = parse(s.search("Patient", "_count=1&_total=none").json);
  CHECK_FALSE(none.HasMember("total"));
  auto count = parse(s.search("Patient", "gender=male&_summary=count").json);
  CHECK(count["total"].GetInt64() == 2);
  CHECK_FALSE(count.HasMember("entry"));
  // A result that fits in one page knows its total without counting.
  CHECK(parse(s.search("Patient", "gender=female").json)["total"].GetInt64() == 1);
}

TEST_CASE("_summary=true and _elements subset the resources and mark them", "[search]") {
  Server s;
  load_basic(s);
  auto d = parse(s.search("Patient", "_id=a&_elements=birthDate").json);
  const auto& p = d["entry"][0]["resource"];
  CHECK(p.HasMember("birthDate"));
  CHECK(p.HasMember("id"));
  CHECK_FALSE(p.HasMember("name"));
  CHECK(std::string(p["meta"]["tag"][0]["code"].GetString()) == "SUBSETTED");
  auto summary = parse(s.search("Observation", "_id=o1&_summary=true").json);
  const auto& o = summary["entry"][0]["resource"];
  CHECK(o.HasMember("status"));   // a summary element
  CHECK(o.HasMember("code"));
  CHECK_FALSE(o.HasMember("note"));  // not a summary element
  auto data = parse(s.search("Patient", "_id=a&_summary=data").json);
  CHECK(data["entry"][0]["resource"].HasMember("name"));
}

TEST_CASE("_include and _revinclude, with :iterate and *", "[search]") {
  Server s;
  load_basic(s);
  auto inc = s.search("Observation", "_id=o1&_include=Observation:subject");
  CHECK(entry_refs(inc.json) == std::vector<std::string>{"Observation/o1"});
  CHECK(entry_refs(inc.json, "include") == std::vector<std::string>{"Patient/a"});
  auto typed = s.search("Observation", "_id=o1&_include=Observation:subject:Group");
  CHECK(entry_refs(typed.json, "include").empty());
  auto all = s.search("Observation", "_id=o1&_include=*");
  std::vector<std::string> got = entry_refs(all.json, "include");
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<std::string>{"Patient/a", "Practitioner/dr1"});
  auto iter = s.search("Observation", "_id=o1&_include=Observation:subject&_include:iterate=Patient:organization");
  got = entry_refs(iter.json, "include");
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<std::string>{"Organization/org1", "Patient/a"});
  auto no_iter = s.search("Observation", "_id=o1&_include=Observation:subject&_include=Patient:organization");
  CHECK(entry_refs(no_iter.json, "include") == std::vector<std::string>{"Patient/a"});
  auto rev = s.search("Patient", "_id=a&_revinclude=Observation:subject&_revinclude=Encounter:patient");
  got = entry_refs(rev.json, "include");
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<std::string>{"Encounter/e1", "Observation/o1"});
  CHECK_FALSE(s.search("Patient", "_include=Patient:family").error.is_ok());
}

TEST_CASE("compartment search and _has", "[search]") {
  Server s;
  load_basic(s);
  espace::interactions::FhirRequest req;
  req.interaction = espace::interactions::Interaction::SearchType;
  req.type = "Observation";
  req.compartment_type = "Patient";
  req.compartment_id = "a";
  req.base_url = "http://test";
  auto r = espace::interactions::dispatch(s.services(), req);
  CHECK(ids(r) == std::vector<std::string>{"o1"});
  req.interaction = espace::interactions::Interaction::SearchSystem;
  req.type.clear();
  auto all = espace::interactions::dispatch(s.services(), req);
  CHECK(id_set(all) == std::set<std::string>{"o1", "e1", "r1"});
  CHECK(link(parse(all.json), "self") == "http://test/Patient/a/*");
  req.interaction = espace::interactions::Interaction::SearchType;
  req.type = "ValueSet";
  CHECK_FALSE(espace::interactions::dispatch(s.services(), req).error.is_ok());  // not a member type

  CHECK(id_set(s.search("Patient", "_has:Observation:subject:status=final")) == std::set<std::string>{"a", "b"});
  CHECK(id_set(s.search("Patient", "_has:Observation:subject:code:text=pouls")) == std::set<std::string>{"a"});
  CHECK(id_set(s.search("Practitioner", "_has:Observation:performer:subject:Patient.gender=male")) ==
        std::set<std::string>{"dr1"});
  CHECK_FALSE(s.search("Patient", "_has:Observation:code:status=final").error.is_ok());  // code is no reference
}

TEST_CASE("conditional interactions use the engine", "[search]") {
  Server s;
  load_basic(s);
  espace::interactions::FhirRequest del;
  del.interaction = espace::interactions::Interaction::ConditionalDelete;
  del.type = "Patient";
  del.params = query_params("family=sand&birthdate=1990");
  auto r = espace::interactions::dispatch(s.services(), del);
  INFO(r.error.message());
  CHECK(r.error.is_ok());
  CHECK(ids(s.search("Patient", "_id=c")).empty());
  del.params = query_params("gender=male");  // two matches
  CHECK(espace::interactions::dispatch(s.services(), del).error.category() ==
        espace::fhir::ErrorCategory::PreconditionFailed);
}

TEST_CASE("composite parameters: token with quantity, token, date and string", "[search]") {
  Server s;
  REQUIRE(s.put(R"({"resourceType":"Observation","id":"bp","status":"final",)"
                R"("code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},)"
                R"("component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},)"
                R"("valueQuantity":{"value":120,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}},)"
                R"({"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},)"
                R"("valueQuantity":{"value":80,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Observation","id":"eye","status":"final",)"
                R"("code":{"coding":[{"system":"http://loinc.org","code":"eyes"}]},)"
                R"("valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"blue"}]}})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Observation","id":"when","status":"final",)"
                R"("code":{"coding":[{"system":"urn:c","code":"onset"}]},"valueDateTime":"2020-02-03"})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Observation","id":"txt","status":"final",)"
                R"("code":{"coding":[{"system":"urn:c","code":"note"}]},"valueString":"Très bien"})") == 201);
  CHECK(ids(s.search("Observation", "component-code-value-quantity=http://loinc.org|8480-6$gt100")) ==
        std::vector<std::string>{"bp"});
  // The pairs stay pairs: the systolic code with the diastolic value does not match.
  CHECK(ids(s.search("Observation", "component-code-value-quantity=8480-6$lt100")).empty());
  CHECK(ids(s.search("Observation", "component-code-value-quantity=8462-4$80|http://unitsofmeasure.org|mm[Hg]")) ==
        std::vector<std::string>{"bp"});
  CHECK(ids(s.search("Observation", "component-code-value-quantity=8462-4$80||kg")).empty());
  CHECK(ids(s.search("Observation", "combo-code-value-quantity=8462-4$80")) == std::vector<std::string>{"bp"});
  CHECK(ids(s.search("Observation", "code-value-concept=eyes$http://snomed.info/sct|blue")) ==
        std::vector<std::string>{"eye"});
  CHECK(ids(s.search("Observation", "code-value-concept=http://loinc.org|eyes$blue")) == std::vector<std::string>{"eye"});
  CHECK(ids(s.search("Observation", "code-value-concept=urn:other|eyes$blue")).empty());
  CHECK(ids(s.search("Observation", "code-value-date=onset$2020-02")) == std::vector<std::string>{"when"});
  CHECK(ids(s.search("Observation", "code-value-date=onset$gt2020-02")).empty());
  CHECK(ids(s.search("Observation", "code-value-string=note$tres")) == std::vector<std::string>{"txt"});
  CHECK_FALSE(s.search("Observation", "code-value-string=note").error.is_ok());
}

TEST_CASE("_text searches the narrative and _list the items of a List", "[search]") {
  Server s;
  load_basic(s);
  REQUIRE(s.put(R"({"resourceType":"Condition","id":"n1","subject":{"reference":"Patient/a"},)"
                R"("text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Asthme <b>sévère</b> &amp; allergie</p></div>"}})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Condition","id":"n2","subject":{"reference":"Patient/b"},)"
                R"("text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Fracture</div>"}})") == 201);
  CHECK(ids(s.search("Condition", "_text=severe")) == std::vector<std::string>{"n1"});
  CHECK(ids(s.search("Condition", "_text=asthme severe")) == std::vector<std::string>{"n1"});
  CHECK(ids(s.search("Condition", "_text=%26%20allergie")) == std::vector<std::string>{"n1"});
  CHECK(id_set(s.search("Condition", "_text=fracture,allergie")) == std::set<std::string>{"n1", "n2"});
  CHECK(ids(s.search("Condition", "_text=div")).empty());  // markup is not text

  REQUIRE(s.put(R"({"resourceType":"List","id":"l1","status":"current","mode":"working",)"
                R"("entry":[{"item":{"reference":"Patient/a"}},{"item":{"reference":"Patient/c"}},{"item":{"reference":"Condition/n2"}}]})") == 201);
  CHECK(id_set(s.search("Patient", "_list=l1")) == std::set<std::string>{"a", "c"});
  CHECK(id_set(s.search("Condition", "_list=l1")) == std::set<std::string>{"n2"});
  CHECK(ids(s.search("Patient", "_list=nolist")).empty());
}

TEST_CASE("date prefixes ap, sa and eb; _count=0 gives the total only", "[search]") {
  Server s;
  REQUIRE(s.put(R"({"resourceType":"Patient","id":"old","birthDate":"1900-06-01"})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Patient","id":"mid","birthDate":"1990-06-01"})") == 201);
  REQUIRE(s.put(R"({"resourceType":"Patient","id":"new","birthDate":"2020-06-01"})") == 201);
  // ap: within 10% of the distance from now (about 3.6 years around 1990).
  CHECK(ids(s.search("Patient", "birthdate=ap1992-01-01")) == std::vector<std::string>{"mid"});
  CHECK(ids(s.search("Patient", "birthdate=ap2000-01-01")).empty());
  CHECK(id_set(s.search("Patient", "birthdate=sa1990-06-01")) == std::set<std::string>{"new"});
  CHECK(id_set(s.search("Patient", "birthdate=eb1990-06-01")) == std::set<std::string>{"old"});
  CHECK(id_set(s.search("Patient", "birthdate=ne1990-06-01")) == std::set<std::string>{"old", "new"});
  CHECK_FALSE(s.search("Patient", "birthdate=ne1990,ne2020").error.is_ok());  // said, not misread
  auto count = parse(s.search("Patient", "_count=0").json);
  CHECK(count["total"].GetInt64() == 3);
  CHECK_FALSE(count.HasMember("entry"));
  CHECK_FALSE(s.search("Patient", "_sort=a,b,c,d,e,f,g,h,i").error.is_ok());
}

TEST_CASE("malformed searches are refused with an error naming the parameter, never a crash", "[search]") {
  Server s;
  load_basic(s);
  const char* bad[] = {
      "_sort=-", "_sort=", "=x", "_has:Observation=x", "_has::::=x", "_has:Observation:subject=x",
      "birthdate=ge", "birthdate=gt2024-02-30T25:00Z", "value-quantity=1e400", "identifier=a|b|c",
      "organization=Patient/", "organization=Organization/a/b/c", "_include=Patient", "_include=:",
      "_include=Patient:organization:Nope", "_revinclude=Observation:code", "_count=99999999999999999999",
      "_type=Patient", "_list=", "_text=", "general-practitioner.name.family=x", "family.name=x",
      "organization:Organization.partof:Organization.partof:Organization.partof:Organization.name=x",
      "_has:Observation:subject:_has:Observation:subject:_has:Observation:subject:_has:Observation:subject:status=x",
      "_summary=maybe", "_total=all", "_contained=true", "gender:in=http://x", "birthdate:missing=maybe",
      "family:exact="};
  for (const char* q : bad) {
    INFO(q);
    auto r = s.search("Patient", q);
    CHECK_FALSE(r.error.is_ok());
    CHECK(r.error.category() == espace::fhir::ErrorCategory::Invalid);
    CHECK_FALSE(r.error.message().empty());
    // Lenient handling never fails on them: each is ignored and reported.
    auto lenient = s.search("Patient", q, true);
    CHECK(lenient.error.is_ok());
  }
  CHECK(ids(s.search("Patient", "name=%00")).empty());  // odd but harmless: matches nothing
  std::string many = "_id=";
  for (int i = 0; i < 500; ++i) many += "x" + std::to_string(i) + ",";
  CHECK_FALSE(s.search("Patient", many).error.is_ok());
  CHECK(s.search("Patient", "family=" + std::string(3000, 'a')).error.category() ==
        espace::fhir::ErrorCategory::Invalid);
}

TEST_CASE("a search names its own patients: confined_to_compartments", "[search][compartment]") {
  using espace::interactions::confined_to_compartments;
  namespace s = espace::interactions::search;
  s::ParseContext ctx;
  ctx.registry = &Registry::get(defs());
  ctx.defs = &defs();
  auto query = [&](const std::string& type, std::vector<std::pair<std::string, std::string>> params) {
    s::ParsedSearch parsed;
    auto st = s::parse_search(ctx, type, params, &parsed);
    INFO(st.message());
    REQUIRE(st.is_ok());
    return parsed.query;
  };
  const std::vector<std::string> reachable{"a", "b"};
  auto confined = [&](const std::string& type, std::vector<std::pair<std::string, std::string>> params) {
    return confined_to_compartments(defs(), "Patient", reachable, query(type, std::move(params)));
  };
  // patient = subject.where(resolve() is Patient): a bare id names a Patient.
  CHECK(confined("DocumentReference", {{"patient", "a"}, {"type", "http://loinc.org|11488-4"}}));
  CHECK(confined("Observation", {{"patient", "Patient/b"}}));
  CHECK(confined("DocumentReference", {{"patient", "a,b"}}));
  // The linking parameters themselves, typed.
  CHECK(confined("DocumentReference", {{"subject", "Patient/a"}}));
  CHECK(confined("DocumentReference", {{"author", "Patient/a"}}));
  CHECK(confined("Observation", {{"subject:Patient", "a"}}));
  // A bare id through a linking parameter may name a Group or a Device with that id.
  CHECK_FALSE(confined("DocumentReference", {{"subject", "a"}}));
  // Anyone outside the reachable ones, a negation, or no patient at all: the condition stays.
  CHECK_FALSE(confined("DocumentReference", {{"patient", "c"}}));
  CHECK_FALSE(confined("DocumentReference", {{"patient", "a,c"}}));
  {
    espace::storage::SearchQuery negated = query("DocumentReference", {{"patient", "a"}});
    REQUIRE(negated.all_of.size() == 1);
    negated.all_of[0].negate = true;
    CHECK_FALSE(confined_to_compartments(defs(), "Patient", reachable, negated));
  }
  CHECK_FALSE(confined("DocumentReference", {{"type", "http://loinc.org|11488-4"}}));
  CHECK_FALSE(confined("DocumentReference", {{"subject", "Group/a"}}));
  // Parameters that are not the compartment's links (Observation.performer is a link; focus is not).
  CHECK_FALSE(confined("Observation", {{"focus", "Patient/a"}}));
  CHECK(confined("Observation", {{"performer", "Patient/a"}}));
  // The Patient type itself is linked by id, not by a reference.
  CHECK_FALSE(confined("Patient", {{"_id", "a"}}));
  CHECK_FALSE(confined_to_compartments(defs(), "Patient", {}, query("Observation", {{"patient", "a"}})));
}
