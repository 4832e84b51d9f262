// The purge of app measurements past their retention (devices.h). Run by the
// server on a timer (serve --purge-interval) and by `espace purge`.
#include <rapidjson/document.h>

#include <algorithm>
#include <map>

#include "../common.h"
#include "device_search.h"
#include "espace/interactions/devices.h"

namespace espace::interactions::devices {

namespace {

constexpr int64_t kDayUs = 86400LL * 1000000;

std::string_view text(const rapidjson::Value& o, const char* key) {
  if (!o.IsObject()) return {};
  auto it = o.FindMember(key);
  if (it == o.MemberEnd() || !it->value.IsString()) return {};
  return {it->value.GetString(), it->value.GetStringLength()};
}

const rapidjson::Value* object(const rapidjson::Value& o, const char* key) {
  if (!o.IsObject()) return nullptr;
  auto it = o.FindMember(key);
  return it != o.MemberEnd() && it->value.IsObject() ? &it->value : nullptr;
}

// When the measurement was taken: effective[x], else when it was stored.
int64_t measured_at(const rapidjson::Value& obs, int64_t last_updated_us) {
  int64_t us = 0;
  for (const char* key : {"effectiveDateTime", "effectiveInstant"})
    if (std::string_view t = text(obs, key); !t.empty() && parse_fhir_datetime(t, &us)) return us;
  if (const rapidjson::Value* period = object(obs, "effectivePeriod")) {
    if (std::string_view t = text(*period, "end"); !t.empty() && parse_fhir_datetime(t, &us)) return us;
    if (std::string_view t = text(*period, "start"); !t.empty() && parse_fhir_datetime(t, &us)) return us;
  }
  return last_updated_us;
}

// Erased, not deleted: a delete keeps every version in the history, and the
// point of the retention period is that the data is no longer kept.
Status remove(const Services& services, const std::string& type, const std::string& id) {
  return services.store->write([&](storage::WriteTxn& txn) { return txn.expunge(type, id); });
}

}  // namespace

Status purge_device_data(const Services& services, int64_t now_us, PurgeReport* report) {
  storage::Storage& store = *services.store;
  const fhir::Definitions& defs = *services.defs;
  // Every app's Device, then every measurement referencing one.
  std::vector<storage::ResourceVersion> app_devices;
  if (Status s = search_all(store, defs, "Device", {{"identifier", std::string(kAppClientIdSystem) + "|"}}, &app_devices);
      !s)
    return s;
  std::map<std::string, std::vector<AppConsent>> consents_by_patient;
  for (const storage::ResourceVersion& device : app_devices) {
    const std::string client_id = device_client_id(device.json);
    if (client_id.empty()) continue;
    std::vector<storage::ResourceVersion> observations;
    if (Status s = search_all(store, defs, "Observation", {{"device", "Device/" + device.id}}, &observations); !s)
      return s;
    for (const storage::ResourceVersion& obs : observations) {
      rapidjson::Document doc;
      doc.Parse(obs.json.data(), obs.json.size());
      if (doc.HasParseError() || !doc.IsObject()) continue;
      std::string patient;
      if (const rapidjson::Value* subject = object(doc, "subject"))
        if (std::string_view ref = text(*subject, "reference"); ref.starts_with("Patient/"))
          patient = std::string(ref.substr(8));
      if (patient.empty()) continue;  // not anyone's record: not ours to judge
      auto found = consents_by_patient.find(patient);
      if (found == consents_by_patient.end()) {
        std::vector<AppConsent> loaded;
        if (Status s = load_app_consents(store, defs, patient, &loaded); !s) return s;
        found = consents_by_patient.emplace(patient, std::move(loaded)).first;
      }
      // The longest retention any Consent of this patient gives this app;
      // none (the Consent was deleted): nothing keeps the data.
      int64_t retention_days = -1;
      for (const AppConsent& c : found->second)
        if (std::find(c.client_ids.begin(), c.client_ids.end(), client_id) != c.client_ids.end())
          retention_days = std::max(retention_days, c.retention_days);
      const bool expired =
          retention_days < 0 || measured_at(doc, obs.last_updated_us) + retention_days * kDayUs < now_us;
      if (!expired) continue;
      std::vector<storage::ResourceVersion> provenances;
      if (Status s = search_all(store, defs, "Provenance", {{"target", "Observation/" + obs.id}}, &provenances); !s)
        return s;
      if (Status s = remove(services, "Observation", obs.id); !s) return s;
      report->removed.push_back("Observation/" + obs.id);
      for (const storage::ResourceVersion& p : provenances) {
        if (Status s = remove(services, "Provenance", p.id); !s) return s;
        report->removed.push_back("Provenance/" + p.id);
      }
      if (std::find(report->patients.begin(), report->patients.end(), patient) == report->patients.end())
        report->patients.push_back(patient);
    }
  }
  return Status::ok();
}

}  // namespace espace::interactions::devices
