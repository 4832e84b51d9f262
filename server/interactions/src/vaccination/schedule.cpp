// Loading and evaluating the vaccination schedule (schedule.h). The rules the
// evaluation follows are written down in the data file's "notes".
#include "schedule.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <tuple>

#include "espace/fhir/data_files.h"

namespace espace::interactions::vaccination {

using fhir::ErrorCategory;
using fhir::Status;

namespace {

bool is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(int y, int m) {
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : kDays[m - 1];
}

// Whole 400-year eras keep the arithmetic exact for any year.
constexpr int64_t kDaysPer400Years = 146097;

}  // namespace

int64_t day_number(const CivilDate& d) {
  // Count from 0000-03-01 so that the leap day falls at the end of a year.
  int64_t y = d.year - (d.month <= 2 ? 1 : 0);
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t year_of_era = y - era * 400;
  int64_t shifted_month = d.month > 2 ? d.month - 3 : d.month + 9;
  int64_t day_of_year = (153 * shifted_month + 2) / 5 + d.day - 1;
  int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * kDaysPer400Years + day_of_era - 719468;  // 719468: days from 0000-03-01 to 1970-01-01
}

CivilDate civil_date(int64_t day) {
  int64_t z = day + 719468;
  int64_t era = (z >= 0 ? z : z - kDaysPer400Years + 1) / kDaysPer400Years;
  int64_t day_of_era = z - era * kDaysPer400Years;
  int64_t year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  int64_t shifted_month = (5 * day_of_year + 2) / 153;
  CivilDate d;
  d.day = static_cast<int>(day_of_year - (153 * shifted_month + 2) / 5 + 1);
  d.month = static_cast<int>(shifted_month < 10 ? shifted_month + 3 : shifted_month - 9);
  d.year = static_cast<int>(year_of_era + era * 400 + (d.month <= 2 ? 1 : 0));
  return d;
}

namespace {

bool digits(std::string_view s, size_t at, size_t n, int* out) {
  if (s.size() < at + n) return false;
  int v = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

}  // namespace

bool parse_date(std::string_view text, int64_t* day, bool allow_partial) {
  CivilDate d;
  if (!digits(text, 0, 4, &d.year) || d.year < 1) return false;
  if (text.size() == 4) {
    if (!allow_partial) return false;
    *day = day_number(d);
    return true;
  }
  if (text[4] != '-' || !digits(text, 5, 2, &d.month) || d.month < 1 || d.month > 12) return false;
  if (text.size() == 7) {
    if (!allow_partial) return false;
    *day = day_number(d);
    return true;
  }
  if (text.size() < 10 || text[7] != '-' || !digits(text, 8, 2, &d.day) || d.day < 1 ||
      d.day > days_in_month(d.year, d.month))
    return false;
  if (text.size() > 10 && text[10] != 'T') return false;
  *day = day_number(d);
  return true;
}

std::string format_date(int64_t day) {
  CivilDate d = civil_date(day);
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", d.year, d.month, d.day);
  return buf;
}

bool parse_age(std::string_view text, Age* out) {
  Age a;
  if (text.empty()) return false;
  size_t i = 0;
  while (i < text.size()) {
    int n = 0;
    size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      n = n * 10 + (text[i] - '0');
      if (n > 100000) return false;
      ++i;
    }
    if (i == start || i == text.size()) return false;
    switch (text[i]) {
      case 'y': a.years += n; break;
      case 'm': a.months += n; break;
      case 'w': a.days += 7 * n; break;
      case 'd': a.days += n; break;
      default: return false;
    }
    ++i;
  }
  *out = a;
  return true;
}

int64_t add_age(int64_t day, const Age& age) {
  CivilDate d = civil_date(day);
  int64_t months = static_cast<int64_t>(d.year) * 12 + (d.month - 1) + age.years * 12LL + age.months;
  d.year = static_cast<int>(months / 12);
  d.month = static_cast<int>(months % 12) + 1;
  d.day = std::min(d.day, days_in_month(d.year, d.month));
  return day_number(d) + age.days;
}

// ---- parsing the data file ----

namespace {

using Value = rapidjson::Value;

Status bad(const std::string& where, const std::string& what) {
  return Status::error(ErrorCategory::Internal, "exception", "vaccination schedule: " + where + ": " + what);
}

std::string str(const Value& o, const char* key) {
  if (!o.IsObject()) return {};
  auto it = o.FindMember(key);
  return it != o.MemberEnd() && it->value.IsString() ? std::string(it->value.GetString(), it->value.GetStringLength())
                                                     : std::string();
}

std::vector<std::string> strings(const Value& o, const char* key) {
  std::vector<std::string> out;
  if (!o.IsObject()) return out;
  auto it = o.FindMember(key);
  if (it == o.MemberEnd() || !it->value.IsArray()) return out;
  for (const Value& v : it->value.GetArray())
    if (v.IsString()) out.emplace_back(v.GetString(), v.GetStringLength());
  return out;
}

Status age_field(const Value& o, const char* key, const std::string& where, Age* out, bool required = true) {
  std::string text = str(o, key);
  if (text.empty()) return required ? bad(where, std::string("missing age '") + key + "'") : Status::ok();
  if (!parse_age(text, out)) return bad(where, std::string("malformed age '") + key + "': " + text);
  return Status::ok();
}

Status optional_age(const Value& o, const char* key, const std::string& where, std::optional<Age>* out) {
  if (str(o, key).empty()) return Status::ok();
  Age a;
  if (Status s = age_field(o, key, where, &a); !s) return s;
  *out = a;
  return Status::ok();
}

bool month_day(const std::string& text, int* month, int* day) {
  if (text.size() != 5 || text[2] != '-') return false;
  if (!digits(text, 0, 2, month) || !digits(text, 3, 2, day)) return false;
  return *month >= 1 && *month <= 12 && *day >= 1 && *day <= days_in_month(2001, *month);
}

Status parse_stage(const Value& v, const std::string& group_key, Stage* st) {
  if (!v.IsObject()) return bad("group " + group_key, "a stage is not an object");
  st->id = str(v, "id");
  std::string where = "group " + group_key + ", stage " + st->id;
  if (st->id.empty()) return bad("group " + group_key, "a stage without id");
  st->display = str(v, "display");
  st->vaccine = str(v, "vaccine");
  if (Status s = age_field(v, "countFrom", where, &st->count_from); !s) return s;
  if (Status s = age_field(v, "until", where, &st->until); !s) return s;
  if (Status s = optional_age(v, "schemeStartBefore", where, &st->scheme_start_before); !s) return s;
  if (Status s = optional_age(v, "schemeStartFrom", where, &st->scheme_start_from); !s) return s;
  st->alternative_to = str(v, "alternativeTo");
  st->sexes = strings(v, "sexes");
  if (std::string born = str(v, "bornOnOrAfter"); !born.empty()) {
    int64_t day = 0;
    if (!parse_date(born, &day)) return bad(where, "malformed bornOnOrAfter " + born);
    st->born_on_or_after = day;
  }
  auto doses = v.FindMember("doses");
  if (doses == v.MemberEnd() || !doses->value.IsArray() || doses->value.Empty()) return bad(where, "no doses");
  for (const Value& d : doses->value.GetArray()) {
    if (!d.IsObject()) return bad(where, "a dose is not an object");
    DoseRule r;
    std::string dose_where = where + ", dose " + std::to_string(st->doses.size() + 1);
    if (Status s = age_field(d, "age", dose_where, &r.age); !s) return s;
    if (Status s = age_field(d, "latest", dose_where, &r.latest); !s) return s;
    if (Status s = optional_age(d, "minInterval", dose_where, &r.min_interval); !s) return s;
    st->doses.push_back(r);
  }
  return Status::ok();
}

Status parse_group(const Value& v, const Schedule& schedule, Group* g) {
  if (!v.IsObject()) return bad("groups", "a group is not an object");
  g->key = str(v, "key");
  if (g->key.empty()) return bad("groups", "a group without key");
  std::string where = "group " + g->key;
  g->display = str(v, "display");
  g->disease = str(v, "disease");
  g->target_diseases = strings(v, "targetDiseases");
  g->vaccine = str(v, "vaccine");
  auto risk = v.FindMember("riskGroupsOnly");
  g->risk_groups_only = risk != v.MemberEnd() && risk->value.IsBool() && risk->value.GetBool();
  if (!schedule.disease(g->disease)) return bad(where, "unknown disease '" + g->disease + "'");
  for (const std::string& k : g->target_diseases)
    if (!schedule.disease(k)) return bad(where, "unknown target disease '" + k + "'");
  if (!g->vaccine.empty() && !schedule.vaccine(g->vaccine)) return bad(where, "unknown vaccine " + g->vaccine);
  if (auto stages = v.FindMember("stages"); stages != v.MemberEnd() && stages->value.IsArray()) {
    for (const Value& s : stages->value.GetArray()) {
      Stage st;
      if (Status r = parse_stage(s, g->key, &st); !r) return r;
      if (!st.vaccine.empty() && !schedule.vaccine(st.vaccine))
        return bad(where + ", stage " + st.id, "unknown vaccine " + st.vaccine);
      g->stages.push_back(std::move(st));
    }
  }
  if (auto seasonal = v.FindMember("seasonal"); seasonal != v.MemberEnd() && seasonal->value.IsObject()) {
    const Value& s = seasonal->value;
    Seasonal se;
    se.id = str(s, "id");
    se.display = str(s, "display");
    if (se.id.empty()) return bad(where, "a seasonal rule without id");
    if (Status r = age_field(s, "from", where, &se.from); !r) return r;
    if (!month_day(str(s, "campaignStart"), &se.start_month, &se.start_day) ||
        !month_day(str(s, "campaignEnd"), &se.end_month, &se.end_day))
      return bad(where, "campaignStart and campaignEnd must be MM-DD");
    auto early = s.FindMember("earlyDays");
    if (early != s.MemberEnd() && early->value.IsInt() && early->value.GetInt() >= 0) se.early_days = early->value.GetInt();
    g->seasonal = se;
  }
  if (!g->risk_groups_only && g->stages.empty() && !g->seasonal) return bad(where, "no stages");
  return Status::ok();
}

}  // namespace

Status Schedule::parse(std::string_view json, Schedule* out) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError())
    return bad("JSON", std::string(rapidjson::GetParseError_En(doc.GetParseError())) + " at offset " +
                           std::to_string(doc.GetErrorOffset()));
  if (!doc.IsObject()) return bad("JSON", "not an object");
  Schedule s;
  s.source = str(doc, "source");
  s.rule_system = str(doc, "ruleSystem");
  s.group_system = str(doc, "groupSystem");
  s.disease_system = str(doc, "diseaseSystem");
  if (s.rule_system.empty() || s.group_system.empty() || s.disease_system.empty())
    return bad("header", "ruleSystem, groupSystem and diseaseSystem are required");
  if (auto h = doc.FindMember("forecastHorizonDays"); h != doc.MemberEnd() && h->value.IsInt()) s.horizon_days = h->value.GetInt();
  if (auto g = doc.FindMember("graceDays"); g != doc.MemberEnd() && g->value.IsInt()) s.grace_days = g->value.GetInt();
  if (auto d = doc.FindMember("diseases"); d != doc.MemberEnd() && d->value.IsArray())
    for (const Value& v : d->value.GetArray()) {
      if (str(v, "key").empty()) return bad("diseases", "a disease without key");
      s.diseases.push_back({str(v, "key"), str(v, "display"), str(v, "snomed")});
    }
  if (auto d = doc.FindMember("vaccines"); d != doc.MemberEnd() && d->value.IsArray()) {
    for (const Value& v : d->value.GetArray()) {
      Vaccine vac{str(v, "atc"), str(v, "display"), strings(v, "diseases")};
      for (const std::string& k : vac.diseases)
        if (!s.disease(k)) return bad("vaccine " + vac.atc, "unknown disease '" + k + "'");
      s.vaccines.push_back(std::move(vac));
    }
  }
  auto groups = doc.FindMember("groups");
  if (groups == doc.MemberEnd() || !groups->value.IsArray()) return bad("header", "no groups");
  for (const Value& v : groups->value.GetArray()) {
    Group g;
    if (Status r = parse_group(v, s, &g); !r) return r;
    if (s.group(g.key)) return bad("group " + g.key, "defined twice");
    s.groups.push_back(std::move(g));
  }
  *out = std::move(s);
  return Status::ok();
}

