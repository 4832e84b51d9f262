// The rules of connected apps, secure messages and appointments (issue 9;
// server/policy/README.md, "Connected apps, messages, appointments"):
//   DEVICE_APP_CONSENT  an app (a system caller, by its client id) reaches a
//                       patient only through the patient's active
//                       device-app-connection Consent naming it, for a
//                       purpose of use that Consent lists
//   DEVICE_APP_DATA     and then only the measurements of its own Device
//   THREAD_REPLY_ONLY   a patient (or representative) writes a message only
//                       as a reply in a thread about them, signed by them
//   ATTACHMENT_NOT_VISIBLE  a message attaches only what its sender may see
//   APPOINTMENT_CANCEL_ONLY a patient's only write on an Appointment is its
//                       cancellation
#include <rapidjson/document.h>

#include <algorithm>

#include "espace/interactions/devices.h"
#include "espace/policy/rules.h"
#include "rules_json.h"

namespace espace::policy {

using fhir::Status;
namespace devices = interactions::devices;

namespace {

std::string reference_of(const rapidjson::Value* ref) { return ref ? json::str(*ref, "reference") : std::string(); }

// "Type/id" (also the tail of an absolute URL), or "" when it is not one.
std::string local_reference(std::string ref) {
  size_t hist = ref.find("/_history/");
  if (hist != std::string::npos) ref.resize(hist);
  size_t last = ref.rfind('/');
  if (last == std::string::npos || last == 0) return {};
  size_t type_start = ref.rfind('/', last - 1);
  return type_start == std::string::npos ? ref : ref.substr(type_start + 1);
}

}  // namespace

const std::vector<devices::AppConsent>& DmpRules::app_consents(const std::string& patient_id) {
  auto it = app_consents_.find(patient_id);
  if (it != app_consents_.end()) return it->second;
  std::vector<devices::AppConsent> loaded;
  // A storage failure admits no app: the list reads as empty.
  if (!devices::load_app_consents(store_, defs_, patient_id, &loaded)) loaded.clear();
  return app_consents_.emplace(patient_id, std::move(loaded)).first->second;
}

bool DmpRules::device_app_access(const std::string& patient_id, Verdict* out) {
  if (caller_.role != Role::System || caller_.client_id.empty()) return false;
  bool named = false, admitted = false;
  for (const devices::AppConsent& c : app_consents(patient_id)) {
    if (std::find(c.client_ids.begin(), c.client_ids.end(), caller_.client_id) == c.client_ids.end()) continue;
    named = true;
    if (devices::admits_app(c, caller_.client_id, now_us_) &&
        std::find(c.purposes.begin(), c.purposes.end(), caller_.purpose_of_use) != c.purposes.end())
      admitted = true;
  }
  if (!named) return false;  // an app the patient never connected: the usual NO_GRANT
  *out = {admitted, rule::kDeviceAppConsent};
  return true;
}

Verdict DmpRules::device_app_content(const std::string& type, const rapidjson::Value& doc) {
  if (type != "Observation") return {false, rule::kDeviceAppData};
  std::string device = local_reference(reference_of(json::obj(doc, "device")));
  if (!device.starts_with("Device/")) return {false, rule::kDeviceAppData};
  auto cached = app_devices_.find(device);
  if (cached == app_devices_.end()) {
    storage::ResourceVersion v;
    bool ours = store_.read("Device", device.substr(7), &v) && !v.deleted &&
                devices::device_client_id(v.json) == caller_.client_id;
    cached = app_devices_.emplace(device, ours).first;
  }
  if (!cached->second) return {false, rule::kDeviceAppData};
  return {true, rule::kDeviceAppConsent};
}

Status DmpRules::check_app_measurement(const rapidjson::Value& observation) {
  // The profile then applies (meta.profile is always validated): LOINC
  // measurement, UCUM units, device and time of measurement.
  constexpr std::string_view kProfile = "https://espace.example/fhir/StructureDefinition/fr-device-observation";
  if (const rapidjson::Value* meta = json::obj(observation, "meta"))
    for (const std::string& p : json::strings(*meta, "profile"))
      if (p == kProfile || p.starts_with(std::string(kProfile) + "|")) return Status::ok();
  return refusal(rule::kDeviceAppData, "an app's measurement declares the profile " + std::string(kProfile));
}

Status DmpRules::check_attachments(const rapidjson::Value& communication) {
  const rapidjson::Value* payload = json::arr(communication, "payload");
  if (!payload) return Status::ok();
  for (const auto& p : payload->GetArray()) {
    const rapidjson::Value* content = json::obj(p, "contentReference");
    if (!content) continue;
    std::string ref = local_reference(reference_of(content));
    size_t slash = ref.find('/');
    storage::ResourceVersion v;
    // Absent and hidden answer alike: the check is no oracle of existence.
    bool visible = slash != std::string::npos && store_.read(ref.substr(0, slash), ref.substr(slash + 1), &v) &&
                   !v.deleted && decide(v, nullptr, 1).visible;
    if (!visible)
      return refusal(rule::kAttachmentNotVisible,
                     "a message attaches only an existing document its sender may see (payload.contentReference)");
  }
  return Status::ok();
}

Status DmpRules::check_patient_message(bool exists, bool deleting, const rapidjson::Value* after) {
  if (exists || deleting || !after)
    return refusal(rule::kThreadReplyOnly, "a message once sent is neither changed nor deleted by the patient");
  // Signed by the caller: the patient themself or the representative.
  std::string sender = local_reference(reference_of(json::obj(*after, "sender")));
  bool signed_by_caller = !sender.empty() && ((!caller_.fhir_user.empty() && sender == caller_.fhir_user) ||
                                              (caller_.role == Role::Patient && sender == "Patient/" + caller_.patient_id));
  if (!signed_by_caller) return refusal(rule::kThreadReplyOnly, "a patient's message names them as its sender");
  std::string subject = local_reference(reference_of(json::obj(*after, "subject")));
  const rapidjson::Value* replies_to = json::arr(*after, "inResponseTo");
  if (!replies_to || replies_to->Empty())
    return refusal(rule::kThreadReplyOnly, "only professionals open a thread; a patient replies within one (inResponseTo)");
  for (const auto& r : replies_to->GetArray()) {
    std::string target = local_reference(reference_of(&r));
    storage::ResourceVersion v;
    bool in_thread = target.starts_with("Communication/") && store_.read("Communication", target.substr(14), &v) &&
                     !v.deleted && decide(v, nullptr, 1).visible;
    if (in_thread) {
      rapidjson::Document earlier;
      earlier.Parse(v.json.data(), v.json.size());
      in_thread = !earlier.HasParseError() && !subject.empty() &&
                  local_reference(reference_of(json::obj(earlier, "subject"))) == subject;
    }
    if (!in_thread)
      return refusal(rule::kThreadReplyOnly,
                     "inResponseTo must name a message of a thread about this patient (same subject)");
  }
  return Status::ok();
}

Status DmpRules::check_patient_appointment(const rapidjson::Value* before, const rapidjson::Value* after) {
  if (!before || !after)
    return refusal(rule::kAppointmentCancelOnly, "appointments are made and removed by professionals");
  if (json::str(*after, "status") != "cancelled")
    return refusal(rule::kAppointmentCancelOnly, "a patient may only cancel an appointment (status cancelled)");
  rapidjson::Document a, b;
  a.CopyFrom(*after, a.GetAllocator());
  b.CopyFrom(*before, b.GetAllocator());
  for (rapidjson::Document* d : {&a, &b})
    for (const char* name : {"meta", "text", "status", "cancelationReason"}) d->RemoveMember(name);
  if (a != b) return refusal(rule::kAppointmentCancelOnly, "cancelling changes the status (and its reason) only");
  return Status::ok();
}

}  // namespace espace::policy
