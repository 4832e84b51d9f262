// $vaccination-booklet, $immunization-recommendation and $screening-reminders
// (vaccination_ops.h). The patient's data is read through services.store, so
// the policy guard decides what the caller sees, as for any search.
#include "vaccination_ops.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <ctime>
#include <map>

#include "../common.h"
#include "../search/query.h"
#include "schedule.h"
#include "screening.h"

namespace espace::interactions {

namespace {

using vaccination::Coding;

constexpr const char* kExtensionBase = "https://espace.example/fhir/StructureDefinition/";
constexpr const char* kReliabilitySystem = "https://espace.example/fhir/CodeSystem/vaccination-reliability";
// More records than this for one patient is not a booklet but an error in the data.
constexpr int kMaxRecords = 1000;

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void key_string(Writer& w, const char* key, const std::string& value) {
  w.Key(key);
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

void coding(Writer& w, const std::string& system, const std::string& code, const std::string& display) {
  w.StartObject();
  key_string(w, "system", system);
  key_string(w, "code", code);
  if (!display.empty()) key_string(w, "display", display);
  w.EndObject();
}

void codeable(Writer& w, const char* key, const std::string& system, const std::string& code,
              const std::string& display) {
  w.Key(key);
  w.StartObject();
  w.Key("coding");
  w.StartArray();
  coding(w, system, code, display);
  w.EndArray();
  w.EndObject();
}

void reference(Writer& w, const char* key, const std::string& ref) {
  w.Key(key);
  w.StartObject();
  key_string(w, "reference", ref);
  w.EndObject();
}

int64_t today_utc() {
  std::time_t t = std::time(nullptr);
  return static_cast<int64_t>(t) / 86400;
}

std::string str(const rapidjson::Value& o, const char* key) {
  if (!o.IsObject()) return {};
  auto it = o.FindMember(key);
  return it != o.MemberEnd() && it->value.IsString() ? std::string(it->value.GetString(), it->value.GetStringLength())
                                                     : std::string();
}

const rapidjson::Value* member(const rapidjson::Value& o, const char* key) {
  if (!o.IsObject()) return nullptr;
  auto it = o.FindMember(key);
  return it == o.MemberEnd() ? nullptr : &it->value;
}

void codings_of(const rapidjson::Value* codeable_concept, std::vector<Coding>* out) {
  if (!codeable_concept || !codeable_concept->IsObject()) return;
  const rapidjson::Value* list = member(*codeable_concept, "coding");
  if (!list || !list->IsArray()) return;
  for (const rapidjson::Value& c : list->GetArray()) out->emplace_back(str(c, "system"), str(c, "code"));
}

// The evaluation date: ?date=, or a "date" parameter of a Parameters body; today otherwise.
Status evaluation_date(const FhirRequest& req, int64_t* day) {
  std::string text;
  bool given = false;
  for (const auto& [name, value] : req.params)
    if (name == "date") text = value, given = true;
  if (req.resource && fhir::resource_type(*req.resource) == "Parameters") {
    for (const fhir::Node& p : req.resource->children) {
      if (!p.def || p.def->name != "parameter" || p.child_value("name") != "date") continue;
      text = std::string(p.child_value("value"));
      given = true;
    }
  }
  if (!given) {
    *day = today_utc();
    return Status::ok();
  }
  if (!vaccination::parse_date(text, day))
    return Status::error(ErrorCategory::Invalid, "invalid", "date must be a full date YYYY-MM-DD (got '" + text.substr(0, 40) + "')",
                         "date");
  return Status::ok();
}

// The booklet needs the patient to exist; the schedule also needs a full birth date.
Status load_patient(const Services& services, const FhirRequest& req, vaccination::PatientFacts* out,
                    bool need_birth_date = true) {
  if (req.type != "Patient" || req.id.empty())
    return Status::error(ErrorCategory::Invalid, "invalid", "$" + req.operation + " is invoked on Patient/[id]");
  storage::ResourceVersion v;
  Status s = services.store->read("Patient", req.id, &v);
  if (!s) return s;
  if (v.deleted) return Status::error(ErrorCategory::Gone, "deleted", "Patient/" + req.id + " was deleted");
  rapidjson::Document doc;
  doc.Parse(v.json.data(), v.json.size());
  if (doc.HasParseError() || !doc.IsObject())
    return Status::error(ErrorCategory::Internal, "exception", "stored Patient/" + req.id + " is not JSON");
  std::string birth = str(doc, "birthDate");
  if (!vaccination::parse_date(birth, &out->birth) && need_birth_date)
    return Status::error(ErrorCategory::Unprocessable, "business-rule",
                         "Patient/" + req.id + " has no full birthDate: the schedule needs one", "Patient.birthDate");
  out->gender = str(doc, "gender");
  return Status::ok();
}

// Current resources of `type` in the patient's records (through the guarded store).
Status patient_resources(const Services& services, const FhirRequest& req, const std::string& type,
                         std::vector<std::pair<std::string, std::string>> params,
                         std::vector<storage::ResourceVersion>* out) {
  search::ParseContext ctx;
  ctx.registry = &search::Registry::get(*services.defs);
  ctx.defs = services.defs;
  ctx.limits = services.limits;
  params.emplace_back("patient", "Patient/" + req.id);
  params.emplace_back("_count", std::to_string(kMaxRecords));
  search::ParsedSearch parsed;
  if (Status s = search::parse_search(ctx, type, params, &parsed); !s) return s;
  parsed.query.count = kMaxRecords;
  storage::SearchPage page;
  if (Status s = services.store->search(parsed.query, &page); !s) return s;
  if (page.more)
    return Status::error(ErrorCategory::Unprocessable, "too-costly",
                         "more than " + std::to_string(kMaxRecords) + " " + type + " records for this patient");
  for (auto& m : page.matches) out->push_back(std::move(m.resource));
  return Status::ok();
}

struct ImmunizationRecord {
  std::string id, status, json;
  std::optional<int64_t> day;
  std::string date_text;
  std::vector<Coding> vaccine_codes, target_diseases;
  std::optional<bool> primary_source;
  std::string report_origin;
  std::vector<std::string> diseases;  // schedule disease keys
};

Status immunizations(const Services& services, const FhirRequest& req, const vaccination::Schedule& schedule,
                     std::vector<ImmunizationRecord>* out) {
  std::vector<storage::ResourceVersion> versions;
  if (Status s = patient_resources(services, req, "Immunization", {}, &versions); !s) return s;
  for (storage::ResourceVersion& v : versions) {
    rapidjson::Document doc;
    doc.Parse(v.json.data(), v.json.size());
    if (doc.HasParseError() || !doc.IsObject()) continue;
    ImmunizationRecord r;
    r.id = v.id;
    r.status = str(doc, "status");
    r.date_text = str(doc, "occurrenceDateTime");
    int64_t day = 0;
    if (vaccination::parse_date(r.date_text, &day, true)) r.day = day;
    codings_of(member(doc, "vaccineCode"), &r.vaccine_codes);
    if (const rapidjson::Value* applied = member(doc, "protocolApplied"); applied && applied->IsArray())
      for (const rapidjson::Value& a : applied->GetArray())
        if (const rapidjson::Value* targets = member(a, "targetDisease"); targets && targets->IsArray())
          for (const rapidjson::Value& t : targets->GetArray()) codings_of(&t, &r.target_diseases);
    if (const rapidjson::Value* p = member(doc, "primarySource"); p && p->IsBool()) r.primary_source = p->GetBool();
    std::vector<Coding> origin;
    codings_of(member(doc, "reportOrigin"), &origin);
    if (!origin.empty()) r.report_origin = origin.front().second;
    r.diseases = schedule.dose_diseases(r.vaccine_codes, r.target_diseases);
    r.json = std::move(v.json);
    out->push_back(std::move(r));
  }
  return Status::ok();
}

// How far the record can be trusted: entered by a professional, declared by
// the patient from a document (record, school, provider, registry), or from memory.
std::string reliability(const ImmunizationRecord& r) {
  if (!r.primary_source) return "unknown";
  if (*r.primary_source) return "professional";
  if (r.report_origin.empty() || r.report_origin == "recall") return "declared";
  return "declared-documented";
}

FhirResponse json_response(rapidjson::StringBuffer& buf) {
  FhirResponse r;
  r.json.assign(buf.GetString(), buf.GetSize());
  return r;
}

std::string now_instant() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

FhirResponse vaccination_booklet_operation(const Services& services, const FhirRequest& req) {
  const vaccination::Schedule* schedule = nullptr;
  if (Status s = vaccination::Schedule::get(&schedule); !s) return error_response(std::move(s));
  vaccination::PatientFacts patient;
  if (Status s = load_patient(services, req, &patient, false); !s) return error_response(std::move(s));
  std::vector<ImmunizationRecord> records;
  if (Status s = immunizations(services, req, *schedule, &records); !s) return error_response(std::move(s));
  records.erase(std::remove_if(records.begin(), records.end(),
                               [](const ImmunizationRecord& r) { return r.status == "entered-in-error"; }),
                records.end());

  // Groups in schedule order; records the schedule cannot place go last.
  const size_t unplaced = schedule->groups.size();
  auto groups_of = [&](const ImmunizationRecord& r) {
    std::vector<size_t> out;
    for (size_t i = 0; i < schedule->groups.size(); ++i)
      if (std::find(r.diseases.begin(), r.diseases.end(), schedule->groups[i].disease) != r.diseases.end())
        out.push_back(i);
    if (out.empty()) out.push_back(unplaced);
    return out;
  };
  auto by_date = [](const ImmunizationRecord* a, const ImmunizationRecord* b) {
    int64_t da = a->day.value_or(INT64_MAX), db = b->day.value_or(INT64_MAX);
    return da != db ? da < db : a->id < b->id;
  };
  std::map<size_t, std::vector<const ImmunizationRecord*>> grouped;
  std::vector<std::pair<size_t, const ImmunizationRecord*>> ordered;
  for (const ImmunizationRecord& r : records) {
    std::vector<size_t> gs = groups_of(r);
    for (size_t g : gs) grouped[g].push_back(&r);
    ordered.emplace_back(gs.front(), &r);
  }
  for (auto& [g, list] : grouped) std::sort(list.begin(), list.end(), by_date);
  std::sort(ordered.begin(), ordered.end(), [&](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : by_date(a.second, b.second);
  });

  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  key_string(w, "resourceType", "Bundle");
  key_string(w, "type", "collection");
  key_string(w, "timestamp", now_instant());
  if (!records.empty()) {  // FHIR JSON has no empty arrays
    w.Key("entry");
    w.StartArray();
    for (const auto& [g, list] : grouped) {
      w.StartObject();
      key_string(w, "fullUrl", "urn:uuid:" + new_id());
      w.Key("resource");
      w.StartObject();
      key_string(w, "resourceType", "List");
      key_string(w, "status", "current");
      key_string(w, "mode", "snapshot");
      if (g == unplaced) {
        key_string(w, "title", "Autres vaccinations");
      } else {
        const vaccination::Group& group = schedule->groups[g];
        key_string(w, "title", group.display);
        codeable(w, "code", schedule->group_system, group.key, group.display);
      }
      reference(w, "subject", "Patient/" + req.id);
      w.Key("entry");
      w.StartArray();
      for (const ImmunizationRecord* r : list) {
        w.StartObject();
        reference(w, "item", "Immunization/" + r->id);
        w.EndObject();
      }
      w.EndArray();
      w.EndObject();
      w.EndObject();
    }
    for (const auto& [g, r] : ordered) {
      w.StartObject();
      w.Key("extension");
      w.StartArray();
      w.StartObject();
      key_string(w, "url", std::string(kExtensionBase) + "vaccination-reliability");
      w.Key("valueCoding");
      coding(w, kReliabilitySystem, reliability(*r), "");
      w.EndObject();
      w.EndArray();
      key_string(w, "fullUrl", resource_url(req.base_url, "Immunization", r->id));
      w.Key("resource");
      w.RawValue(r->json.data(), r->json.size(), rapidjson::kObjectType);
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
  return json_response(buf);
}

FhirResponse immunization_recommendation_operation(const Services& services, const FhirRequest& req) {
  const vaccination::Schedule* schedule = nullptr;
  if (Status s = vaccination::Schedule::get(&schedule); !s) return error_response(std::move(s));
  int64_t today = 0;
  if (Status s = evaluation_date(req, &today); !s) return error_response(std::move(s));
  vaccination::PatientFacts patient;
  if (Status s = load_patient(services, req, &patient); !s) return error_response(std::move(s));
  if (today < patient.birth)
    return error_response(ErrorCategory::Invalid, "invalid", "date is before the patient's birth date", "date");
  std::vector<ImmunizationRecord> records;
  if (Status s = immunizations(services, req, *schedule, &records); !s) return error_response(std::move(s));
  std::vector<vaccination::DoseFact> doses;
  // Without written proof a vaccination is taken as not done (calendrier
  // des vaccinations, rattrapage): doses declared from memory do not count.
  for (const ImmunizationRecord& r : records)
    if (r.status == "completed" && r.day && reliability(r) != "declared") doses.push_back({r.id, *r.day, r.diseases});
  std::vector<vaccination::Line> lines = vaccination::evaluate(*schedule, patient, doses, today);

  // ImmunizationRecommendation.recommendation is 1..*: the resource cannot
  // say "nothing to recommend". When no rule of the schedule concerns the
  // patient on that date the answer is an informational OperationOutcome
  // (200), as operations answer outcomes that are not their return resource
  // (R4 operations.html), rather than an invalid resource or an invented line.
  if (lines.empty()) {
    fhir::Issue issue;
    issue.severity = fhir::Severity::Information;
    issue.code = "informational";
    issue.diagnostics = "no vaccination of the schedule (" + schedule->source.substr(0, schedule->source.find(" (")) +
                        ") concerns this patient on " + vaccination::format_date(today);
    FhirResponse r;
    r.json = fhir::outcome_json({issue});
    return r;
  }

  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  key_string(w, "resourceType", "ImmunizationRecommendation");
  reference(w, "patient", "Patient/" + req.id);
  key_string(w, "date", vaccination::format_date(today));
  w.Key("authority");
  w.StartObject();
  std::string edition = schedule->source.substr(0, schedule->source.find(" ("));  // the title, without the notes
  key_string(w, "display", edition);
  w.EndObject();
  w.Key("recommendation");
  w.StartArray();
  for (const vaccination::Line& line : lines) {
    const vaccination::Group& g = *line.group;
    w.StartObject();
    w.Key("extension");
    w.StartArray();
    w.StartObject();
    key_string(w, "url", std::string(kExtensionBase) + "vaccination-schedule-rule");
    w.Key("valueCoding");
    coding(w, schedule->rule_system, line.rule_id, line.rule_display);
    w.EndObject();
    w.EndArray();
    if (const vaccination::Vaccine* v = schedule->vaccine(line.vaccine)) {
      w.Key("vaccineCode");
      w.StartArray();
      w.StartObject();
      w.Key("coding");
      w.StartArray();
      coding(w, "http://www.whocc.no/atc", v->atc, v->display);
      w.EndArray();
      w.EndObject();
      w.EndArray();
    }
    w.Key("targetDisease");
    w.StartObject();
    w.Key("coding");
    w.StartArray();
    coding(w, schedule->group_system, g.key, g.display);
    if (g.target_diseases.size() == 1)
      if (const vaccination::Disease* d = schedule->disease(g.target_diseases.front()); d && !d->snomed.empty())
        coding(w, "http://snomed.info/sct", d->snomed, d->display);
    w.EndArray();
    key_string(w, "text", g.display);
    w.EndObject();
    codeable(w, "forecastStatus", "http://terminology.hl7.org/CodeSystem/immunization-recommendation-status",
             line.status, "");
    if (line.due || line.overdue_after) {
      w.Key("dateCriterion");
      w.StartArray();
      auto criterion = [&](const char* code, const char* display, int64_t day) {
        w.StartObject();
        codeable(w, "code", "http://loinc.org", code, display);
        key_string(w, "value", vaccination::format_date(day));
        w.EndObject();
      };
      if (line.due) criterion("30980-7", "Date vaccine due", *line.due);
      if (line.overdue_after) criterion("59778-1", "Date when overdue for immunization", *line.overdue_after + 1);
      w.EndArray();
    }
    key_string(w, "description", line.rule_display);
    key_string(w, "series", line.rule_id);
    w.Key("doseNumberPositiveInt");
    w.Int(line.dose_number);
    w.Key("seriesDosesPositiveInt");
    w.Int(line.series_doses);
    if (!line.supporting.empty()) {
      w.Key("supportingImmunization");
      w.StartArray();
      for (const std::string& id : line.supporting) {
        w.StartObject();
        key_string(w, "reference", "Immunization/" + id);
        w.EndObject();
      }
      w.EndArray();
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return json_response(buf);
}

FhirResponse screening_reminders_operation(const Services& services, const FhirRequest& req) {
  const vaccination::ScreeningRules* rules = nullptr;
  if (Status s = vaccination::ScreeningRules::get(&rules); !s) return error_response(std::move(s));
  int64_t today = 0;
  if (Status s = evaluation_date(req, &today); !s) return error_response(std::move(s));
  vaccination::PatientFacts patient;
  if (Status s = load_patient(services, req, &patient); !s) return error_response(std::move(s));

  // Past tests: any Observation, Procedure or DiagnosticReport with a programme's code.
  std::string codes;
  for (const vaccination::ScreeningProgramme& p : rules->programmes)
    for (const Coding& c : p.codes) {
      std::string token = c.first + "|" + c.second;
      if (codes.find(token) != std::string::npos) continue;
      if (!codes.empty()) codes += ",";
      codes += token;
    }
  std::vector<vaccination::ScreeningTest> tests;
  const std::pair<const char*, const char*> sources[] = {
      {"Observation", "effective"}, {"Procedure", "performed"}, {"DiagnosticReport", "effective"}};
  for (const auto& [type, date_element] : sources) {
    std::vector<storage::ResourceVersion> versions;
    if (Status s = patient_resources(services, req, type, {{"code", codes}}, &versions); !s)
      return error_response(std::move(s));
    for (const storage::ResourceVersion& v : versions) {
      rapidjson::Document doc;
      doc.Parse(v.json.data(), v.json.size());
      if (doc.HasParseError() || !doc.IsObject()) continue;
      std::string when = str(doc, (std::string(date_element) + "DateTime").c_str());
      if (when.empty())
        if (const rapidjson::Value* period = member(doc, (std::string(date_element) + "Period").c_str()))
          when = str(*period, "start");
      vaccination::ScreeningTest t;
      if (!vaccination::parse_date(when, &t.day, true)) continue;
      codings_of(member(doc, "code"), &t.codes);
      tests.push_back(std::move(t));
    }
  }
  std::vector<vaccination::ScreeningReminder> reminders =
      vaccination::screening_reminders(*rules, patient, tests, today);

  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  key_string(w, "resourceType", "Bundle");
  key_string(w, "type", "collection");
  key_string(w, "timestamp", now_instant());
  if (!reminders.empty()) w.Key("entry");
  if (!reminders.empty()) w.StartArray();
  for (const vaccination::ScreeningReminder& r : reminders) {
    w.StartObject();
    key_string(w, "fullUrl", "urn:uuid:" + new_id());
    w.Key("resource");
    w.StartObject();
    key_string(w, "resourceType", "CommunicationRequest");
    w.Key("extension");
    w.StartArray();
    w.StartObject();
    key_string(w, "url", std::string(kExtensionBase) + "screening-reminder-status");
    key_string(w, "valueCode", r.status);
    w.EndObject();
    w.EndArray();
    key_string(w, "status", "active");
    w.Key("category");
    w.StartArray();
    w.StartObject();
    w.Key("coding");
    w.StartArray();
    coding(w, "http://terminology.hl7.org/CodeSystem/communication-category", "reminder", "Reminder");
    w.EndArray();
    w.EndObject();
    w.EndArray();
    key_string(w, "priority", "routine");
    w.Key("payload");
    w.StartArray();
    w.StartObject();
    key_string(w, "contentString", r.programme->display);
    w.EndObject();
    w.EndArray();
    reference(w, "subject", "Patient/" + req.id);
    key_string(w, "occurrenceDateTime", vaccination::format_date(r.due));
    key_string(w, "authoredOn", vaccination::format_date(today));
    w.Key("recipient");
    w.StartArray();
    w.StartObject();
    key_string(w, "reference", "Patient/" + req.id);
    w.EndObject();
    w.EndArray();
    w.Key("reasonCode");
    w.StartArray();
    w.StartObject();
    w.Key("coding");
    w.StartArray();
    coding(w, rules->rule_system, r.programme->id, r.programme->display);
    w.EndArray();
    key_string(w, "text", r.programme->display);
    w.EndObject();
    w.EndArray();
    w.EndObject();
    w.EndObject();
  }
  if (!reminders.empty()) w.EndArray();
  w.EndObject();
  return json_response(buf);
}

}  // namespace espace::interactions