Status Schedule::get(const Schedule** out) {
  return fhir::load_once<Schedule>(
      [](Schedule* s) {
        std::string text;
        if (Status r = fhir::read_data_file("server/interactions/data/vaccination-schedule.json", &text); !r) return r;
        return parse(text, s);
      },
      out);
}

const Disease* Schedule::disease(std::string_view key) const {
  for (const Disease& d : diseases)
    if (d.key == key) return &d;
  return nullptr;
}

const Vaccine* Schedule::vaccine(std::string_view atc) const {
  for (const Vaccine& v : vaccines)
    if (v.atc == atc) return &v;
  return nullptr;
}

const Group* Schedule::group(std::string_view key) const {
  for (const Group& g : groups)
    if (g.key == key) return &g;
  return nullptr;
}

std::vector<std::string> Schedule::dose_diseases(
    const std::vector<std::pair<std::string, std::string>>& vaccine_codes,
    const std::vector<std::pair<std::string, std::string>>& target_diseases) const {
  std::vector<std::string> out;
  // The vaccine code is the more precise source (meningococcal B and ACWY
  // share one SNOMED CT disease code).
  for (const auto& [system, code] : vaccine_codes)
    if (const Vaccine* v = vaccine(code)) return v->diseases;
  for (const auto& [system, code] : target_diseases) {
    for (const Disease& d : diseases) {
      bool match = (system == "http://snomed.info/sct" && !d.snomed.empty() && d.snomed == code) ||
                   (system == disease_system && d.key == code);
      if (match && std::find(out.begin(), out.end(), d.key) == out.end()) out.push_back(d.key);
    }
  }
  return out;
}

