// The French vaccination schedule (server/interactions/data/vaccination-schedule.json)
// evaluated on the cases of test-data/vaccination/cases.json, and the
// organised-screening reminders on test-data/vaccination/screening-cases.json.
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "../../../server/interactions/src/vaccination/schedule.h"
#include "../../../server/interactions/src/vaccination/screening.h"
#include "espace/fhir/read_file.h"

using namespace espace::interactions::vaccination;

namespace {

std::string member_string(const rapidjson::Value& o, const char* key) {
  auto it = o.FindMember(key);
  return it != o.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
}

int64_t date_of(const std::string& text) {
  int64_t day = 0;
  REQUIRE(parse_date(text, &day));
  return day;
}

const Schedule& schedule() {
  const Schedule* s = nullptr;
  espace::fhir::Status st = Schedule::get(&s);
  INFO(st.message());
  REQUIRE(st.is_ok());
  return *s;
}

void load_json(const char* relative, rapidjson::Document* doc) {
  std::string text;
  std::string path = std::string(ESPACE_SOURCE_DIR) + "/" + relative;
  REQUIRE(espace::fhir::read_file(path, &text));
  doc->Parse(text.c_str());
  REQUIRE_FALSE(doc->HasParseError());
}

std::string describe(const std::vector<Line>& lines) {
  std::string out;
  for (const Line& l : lines) {
    out += l.group->key + ": " + l.status + " " + l.rule_id + " dose " + std::to_string(l.dose_number);
    if (l.due) out += " due " + format_date(*l.due);
    if (l.overdue_after) out += " latest " + format_date(*l.overdue_after);
    out += "\n";
  }
  return out;
}

}  // namespace

TEST_CASE("civil dates round-trip and ages move the calendar", "[vaccination]") {
  for (int64_t day : {-719468LL, -1LL, 0LL, 59LL, 11016LL, 20000LL, 2932896LL})
    CHECK(day_number(civil_date(day)) == day);
  CHECK(format_date(0) == "1970-01-01");
  CHECK(date_of("2000-03-01") - date_of("2000-02-28") == 2);  // 2000 is a leap year
  CHECK(date_of("1900-03-01") - date_of("1900-02-28") == 1);  // 1900 is not
  Age a;
  REQUIRE(parse_age("11y6m", &a));
  CHECK(format_date(add_age(date_of("2010-08-31"), a)) == "2022-02-28");  // clamped to the month's end
  REQUIRE(parse_age("6w", &a));
  CHECK(add_age(date_of("2026-01-01"), a) == date_of("2026-02-12"));
  CHECK_FALSE(parse_age("", &a));
  CHECK_FALSE(parse_age("11", &a));
  CHECK_FALSE(parse_age("3x", &a));
  CHECK_FALSE(parse_age("y", &a));
  int64_t day = 0;
  CHECK_FALSE(parse_date("2026-02-30", &day));
  CHECK_FALSE(parse_date("2026-13-01", &day));
  CHECK_FALSE(parse_date("26-01-01", &day));
  CHECK_FALSE(parse_date("2026-01", &day));
  REQUIRE(parse_date("2026-01", &day, true));
  CHECK(format_date(day) == "2026-01-01");
  REQUIRE(parse_date("2026-01-05T10:00:00+01:00", &day));
  CHECK(format_date(day) == "2026-01-05");
  CHECK_FALSE(parse_date("2026-01-05x", &day));
}

TEST_CASE("the schedule file names known diseases and vaccines, and bad files are refused", "[vaccination]") {
  const Schedule& s = schedule();
  CHECK(s.source.find("2025") != std::string::npos);
  for (const char* key : {"dtp", "pertussis", "hib", "hepatitis-b", "pneumococcus", "meningococcus-b",
                          "meningococcus-acwy", "mmr", "rotavirus", "hpv", "influenza", "covid-19", "zoster", "bcg"})
    CHECK(s.group(key) != nullptr);
  CHECK(s.group("bcg")->risk_groups_only);

  // A hexavalent dose counts for six diseases; a target disease alone for one.
  std::vector<std::string> hexa = s.dose_diseases({{"http://www.whocc.no/atc", "J07CA09"}}, {});
  CHECK(hexa.size() == 6);
  std::vector<std::string> flu = s.dose_diseases({{"urn:oid:unknown", "X"}}, {{"http://snomed.info/sct", "6142004"}});
  REQUIRE(flu.size() == 1);
  CHECK(flu.front() == "influenza");
  CHECK(s.dose_diseases({}, {{"http://snomed.info/sct", "000"}}).empty());

  Schedule out;
  CHECK(Schedule::parse("{", &out).category() == espace::fhir::ErrorCategory::Internal);
  const char* header =
      R"({"ruleSystem":"r","groupSystem":"g","diseaseSystem":"d","diseases":[{"key":"x"}],"vaccines":[],"groups":[)";
  CHECK(Schedule::parse(std::string(header) + "]}", &out).is_ok());
  auto stage = [&](const char* group_body) { return Schedule::parse(std::string(header) + group_body + "]}", &out); };
  CHECK_FALSE(stage(R"({"key":"g1","disease":"nope","stages":[]})").is_ok());
  CHECK_FALSE(stage("1").is_ok());
  CHECK_FALSE(stage(R"({"key":"g1","disease":"x","stages":[2]})").is_ok());
  CHECK_FALSE(stage(R"({"key":"g1","disease":"x","stages":[{"id":"s","countFrom":"0d","until":"2y","doses":[3]}]})").is_ok());
  espace::fhir::Status bad_age =
      stage(R"({"key":"g1","disease":"x","stages":[{"id":"s","countFrom":"0d","until":"2q","doses":[{"age":"1m","latest":"2m"}]}]})");
  CHECK_FALSE(bad_age.is_ok());
  CHECK(bad_age.message().find("until") != std::string::npos);
  CHECK_FALSE(stage(R"({"key":"g1","disease":"x","stages":[{"id":"s","countFrom":"0d","until":"2y","doses":[]}]})").is_ok());
  CHECK(stage(R"({"key":"g1","disease":"x","stages":[{"id":"s","countFrom":"0d","until":"2y","doses":[{"age":"1m","latest":"2m"}]}]})")
            .is_ok());
}

