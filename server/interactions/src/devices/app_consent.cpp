// The device-app-connection Consent (devices.h): parsing, whether it admits
// an app now, and the Consents of one patient.
#include <rapidjson/document.h>

#include <algorithm>

#include "../common.h"
#include "../search/query.h"
#include "../search/registry.h"
#include "device_search.h"
#include "espace/interactions/devices.h"

namespace espace::interactions::devices {

namespace {

std::string_view text(const rapidjson::Value& o, const char* key) {
  if (!o.IsObject()) return {};
  auto it = o.FindMember(key);
  if (it == o.MemberEnd() || !it->value.IsString()) return {};
  return {it->value.GetString(), it->value.GetStringLength()};
}

const rapidjson::Value* array(const rapidjson::Value& o, const char* key) {
  if (!o.IsObject()) return nullptr;
  auto it = o.FindMember(key);
  return it != o.MemberEnd() && it->value.IsArray() ? &it->value : nullptr;
}

const rapidjson::Value* object(const rapidjson::Value& o, const char* key) {
  if (!o.IsObject()) return nullptr;
  auto it = o.FindMember(key);
  return it != o.MemberEnd() && it->value.IsObject() ? &it->value : nullptr;
}

bool has_coding(const rapidjson::Value* concepts, std::string_view system, std::string_view code) {
  if (!concepts) return false;
  for (const auto& cc : concepts->GetArray())
    if (const rapidjson::Value* codings = array(cc, "coding"))
      for (const auto& c : codings->GetArray())
        if (text(c, "system") == system && text(c, "code") == code) return true;
  return false;
}

// Period bounds; an unparseable bound admits nothing (start in the far future).
void period_bounds(const rapidjson::Value* period, int64_t* start_us, int64_t* end_us) {
  *start_us = *end_us = 0;
  if (!period) return;
  std::string_view start = text(*period, "start"), end = text(*period, "end");
  if (!start.empty() && !parse_fhir_datetime(start, start_us)) *start_us = INT64_MAX;
  if (!end.empty()) {
    if (!parse_fhir_datetime(end, end_us)) {
      *end_us = 1;  // malformed: already ended
    } else if (end.size() == 10) {
      *end_us += 86400LL * 1000000 - 1;  // a date ends with its last microsecond
    }
  }
}

}  // namespace

bool parse_app_consent(std::string_view consent_json, AppConsent* out) {
  rapidjson::Document doc;
  doc.Parse(consent_json.data(), consent_json.size());
  if (doc.HasParseError() || !doc.IsObject() || text(doc, "resourceType") != "Consent") return false;
  if (!has_coding(array(doc, "category"), kConsentCategorySystem, kDeviceAppConnection)) return false;
  AppConsent c;
  c.id = std::string(text(doc, "id"));
  if (const rapidjson::Value* patient = object(doc, "patient")) {
    std::string_view ref = text(*patient, "reference");
    if (ref.starts_with("Patient/")) c.patient_id = std::string(ref.substr(8));
  }
  const rapidjson::Value* provision = object(doc, "provision");
  c.active = text(doc, "status") == "active" && provision && text(*provision, "type") == "permit";
  if (provision) {
    if (const rapidjson::Value* actors = array(*provision, "actor"))
      for (const auto& a : actors->GetArray())
        if (const rapidjson::Value* ref = object(a, "reference"))
          if (const rapidjson::Value* id = object(*ref, "identifier"))
            if (text(*id, "system") == kAppClientIdSystem && !text(*id, "value").empty())
              c.client_ids.emplace_back(text(*id, "value"));
    if (const rapidjson::Value* purposes = array(*provision, "purpose"))
      for (const auto& p : purposes->GetArray())
        if (text(p, "system") == kPurposeSystem && !text(p, "code").empty()) c.purposes.emplace_back(text(p, "code"));
    period_bounds(object(*provision, "period"), &c.start_us, &c.end_us);
  }
  if (const rapidjson::Value* exts = array(doc, "extension"))
    for (const auto& e : exts->GetArray())
      if (text(e, "url") == kRetentionUrl) {
        auto v = e.FindMember("valueUnsignedInt");
        if (v != e.MemberEnd() && v->value.IsInt64())
          c.retention_days = std::clamp<int64_t>(v->value.GetInt64(), 0, kMaxRetentionDays);
      }
  *out = std::move(c);
  return true;
}

bool admits_app(const AppConsent& c, const std::string& client_id, int64_t now_us) {
  if (!c.active || client_id.empty()) return false;
  if (std::find(c.client_ids.begin(), c.client_ids.end(), client_id) == c.client_ids.end()) return false;
  return (c.start_us == 0 || c.start_us <= now_us) && (c.end_us == 0 || now_us <= c.end_us);
}

fhir::Status load_app_consents(storage::Storage& store, const fhir::Definitions& defs, const std::string& patient_id,
                               std::vector<AppConsent>* out) {
  std::vector<storage::ResourceVersion> consents;
  if (Status s = search_all(store, defs, "Consent",
                            {{"patient", "Patient/" + patient_id},
                             {"category", std::string(kConsentCategorySystem) + "|" + std::string(kDeviceAppConnection)}},
                            &consents);
      !s)
    return s;
  for (const storage::ResourceVersion& v : consents) {
    AppConsent c;
    if (parse_app_consent(v.json, &c) && c.patient_id == patient_id) out->push_back(std::move(c));
  }
  return Status::ok();
}

std::string device_client_id(std::string_view device_json) {
  rapidjson::Document doc;
  doc.Parse(device_json.data(), device_json.size());
  if (doc.HasParseError() || !doc.IsObject()) return {};
  if (const rapidjson::Value* ids = array(doc, "identifier"))
    for (const auto& i : ids->GetArray())
      if (text(i, "system") == kAppClientIdSystem) return std::string(text(i, "value"));
  return {};
}

}  // namespace espace::interactions::devices
