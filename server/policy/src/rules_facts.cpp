// PatientFacts, the habilitation matrix and the rules' data files.
#include <rapidjson/document.h>

#include <cstdio>
#include <ctime>

#include "espace/fhir/data_files.h"
#include "espace/policy/rules.h"
#include "bounded_cache.h"
#include "rules_json.h"

namespace espace::policy {

using fhir::ErrorCategory;
using fhir::Status;

const char* account_state_code(AccountState state) {
  switch (state) {
    case AccountState::Active: return "active";
    case AccountState::Opposed: return "opposed";
    case AccountState::Closed: return "closed";
    case AccountState::Deceased: return "deceased";
    case AccountState::Destroyed: return "destroyed";
  }
  return "active";
}

namespace {

int64_t days_from_civil(int y, unsigned m, unsigned d) {
  // Days since 1970-01-01 in the proleptic Gregorian calendar.
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return static_cast<int64_t>(era) * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool digits(std::string_view s, size_t at, size_t n, int* out) {
  if (at + n > s.size()) return false;
  int v = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

bool is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
int days_in_month(int y, int m) {
  static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

void add_actor(const rapidjson::Value& reference, std::vector<ConsentActor>* out) {
  if (!reference.IsObject()) return;
  ConsentActor a;
  a.reference = json::str(reference, "reference");
  if (const rapidjson::Value* id = json::obj(reference, "identifier")) {
    a.system = json::str(*id, "system");
    a.value = json::str(*id, "value");
  }
  // "https://host/fhir/Practitioner/p1" names the same resource as "Practitioner/p1".
  if (size_t slash = a.reference.rfind('/'); slash != std::string::npos && a.reference.find("://") != std::string::npos) {
    size_t type_slash = a.reference.rfind('/', slash - 1);
    if (type_slash != std::string::npos) a.reference = a.reference.substr(type_slash + 1);
  }
  if (!a.reference.empty() || !a.value.empty()) out->push_back(std::move(a));
}

}  // namespace

bool fhir_date_range(std::string_view text, int64_t* first_us, int64_t* last_us) {
  int y = 0, m = 1, d = 1, hh = 0, mm = 0, ss = 0;
  if (!digits(text, 0, 4, &y)) return false;
  int last_m = 12, last_d = 0;
  size_t at = 4;
  bool has_time = false;
  if (at < text.size()) {
    if (text[at] != '-' || !digits(text, at + 1, 2, &m) || m < 1 || m > 12) return false;
    last_m = m;
    at += 3;
    if (at < text.size()) {
      if (text[at] != '-' || !digits(text, at + 1, 2, &d) || d < 1 || d > days_in_month(y, m)) return false;
      last_d = d;
      at += 3;
    }
  }
  if (last_d == 0) last_d = days_in_month(y, last_m);
  int64_t offset_s = 0;
  if (at < text.size()) {
    if (text[at] != 'T' || !digits(text, at + 1, 2, &hh) || text.size() < at + 9 || text[at + 3] != ':' ||
        !digits(text, at + 4, 2, &mm) || text[at + 6] != ':' || !digits(text, at + 7, 2, &ss) || hh > 23 || mm > 59 ||
        ss > 60)
      return false;
    has_time = true;
    at += 9;
    if (at < text.size() && text[at] == '.') {
      ++at;
      while (at < text.size() && text[at] >= '0' && text[at] <= '9') ++at;  // sub-second precision ignored
    }
    // FHIR requires a time zone whenever a time is given.
    if (at >= text.size()) return false;
    {
      if (text[at] == 'Z') {
        ++at;
      } else if (text[at] == '+' || text[at] == '-') {
        int oh = 0, om = 0;
        if (!digits(text, at + 1, 2, &oh) || text.size() < at + 6 || text[at + 3] != ':' || !digits(text, at + 4, 2, &om))
          return false;
        offset_s = (text[at] == '-' ? -1 : 1) * (oh * 3600 + om * 60);
        at += 6;
      } else {
        return false;
      }
    }
    if (at != text.size()) return false;
  }
  const int64_t us = 1000000;
  int64_t first = (days_from_civil(y, static_cast<unsigned>(m), static_cast<unsigned>(d)) * 86400 + hh * 3600 +
                   mm * 60 + ss - offset_s) * us;
  *first_us = first;
  if (has_time)
    *last_us = first + us - 1;
  else
    *last_us = (days_from_civil(y, static_cast<unsigned>(last_m), static_cast<unsigned>(last_d)) + 1) * 86400 * us - 1;
  return true;
}

Status patient_facts_from_json(std::string_view patient_json, int64_t now_us, PatientFacts* out) {
  rapidjson::Document doc;
  doc.Parse(patient_json.data(), patient_json.size());
  if (doc.HasParseError() || !doc.IsObject() || json::str(doc, "resourceType") != "Patient")
    return Status::error(ErrorCategory::Invalid, "invalid", "the patient facts need a Patient resource");
  PatientFacts f;
  f.id = json::str(doc, "id");
  f.exists = true;
  if (const rapidjson::Value* exts = json::arr(doc, "extension")) {
    for (const auto& e : exts->GetArray()) {
      std::string url = json::str(e, "url");
      if (url == dmp::kAccountStateUrl) {
        std::string code = json::str(e, "valueCode");
        if (code == "opposed") f.state = AccountState::Opposed;
        else if (code == "closed") f.state = AccountState::Closed;
        else if (code == "deceased") f.state = AccountState::Deceased;
        else if (code == "destroyed") f.state = AccountState::Destroyed;
        // "active" or an unknown code: active. An unknown code cannot be
        // stored anyway once the profile is enforced.
      } else if (url == dmp::kBreakGlassOppositionUrl) {
        f.break_glass_opposed = json::boolean(e, "valueBoolean");
      } else if (url == dmp::kHeirsForbiddenUrl) {
        f.heirs_forbidden = json::boolean(e, "valueBoolean");
      } else if (url == dmp::kLegalProtectionUrl) {
        f.legal_protection = json::boolean(e, "valueBoolean");
      }
    }
  }
  if (json::boolean(doc, "deceasedBoolean") || !json::str(doc, "deceasedDateTime").empty()) f.deceased = true;
  if (f.state == AccountState::Deceased) f.deceased = true;
  std::string birth = json::str(doc, "birthDate");
  int64_t first = 0, last = 0;
  if (!birth.empty() && fhir_date_range(birth, &first, &last)) {
    // Of age on the 18th birthday of the earliest date the birthDate allows
    // (a partial date never extends a representative's rights).
    int y = 0, m = 1, d = 1;
    digits(birth, 0, 4, &y);
    if (birth.size() >= 7) digits(birth, 5, 2, &m);
    if (birth.size() >= 10) digits(birth, 8, 2, &d);
    int of_age_day = std::min(d, days_in_month(y + 18, m));
    int64_t of_age_us = days_from_civil(y + 18, static_cast<unsigned>(m), static_cast<unsigned>(of_age_day)) * 86400 *
                        int64_t(1000000);
    f.minor = now_us < of_age_us;
  }
  if (const rapidjson::Value* gps = json::arr(doc, "generalPractitioner"))
    for (const auto& gp : gps->GetArray()) add_actor(gp, &f.general_practitioners);
  *out = std::move(f);
  return Status::ok();
}

void add_consent_fact(std::string_view consent_json, PatientFacts* facts) {
  rapidjson::Document doc;
  doc.Parse(consent_json.data(), consent_json.size());
  if (doc.HasParseError() || !doc.IsObject() || json::str(doc, "resourceType") != "Consent") return;
  if (json::str(doc, "status") != "active") return;
  const rapidjson::Value* provision = json::obj(doc, "provision");
  if (!provision) return;
  std::string type = json::str(*provision, "type");
  if (type != "permit" && type != "deny") return;
  ConsentFact c;
  c.id = json::str(doc, "id");
  c.permit = type == "permit";
  if (const rapidjson::Value* period = json::obj(*provision, "period")) {
    int64_t first = 0, last = 0;
    if (fhir_date_range(json::str(*period, "start"), &first, &last)) c.start_us = first;
    if (fhir_date_range(json::str(*period, "end"), &first, &last)) c.end_us = last;
  }
  if (const rapidjson::Value* actors = json::arr(*provision, "actor"))
    for (const auto& a : actors->GetArray())
      if (const rapidjson::Value* ref = json::obj(a, "reference")) add_actor(*ref, &c.actors);
  // A deny without actors blocks nobody in particular; a permit without
  // actors grants nobody: both are kept out rather than read as "everyone".
  if (c.actors.empty()) return;
  facts->consents.push_back(std::move(c));
}

namespace {

// Facts of recently seen patients, across requests: loading them is a read
// and a Consent search, more than the rest of a read-by-id. An entry is used
// only while the storage's write generations of Patient and Consent are
// those read before it was loaded (Storage::write_generation), so any write
// of either type acknowledged since — a revoked Consent, a new block, a
// changed GP — makes every later request load the facts again.
class FactsCache {
 public:
  struct Stamp {
    uint64_t patient = 0, consent = 0;
    bool operator==(const Stamp&) const = default;
  };

  static bool stamp(const storage::Storage& store, Stamp* out) {
    return store.write_generation("Patient", &out->patient) && store.write_generation("Consent", &out->consent);
  }

  // Facts computed at loaded_us hold later (an adult stays one), not before.
  bool find(const std::string& patient_id, const Stamp& now, int64_t now_us, PatientFacts* out) {
    return entries_.find(patient_id, [&](const Entry& e) {
      if (!(e.stamp == now) || now_us < e.loaded_us) return false;
      *out = e.facts;
      return true;
    });
  }

  void keep(const std::string& patient_id, const Stamp& stamp, int64_t loaded_us, const PatientFacts& facts) {
    entries_.keep(patient_id, Entry{stamp, loaded_us, facts});
  }

 private:
  struct Entry {
    Stamp stamp;
    int64_t loaded_us;
    PatientFacts facts;
  };
  BoundedCache<Entry> entries_{20000};
};

FactsCache& facts_cache() {
  static FactsCache cache;
  return cache;
}

Status load_patient_facts_uncached(storage::Storage& store, const std::string& patient_id, int64_t now_us,
                                   PatientFacts* out);

}  // namespace

Status load_patient_facts(storage::Storage& store, const std::string& patient_id, int64_t now_us,
                          PatientFacts* out) {
  FactsCache::Stamp stamp;
  if (!FactsCache::stamp(store, &stamp)) return load_patient_facts_uncached(store, patient_id, now_us, out);
  if (facts_cache().find(patient_id, stamp, now_us, out)) return Status::ok();
  Status s = load_patient_facts_uncached(store, patient_id, now_us, out);
  // A minor's facts change with time alone (the 18th birthday): not kept.
  if (s && !out->minor) facts_cache().keep(patient_id, stamp, now_us, *out);
  return s;
}

namespace {

Status load_patient_facts_uncached(storage::Storage& store, const std::string& patient_id, int64_t now_us,
                                   PatientFacts* out) {
  *out = PatientFacts();
  out->id = patient_id;
  storage::ResourceVersion patient;
  Status s = store.read("Patient", patient_id, &patient);
  if (!s) {
    if (s.category() == ErrorCategory::NotFound) return Status::ok();
    return s;
  }
  if (patient.deleted) return Status::ok();
  if (Status p = patient_facts_from_json(patient.json, now_us, out); !p) return p;
  out->id = patient_id;

  storage::SearchQuery q;
  q.type = "Consent";
  storage::Condition cond;
  cond.kind = storage::Condition::Kind::AnyOf;
  storage::IndexTest t;
  t.param = "patient";
  t.kind = "reference";
  t.system = "Patient";
  t.value = patient_id;
  t.value_op = storage::TextOp::Equal;
  cond.any_of.push_back(t);
  q.all_of.push_back(std::move(cond));
  q.count = 200;
  // Consents are few per patient; a patient with more than a few hundred
  // active ones is read page by page.
  for (int pages = 0; pages < 50; ++pages) {
    storage::SearchPage page;
    if (Status r = store.search(q, &page); !r) return r;
    for (const auto& m : page.matches)
      if (!m.resource.deleted) add_consent_fact(m.resource.json, out);
    if (!page.more || page.matches.empty()) break;
    q.after_key = page.matches.back().key;
  }
  return Status::ok();
}

}  // namespace

// ---- data files ----

Status Habilitations::parse(std::string_view text, Habilitations* out) {
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  if (doc.HasParseError() || !doc.IsObject())
    return Status::error(ErrorCategory::Invalid, "invalid", "habilitations: not a JSON object");
  const rapidjson::Value* professions = json::obj(doc, "professions");
  if (!professions) return Status::error(ErrorCategory::Invalid, "invalid", "habilitations: no 'professions' object");
  Habilitations h;
  if (std::string sys = json::str(doc, "loinc_system"); !sys.empty()) h.loinc_system_ = sys;
  for (auto it = professions->MemberBegin(); it != professions->MemberEnd(); ++it) {
    if (!it->value.IsObject())
      return Status::error(ErrorCategory::Invalid, "invalid",
                           std::string("habilitations: profession '") + it->name.GetString() + "' is not an object");
    Row row;
    for (const std::string& t : json::strings(it->value, "resource_types")) row.types.insert(t);
    for (const std::string& d : json::strings(it->value, "document_types")) row.documents.insert(d);
    h.rows_[it->name.GetString()] = std::move(row);
  }
  *out = std::move(h);
  return Status::ok();
}

bool Habilitations::allows_type(const std::string& profession, std::string_view resource_type) const {
  auto it = rows_.find(profession);
  if (it == rows_.end()) return false;
  return it->second.types.count("*") || it->second.types.count(resource_type);
}

bool Habilitations::allows_document(const std::string& profession, const std::vector<std::string>& loinc_codes) const {
  auto it = rows_.find(profession);
  if (it == rows_.end()) return false;
  if (it->second.documents.count("*")) return true;
  for (const std::string& c : loinc_codes)
    if (it->second.documents.count(c)) return true;
  return false;
}

Status RulesConfig::parse(std::string_view habilitations_json, std::string_view purposes_json,
                          std::string_view roles_json, RulesConfig* out) {
  RulesConfig c;
  if (Status s = Habilitations::parse(habilitations_json, &c.habilitations); !s) return s;

  rapidjson::Document purposes;
  purposes.Parse(purposes_json.data(), purposes_json.size());
  const rapidjson::Value* roles = purposes.HasParseError() || !purposes.IsObject() ? nullptr : json::obj(purposes, "roles");
  if (!roles) return Status::error(ErrorCategory::Invalid, "invalid", "purposes: no 'roles' object");
  for (auto it = roles->MemberBegin(); it != roles->MemberEnd(); ++it) {
    Purposes p;
    for (const std::string& a : json::strings(it->value, "allowed")) p.allowed.insert(a);
    p.fallback = json::str(it->value, "default");
    c.purposes[it->name.GetString()] = std::move(p);
  }
  if (std::string bg = json::str(purposes, "break_glass"); !bg.empty()) c.break_glass_purpose = bg;

  rapidjson::Document r;
  r.Parse(roles_json.data(), roles_json.size());
  if (r.HasParseError() || !r.IsObject()) return Status::error(ErrorCategory::Invalid, "invalid", "roles: not a JSON object");
  auto fill = [&](const char* key, std::set<std::string, std::less<>>* set) {
    for (const std::string& v : json::strings(r, key)) set->insert(v);
  };
  fill("shared_types", &c.shared_types);
  fill("administrator_types", &c.administrator_types);
  fill("administrator_operations", &c.administrator_operations);
  fill("patient_writable_types", &c.patient_writable_types);
  fill("patient_label_editable_types", &c.patient_label_editable_types);
  fill("professional_never_writes", &c.professional_never_writes);
  fill("hideable_types", &c.hideable_types);
  if (const rapidjson::Value* w = json::obj(r, "restricted_writers"))
    for (auto it = w->MemberBegin(); it != w->MemberEnd(); ++it)
      for (const std::string& profession : json::strings(*w, it->name.GetString()))
        c.restricted_writers[it->name.GetString()].insert(profession);
  if (const rapidjson::Value* e = json::obj(r, "entered_by"))
    for (auto it = e->MemberBegin(); it != e->MemberEnd(); ++it)
      c.entered_by[it->name.GetString()] = json::strings(*e, it->name.GetString());
  *out = std::move(c);
  return Status::ok();
}

Status RulesConfig::load(RulesConfig* out) {
  std::string h, p, r;
  if (Status s = fhir::read_data_file("server/policy/data/habilitations.json", &h); !s) return s;
  if (Status s = fhir::read_data_file("server/policy/data/purposes.json", &p); !s) return s;
  if (Status s = fhir::read_data_file("server/policy/data/roles.json", &r); !s) return s;
  return parse(h, p, r, out);
}

}  // namespace espace::policy
