// $materialize-reminders (reminders_ops.h).
#include "reminders_ops.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "../common.h"
#include "../vaccination/vaccination_ops.h"
#include "espace/fhir/json.h"

namespace espace::interactions {

namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

std::string text(const rapidjson::Value& o, const char* key) {
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

std::string first_code(const rapidjson::Value* concept_value) {
  if (!concept_value || !concept_value->IsObject()) return {};
  const rapidjson::Value* codings = member(*concept_value, "coding");
  if (!codings || !codings->IsArray() || codings->Empty()) return {};
  return text((*codings)[0], "code");
}

std::string to_json(const rapidjson::Value& v) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  v.Accept(w);
  return std::string(buf.GetString(), buf.GetSize());
}

struct Reminder {
  std::string key;   // identifier value
  std::string json;  // the CommunicationRequest, with its identifier
};

void add_identifier(rapidjson::Document& cr, const std::string& key) {
  auto& alloc = cr.GetAllocator();
  rapidjson::Value id(rapidjson::kObjectType);
  id.AddMember("system", rapidjson::Value(kReminderIdentifierSystem, alloc), alloc);
  id.AddMember("value", rapidjson::Value(key.c_str(), static_cast<rapidjson::SizeType>(key.size()), alloc), alloc);
  rapidjson::Value ids(rapidjson::kArrayType);
  ids.PushBack(id, alloc);
  cr.RemoveMember("identifier");
  cr.AddMember("identifier", ids, alloc);
}

// One CommunicationRequest per recommendation line that is due or overdue.
void vaccination_reminders(const rapidjson::Document& rec, const std::string& patient, std::vector<Reminder>* out) {
  const rapidjson::Value* lines = member(rec, "recommendation");
  if (!lines || !lines->IsArray()) return;
  for (const auto& line : lines->GetArray()) {
    std::string status = first_code(member(line, "forecastStatus"));
    if (status != "due" && status != "overdue") continue;
    std::string due;
    if (const rapidjson::Value* criteria = member(line, "dateCriterion"); criteria && criteria->IsArray())
      for (const auto& c : criteria->GetArray())
        if (first_code(member(c, "code")) == "30980-7") due = text(c, "value");
    std::string dose;
    if (const rapidjson::Value* n = member(line, "doseNumberPositiveInt"); n && n->IsInt()) dose = std::to_string(n->GetInt());
    const std::string key = "vaccination:" + text(line, "series") + ":" + dose + ":" + due;

    rapidjson::Document cr;
    cr.SetObject();
    auto& a = cr.GetAllocator();
    auto str = [&](const std::string& s) { return rapidjson::Value(s.c_str(), static_cast<rapidjson::SizeType>(s.size()), a); };
    auto ref = [&](const std::string& r) {
      rapidjson::Value v(rapidjson::kObjectType);
      v.AddMember("reference", str(r), a);
      return v;
    };
    cr.AddMember("resourceType", "CommunicationRequest", a);
    cr.AddMember("status", "active", a);
    rapidjson::Document category;
    category.Parse(R"([{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/communication-category","code":"reminder","display":"Reminder"}]}])");
    cr.AddMember("category", rapidjson::Value(category, a), a);
    cr.AddMember("priority", str(status == "overdue" ? "urgent" : "routine"), a);
    rapidjson::Value payload(rapidjson::kArrayType), content(rapidjson::kObjectType);
    std::string description = text(line, "description");
    if (description.empty()) description = "Vaccination";
    content.AddMember("contentString", str(description), a);
    payload.PushBack(content, a);
    cr.AddMember("payload", payload, a);
    cr.AddMember("subject", ref("Patient/" + patient), a);
    rapidjson::Value recipients(rapidjson::kArrayType);
    recipients.PushBack(ref("Patient/" + patient), a);
    cr.AddMember("recipient", recipients, a);
    if (!due.empty()) cr.AddMember("occurrenceDateTime", str(due), a);
    if (const rapidjson::Value* disease = member(line, "targetDisease"); disease && disease->IsObject()) {
      rapidjson::Value reasons(rapidjson::kArrayType);
      reasons.PushBack(rapidjson::Value(*disease, a), a);
      cr.AddMember("reasonCode", reasons, a);
    }
    add_identifier(cr, key);
    out->push_back({key, to_json(cr)});
  }
}