// ---- evaluation ----

namespace {

struct GroupDose {
  const DoseFact* fact;
  bool taken = false;
};

// The campaign [start, end] of the season beginning in `year`.
std::pair<int64_t, int64_t> campaign(const Seasonal& s, int year) {
  int end_year = (s.end_month < s.start_month || (s.end_month == s.start_month && s.end_day < s.start_day)) ? year + 1
                                                                                                          : year;
  return {day_number({year, s.start_month, s.start_day}), day_number({end_year, s.end_month, s.end_day})};
}

std::optional<Line> evaluate_seasonal(const Group& g, const Seasonal& s, const PatientFacts& p,
                                      const std::vector<GroupDose>& doses, int64_t today) {
  // The campaign under way, else the next one: outside a campaign the line
  // forecasts the next.
  int year = civil_date(today).year;
  auto [start, end] = campaign(s, year - 1);
  if (today > end) {
    std::tie(start, end) = campaign(s, year);
    if (today > end) std::tie(start, end) = campaign(s, year + 1);
  }
  int64_t eligible_from = add_age(p.birth, s.from);
  if (eligible_from > end) return std::nullopt;
  Line line;
  line.group = &g;
  line.rule_id = s.id;
  line.rule_display = s.display;
  line.vaccine = g.vaccine;
  line.series_doses = 1;
  line.dose_number = 1;
  for (const GroupDose& d : doses)
    if (d.fact->day >= start - s.early_days && d.fact->day <= std::min(end, today))
      line.supporting = {d.fact->id};  // the latest dose of the campaign
  if (!line.supporting.empty()) {
    line.status = "complete";
    return line;
  }
  line.status = "due";
  line.due = std::max(start, eligible_from);
  line.overdue_after = end;
  return line;
}

bool stage_conditions_hold(const Stage& st, const PatientFacts& p) {
  if (st.born_on_or_after && p.birth < *st.born_on_or_after) return false;
  if (!st.sexes.empty() && std::find(st.sexes.begin(), st.sexes.end(), p.gender) == st.sexes.end()) return false;
  return true;
}

// The latest dose taken so far on or before `day` (min intervals run from it).
std::optional<int64_t> previous_taken(const std::vector<GroupDose>& doses, int64_t day, const DoseFact* self) {
  std::optional<int64_t> prev;
  for (const GroupDose& d : doses)
    if (d.taken && d.fact != self && d.fact->day <= day && (!prev || d.fact->day > *prev)) prev = d.fact->day;
  return prev;
}

std::optional<Line> evaluate_stages(const Schedule& schedule, const Group& g, const PatientFacts& p,
                                    std::vector<GroupDose>& doses, int64_t today) {
  std::vector<std::string> applied;  // stages whose conditions and scheme held
  const Stage* last_complete = nullptr;
  std::vector<std::string> last_complete_doses;
  std::optional<int64_t> next_due;
  for (const Stage& st : g.stages) {
    if (!stage_conditions_hold(st, p)) continue;
    if (!st.alternative_to.empty() &&
        std::find(applied.begin(), applied.end(), st.alternative_to) != applied.end())
      continue;
    int64_t lo = add_age(p.birth, st.count_from), hi = add_age(p.birth, st.until);
    // Alternative schemes are chosen by the age at the first dose they would count.
    if (st.scheme_start_before || st.scheme_start_from) {
      int64_t scheme_start = today;
      for (const GroupDose& d : doses)
        if (!d.taken && d.fact->day >= lo && d.fact->day < hi) {
          scheme_start = d.fact->day;
          break;
        }
      if (st.scheme_start_before && scheme_start >= add_age(p.birth, *st.scheme_start_before)) continue;
      if (st.scheme_start_from && scheme_start < add_age(p.birth, *st.scheme_start_from)) continue;
    }
    applied.push_back(st.id);
    std::vector<std::string> counted;
    for (GroupDose& d : doses) {
      if (counted.size() == st.doses.size()) break;
      if (d.taken || d.fact->day < lo || d.fact->day >= hi) continue;
      const DoseRule& rule = st.doses[counted.size()];
      if (rule.min_interval) {
        std::optional<int64_t> prev = previous_taken(doses, d.fact->day, d.fact);
        if (prev && d.fact->day < add_age(*prev, *rule.min_interval)) continue;  // too soon: not a valid dose
      }
      d.taken = true;
      counted.push_back(d.fact->id);
    }
    if (counted.size() == st.doses.size()) {
      last_complete = &st;
      last_complete_doses = counted;
      continue;
    }
    if (today >= hi) continue;  // closed before completion: no longer recommended
    const DoseRule& rule = st.doses[counted.size()];
    int64_t due = add_age(p.birth, rule.age);
    if (rule.min_interval)
      if (std::optional<int64_t> prev = previous_taken(doses, INT64_MAX, nullptr))
        due = std::max(due, add_age(*prev, *rule.min_interval));
    if (due >= hi) continue;  // cannot be given in time any more
    // A series not started yet is announced within the horizon; one under
    // way always shows its next dose.
    if (counted.empty() && due > today + schedule.horizon_days) {
      next_due = due;
      break;
    }
    Line line;
    line.group = &g;
    line.rule_id = st.id;
    line.rule_display = st.display;
    line.vaccine = st.vaccine.empty() ? g.vaccine : st.vaccine;
    line.dose_number = static_cast<int>(counted.size()) + 1;
    line.series_doses = static_cast<int>(st.doses.size());
    line.due = due;
    line.overdue_after = std::max(add_age(p.birth, rule.latest), due + schedule.grace_days);
    line.status = today > *line.overdue_after ? "overdue" : "due";
    line.supporting = std::move(counted);
    return line;
  }
  if (!last_complete) return std::nullopt;  // not concerned yet, or nothing recommended any more
  Line line;
  line.group = &g;
  line.status = "complete";
  line.rule_id = last_complete->id;
  line.rule_display = last_complete->display;
  line.vaccine = last_complete->vaccine.empty() ? g.vaccine : last_complete->vaccine;
  line.dose_number = line.series_doses = static_cast<int>(last_complete->doses.size());
  line.due = next_due;
  line.supporting = std::move(last_complete_doses);
  return line;
}

}  // namespace

std::vector<Line> evaluate(const Schedule& schedule, const PatientFacts& patient, const std::vector<DoseFact>& doses,
                           int64_t today) {
  std::vector<Line> lines;
  for (const Group& g : schedule.groups) {
    if (g.risk_groups_only) continue;
    std::vector<GroupDose> group_doses;
    for (const DoseFact& d : doses)
      if (d.day >= patient.birth && d.day <= today &&
          std::find(d.diseases.begin(), d.diseases.end(), g.disease) != d.diseases.end())
        group_doses.push_back({&d});
    std::stable_sort(group_doses.begin(), group_doses.end(),
                     [](const GroupDose& a, const GroupDose& b) { return a.fact->day < b.fact->day; });
    std::optional<Line> line = g.seasonal ? evaluate_seasonal(g, *g.seasonal, patient, group_doses, today)
                                          : evaluate_stages(schedule, g, patient, group_doses, today);
    if (line) lines.push_back(std::move(*line));
  }
  return lines;
}

}  // namespace espace::interactions::vaccination