TEST_CASE("schedule cases (test-data/vaccination/cases.json)", "[vaccination]") {
  const Schedule& s = schedule();
  rapidjson::Document doc;
  load_json("test-data/vaccination/cases.json", &doc);
  const rapidjson::Value& cases = doc["cases"];
  REQUIRE(cases.Size() >= 40);
  int expectations = 0;
  for (const rapidjson::Value& c : cases.GetArray()) {
    std::string name = member_string(c, "name");
    PatientFacts patient;
    patient.birth = date_of(member_string(c, "birthDate"));
    patient.gender = member_string(c, "gender");
    std::vector<DoseFact> doses;
    int n = 0;
    if (c.HasMember("doses")) {
      for (const rapidjson::Value& d : c["doses"].GetArray()) {
        DoseFact f;
        f.id = "dose-" + std::to_string(++n);
        f.day = date_of(member_string(d, "date"));
        std::vector<std::pair<std::string, std::string>> vaccine, target;
        if (d.HasMember("vaccine")) vaccine.emplace_back("http://www.whocc.no/atc", member_string(d, "vaccine"));
        if (d.HasMember("targetDisease")) target.emplace_back("http://snomed.info/sct", member_string(d, "targetDisease"));
        f.diseases = s.dose_diseases(vaccine, target);
        REQUIRE_FALSE(f.diseases.empty());
        doses.push_back(std::move(f));
      }
    }
    std::vector<Line> lines = evaluate(s, patient, doses, date_of(member_string(c, "date")));
    INFO("case: " << name << "\nlines:\n" << describe(lines));
    auto find = [&](const std::string& group) -> const Line* {
      for (const Line& l : lines)
        if (l.group->key == group) return &l;
      return nullptr;
    };
    for (const rapidjson::Value& e : c["expect"].GetArray()) {
      std::string group = member_string(e, "group");
      INFO("group " << group);
      const Line* line = find(group);
      REQUIRE(line != nullptr);
      CHECK(line->status == member_string(e, "status"));
      if (e.HasMember("rule")) CHECK(line->rule_id == member_string(e, "rule"));
      if (e.HasMember("dose")) CHECK(line->dose_number == e["dose"].GetInt());
      if (e.HasMember("due")) {
        REQUIRE(line->due);
        CHECK(format_date(*line->due) == member_string(e, "due"));
      }
      if (e.HasMember("latest")) {
        REQUIRE(line->overdue_after);
        CHECK(format_date(*line->overdue_after) == member_string(e, "latest"));
      }
      if (e.HasMember("supporting")) CHECK(static_cast<int>(line->supporting.size()) == e["supporting"].GetInt());
      ++expectations;
    }
    if (c.HasMember("absent"))
      for (const rapidjson::Value& a : c["absent"].GetArray()) {
        INFO("group expected absent: " << a.GetString());
        CHECK(find(a.GetString()) == nullptr);
        ++expectations;
      }
    // Risk-group-only vaccines never give a line.
    CHECK(find("bcg") == nullptr);
  }
  CHECK(expectations >= 120);
}

TEST_CASE("screening reminder cases (test-data/vaccination/screening-cases.json)", "[vaccination]") {
  const ScreeningRules* rules = nullptr;
  REQUIRE(ScreeningRules::get(&rules).is_ok());
  rapidjson::Document doc;
  load_json("test-data/vaccination/screening-cases.json", &doc);
  for (const rapidjson::Value& c : doc["cases"].GetArray()) {
    PatientFacts patient;
    patient.birth = date_of(member_string(c, "birthDate"));
    patient.gender = member_string(c, "gender");
    std::vector<ScreeningTest> tests;
    if (c.HasMember("tests"))
      for (const rapidjson::Value& t : c["tests"].GetArray())
        tests.push_back({date_of(member_string(t, "date")), {{member_string(t, "system"), member_string(t, "code")}}});
    std::vector<ScreeningReminder> got = screening_reminders(*rules, patient, tests, date_of(member_string(c, "date")));
    std::string seen;
    for (const ScreeningReminder& r : got) seen += r.programme->id + " " + r.status + " " + format_date(r.due) + "\n";
    INFO("case: " << member_string(c, "name") << "\nreminders:\n" << seen);
    const rapidjson::Value& expect = c["expect"];
    REQUIRE(got.size() == expect.Size());
    for (rapidjson::SizeType i = 0; i < expect.Size(); ++i) {
      CHECK(got[i].programme->id == member_string(expect[i], "programme"));
      CHECK(got[i].status == member_string(expect[i], "status"));
      CHECK(format_date(got[i].due) == member_string(expect[i], "due"));
    }
  }
}