// The screening operation already answers CommunicationRequests.
void screening_reminders(const rapidjson::Document& bundle, std::vector<Reminder>* out) {
  const rapidjson::Value* entries = member(bundle, "entry");
  if (!entries || !entries->IsArray()) return;
  for (const auto& e : entries->GetArray()) {
    const rapidjson::Value* resource = member(e, "resource");
    if (!resource || !resource->IsObject()) continue;
    std::string programme;
    if (const rapidjson::Value* reasons = member(*resource, "reasonCode"); reasons && reasons->IsArray() && !reasons->Empty())
      programme = first_code(&(*reasons)[0]);
    const std::string key = "screening:" + programme + ":" + text(*resource, "occurrenceDateTime");
    rapidjson::Document cr;
    cr.CopyFrom(*resource, cr.GetAllocator());
    add_identifier(cr, key);
    out->push_back({key, to_json(cr)});
  }
}

Status parse_answer(const FhirResponse& r, const char* what, rapidjson::Document* doc) {
  if (!r.error) return r.error;
  doc->Parse(r.json.data(), r.json.size());
  if (doc->HasParseError() || !doc->IsObject())
    return Status::error(ErrorCategory::Internal, "exception", std::string(what) + " answered no JSON");
  return Status::ok();
}

}  // namespace

FhirResponse materialize_reminders_operation(const Services& services, const FhirRequest& req) {
  if (req.type != "Patient" || req.id.empty())
    return error_response(ErrorCategory::Invalid, "invalid", "$materialize-reminders is invoked on Patient/[id]");
  std::vector<Reminder> reminders;
  {
    rapidjson::Document rec;
    if (Status s = parse_answer(immunization_recommendation_operation(services, req), "$immunization-recommendation", &rec);
        !s)
      return error_response(std::move(s));
    vaccination_reminders(rec, req.id, &reminders);
  }
  {
    rapidjson::Document bundle;
    if (Status s = parse_answer(screening_reminders_operation(services, req), "$screening-reminders", &bundle); !s)
      return error_response(std::move(s));
    screening_reminders(bundle, &reminders);
  }

  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("resourceType");
  w.String("Bundle");
  w.Key("type");
  w.String("batch-response");
  w.Key("entry");
  w.StartArray();
  for (const Reminder& r : reminders) {
    FhirRequest create;
    create.interaction = Interaction::Create;
    create.type = "CommunicationRequest";
    create.method = "POST";
    create.base_url = req.base_url;
    create.prefer_return = PreferReturn::Minimal;
    create.if_none_exist = "identifier=" + url_encode(kReminderIdentifierSystem) + "%7C" + url_encode(r.key) +
                           "&subject=" + url_encode("Patient/" + req.id);
    fhir::Node node;
    if (Status s = fhir::parse_json(*services.defs, r.json, &node); !s) return error_response(std::move(s));
    create.resource = std::move(node);
    FhirResponse written = dispatch(services, create);
    if (!written.error) return written;
    w.StartObject();
    w.Key("response");
    w.StartObject();
    w.Key("status");
    std::string status = std::to_string(written.status) + (written.status == 201 ? " Created" : " OK");
    w.String(status.c_str());
    if (!written.location.empty()) {
      w.Key("location");
      w.String(written.location.c_str());
    }
    w.EndObject();
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  FhirResponse out;
  out.status = 200;
  out.json.assign(buf.GetString(), buf.GetSize());
  return out;
}

}  // namespace espace::interactions
