// Connected devices and apps (issue 9): the patient's "device-app-connection"
// Consent that lets an app push measurements into their record, and the purge
// that removes those measurements once their retention has passed.
//
// The Consent (written by the patient; README: server/policy/README.md,
// "Connected apps"):
//   category        kConsentCategorySystem#device-app-connection
//   patient         Patient/id
//   status          active (anything else admits nothing)
//   provision.type  permit
//   provision.actor[].reference.identifier  kAppClientIdSystem | the app's
//                   OAuth client id (the `client_id` of its token); a
//                   Device reference may name the app's Device as well
//   provision.purpose  codes of kPurposeSystem: prevention, diagnosis,
//                   care, follow-up (the purposes the patient allows)
//   provision.period   the consent's validity (bounds inclusive)
//   extension kRetentionUrl valueUnsignedInt  days each measurement is kept
//
// A measurement belongs to an app when its Observation.device references a
// Device whose identifier is kAppClientIdSystem | client id.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "espace/fhir/status.h"
#include "espace/interactions/api.h"
#include "espace/storage/storage.h"

namespace espace::interactions::devices {

inline constexpr std::string_view kConsentCategorySystem = "https://espace.example/fhir/CodeSystem/consent-category";
inline constexpr std::string_view kDeviceAppConnection = "device-app-connection";
inline constexpr std::string_view kAppClientIdSystem = "https://espace.example/fhir/sid/app-client-id";
inline constexpr std::string_view kPurposeSystem = "https://espace.example/fhir/CodeSystem/device-data-purpose";
inline constexpr std::string_view kRetentionUrl =
    "https://espace.example/fhir/StructureDefinition/device-data-retention-days";
// Retention when the Consent names none (and the longest accepted: ten years).
inline constexpr int64_t kDefaultRetentionDays = 365;
inline constexpr int64_t kMaxRetentionDays = 3650;

struct AppConsent {
  std::string id, patient_id;
  std::vector<std::string> client_ids;  // apps named by provision.actor
  std::vector<std::string> purposes;    // codes of kPurposeSystem
  bool active = false;                  // status active, provision.type permit
  int64_t start_us = 0, end_us = 0;     // provision.period; 0: unbounded
  int64_t retention_days = kDefaultRetentionDays;
};

// False when the JSON is not a device-app-connection Consent.
bool parse_app_consent(std::string_view consent_json, AppConsent* out);
// Active, within its period at `now_us`, naming `client_id`.
bool admits_app(const AppConsent& consent, const std::string& client_id, int64_t now_us);
// The device-app-connection Consents of one patient (current, not deleted).
fhir::Status load_app_consents(storage::Storage& store, const fhir::Definitions& defs, const std::string& patient_id,
                               std::vector<AppConsent>* out);
// The app client id a Device carries (kAppClientIdSystem), or "".
std::string device_client_id(std::string_view device_json);

struct PurgeReport {
  std::vector<std::string> removed;   // "Observation/id", "Provenance/id"
  std::vector<std::string> patients;  // whose data was removed
};

// Erases (WriteTxn::expunge: no version kept) every app measurement whose retention has passed at `now_us`:
// an Observation of a patient holding a device-app-connection Consent, whose
// Device names an app, is kept `retention_days` after its effective time
// (meta.lastUpdated without one) by the Consent naming that app (the longest
// when several do); without such a Consent (withdrawn and deleted) it is
// removed. The Provenance resources targeting a removed Observation go with
// it. `services.store` must be the unguarded storage: the purge acts for the
// server, not for a caller.
fhir::Status purge_device_data(const Services& services, int64_t now_us, PurgeReport* report);

}  // namespace espace::interactions::devices
