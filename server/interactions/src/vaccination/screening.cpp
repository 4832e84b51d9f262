// Organised-screening reminders (screening.h).
#include "screening.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <algorithm>

#include "espace/fhir/data_files.h"

namespace espace::interactions::vaccination {

using fhir::ErrorCategory;
using fhir::Status;

namespace {

Status bad(const std::string& where, const std::string& what) {
  return Status::error(ErrorCategory::Internal, "exception", "screening reminders: " + where + ": " + what);
}

std::string str(const rapidjson::Value& o, const char* key) {
  auto it = o.FindMember(key);
  return it != o.MemberEnd() && it->value.IsString() ? std::string(it->value.GetString(), it->value.GetStringLength())
                                                     : std::string();
}

Status age(const rapidjson::Value& o, const char* key, const std::string& where, Age* out) {
  std::string text = str(o, key);
  if (!parse_age(text, out)) return bad(where, std::string("missing or malformed age '") + key + "'");
  return Status::ok();
}

}  // namespace

Status ScreeningRules::parse(std::string_view json, ScreeningRules* out) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError())
    return bad("JSON", std::string(rapidjson::GetParseError_En(doc.GetParseError())) + " at offset " +
                           std::to_string(doc.GetErrorOffset()));
  if (!doc.IsObject()) return bad("JSON", "not an object");
  ScreeningRules r;
  r.rule_system = str(doc, "ruleSystem");
  if (r.rule_system.empty()) return bad("header", "ruleSystem is required");
  if (auto h = doc.FindMember("forecastHorizonDays"); h != doc.MemberEnd() && h->value.IsInt())
    r.horizon_days = h->value.GetInt();
  auto programmes = doc.FindMember("programmes");
  if (programmes == doc.MemberEnd() || !programmes->value.IsArray()) return bad("header", "no programmes");
  for (const rapidjson::Value& v : programmes->value.GetArray()) {
    if (!v.IsObject()) return bad("programmes", "not an object");
    ScreeningProgramme p;
    p.id = str(v, "id");
    p.display = str(v, "display");
    if (p.id.empty()) return bad("programmes", "a programme without id");
    std::string where = "programme " + p.id;
    if (Status s = age(v, "from", where, &p.from); !s) return s;
    if (Status s = age(v, "until", where, &p.until); !s) return s;
    if (Status s = age(v, "every", where, &p.every); !s) return s;
    if (auto sexes = v.FindMember("sexes"); sexes != v.MemberEnd() && sexes->value.IsArray())
      for (const rapidjson::Value& x : sexes->value.GetArray())
        if (x.IsString()) p.sexes.emplace_back(x.GetString());
    if (p.sexes.empty()) return bad(where, "no sexes");
    if (auto codes = v.FindMember("codes"); codes != v.MemberEnd() && codes->value.IsArray())
      for (const rapidjson::Value& c : codes->value.GetArray())
        if (c.IsObject()) p.codes.emplace_back(str(c, "system"), str(c, "code"));
    r.programmes.push_back(std::move(p));
  }
  *out = std::move(r);
  return Status::ok();
}

Status ScreeningRules::get(const ScreeningRules** out) {
  return fhir::load_once<ScreeningRules>(
      [](ScreeningRules* r) {
        std::string text;
        if (Status s = fhir::read_data_file("server/interactions/data/screening-reminders.json", &text); !s) return s;
        return parse(text, r);
      },
      out);
}

std::vector<ScreeningReminder> screening_reminders(const ScreeningRules& rules, const PatientFacts& patient,
                                                   const std::vector<ScreeningTest>& tests, int64_t today) {
  std::vector<ScreeningReminder> out;
  for (const ScreeningProgramme& p : rules.programmes) {
    if (std::find(p.sexes.begin(), p.sexes.end(), patient.gender) == p.sexes.end()) continue;
    int64_t from = add_age(patient.birth, p.from), until = add_age(patient.birth, p.until);
    if (today >= until) continue;
    std::optional<int64_t> last;
    for (const ScreeningTest& t : tests) {
      if (t.day > today || (last && t.day <= *last)) continue;
      bool counts = std::any_of(t.codes.begin(), t.codes.end(), [&](const Coding& c) {
        return std::find(p.codes.begin(), p.codes.end(), c) != p.codes.end();
      });
      if (counts) last = t.day;
    }
    int64_t due = last ? std::max(add_age(*last, p.every), from) : from;
    if (due >= until) continue;  // the programme ends before the next test
    ScreeningReminder r;
    r.programme = &p;
    r.due = due;
    r.last_done = last;
    if (due <= today) r.status = "due";
    else if (due <= today + rules.horizon_days) r.status = "upcoming";
    else continue;  // up to date
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace espace::interactions::vaccination
