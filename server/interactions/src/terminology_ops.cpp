// $expand, $validate-code, $lookup and $subsumes.
#include "espace/interactions/terminology_ops.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <chrono>
#include <ctime>

#include "common.h"
#include "espace/profiles/validator.h"
#include "espace/terminology/terminology.h"

namespace espace::interactions {

namespace {

constexpr size_t kMaxExpansionReturned = 10000;

struct Args {
  std::string url, system, code, display;
  std::string code_a, code_b;  // $subsumes
};

// Query parameters first, then a Parameters body.
Args read_args(const FhirRequest& req) {
  Args a;
  for (const auto& [name, value] : req.params) {
    if (name == "url") a.url = value;
    else if (name == "system") a.system = value;
    else if (name == "code") a.code = value;
    else if (name == "display") a.display = value;
    else if (name == "codeA") a.code_a = value;
    else if (name == "codeB") a.code_b = value;
  }
  if (req.resource && fhir::resource_type(*req.resource) == "Parameters") {
    for (const fhir::Node& p : req.resource->children) {
      if (!p.def || p.def->name != "parameter") continue;
      std::string_view name = p.child_value("name");
      const fhir::Node* value = nullptr;
      for (const fhir::Node& c : p.children)
        if (c.def && c.def->name == "value") value = &c;
      if (!value) continue;
      if (value->type && value->type->name == "Coding") {
        if (name == "coding") {
          a.system = std::string(value->child_value("system"));
          a.code = std::string(value->child_value("code"));
        } else if (name == "codingA" || name == "codingB") {
          a.system = std::string(value->child_value("system"));
          (name == "codingA" ? a.code_a : a.code_b) = std::string(value->child_value("code"));
        }
        continue;
      }
      std::string v = value->value;
      if (name == "url") a.url = v;
      else if (name == "system") a.system = v;
      else if (name == "code") a.code = v;
      else if (name == "codeA") a.code_a = v;
      else if (name == "codeB") a.code_b = v;
    }
  }
  // "system|version" and "url|version": the store holds one version.
  a.url = a.url.substr(0, a.url.find('|'));
  a.system = a.system.substr(0, a.system.find('|'));
  return a;
}

std::string now_instant() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void key_string(Writer& w, const char* key, const std::string& value) {
  w.Key(key);
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

void parameter(Writer& w, const char* name, const char* value_key, const std::string& value) {
  w.StartObject();
  key_string(w, "name", name);
  key_string(w, value_key, value);
  w.EndObject();
}

FhirResponse expand(const terminology::Store& store, const FhirRequest& req, const Args& a) {
  std::string url = a.url;
  if (url.empty() && !req.id.empty()) url = "http://hl7.org/fhir/ValueSet/" + req.id;
  if (url.empty())
    return error_response(ErrorCategory::Invalid, "required", "$expand needs the url of the value set", "url");
  std::shared_ptr<const terminology::Expansion> e;
  if (fhir::Status s = store.expand(url, &e); !s) return error_response(std::move(s));
  if (!e->is_complete())
    return error_response(ErrorCategory::Unprocessable, "too-costly",
                          "value set " + url + " cannot be expanded here: " +
                              (e->notes.empty() ? std::string("external code systems") : e->notes.front()));
  if (e->codes.size() > kMaxExpansionReturned)
    return error_response(ErrorCategory::Unprocessable, "too-costly",
                          "the expansion has " + std::to_string(e->codes.size()) + " codes (at most " +
                              std::to_string(kMaxExpansionReturned) + " are returned)");
  const terminology::ValueSetDef* def = store.value_set(url);
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  key_string(w, "resourceType", "ValueSet");
  key_string(w, "url", url);
  if (def && !def->name.empty()) key_string(w, "name", def->name);
  key_string(w, "status", "active");
  w.Key("expansion");
  w.StartObject();
  key_string(w, "timestamp", now_instant());
  w.Key("total");
  w.Int(static_cast<int>(e->codes.size()));
  if (!e->codes.empty()) {
    w.Key("contains");
    w.StartArray();
    for (const terminology::ExpandedCode& c : e->codes) {
      w.StartObject();
      if (!c.system.empty()) key_string(w, "system", c.system);
      key_string(w, "code", c.code);
      if (!c.display.empty()) key_string(w, "display", c.display);
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
  w.EndObject();
  FhirResponse r;
  r.json.assign(buf.GetString(), buf.GetSize());
  return r;
}

FhirResponse validate_code(const terminology::Store& store, const FhirRequest& req, const Args& a) {
  std::string url = a.url;
  if (url.empty() && !req.id.empty()) url = "http://hl7.org/fhir/ValueSet/" + req.id;
  if (url.empty() || a.code.empty())
    return error_response(ErrorCategory::Invalid, "required", "$validate-code needs url and code (or coding)");
  terminology::CodeResult res = store.validate_code(url, a.system, a.code);
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  key_string(w, "resourceType", "Parameters");
  w.Key("parameter");
  w.StartArray();
  w.StartObject();
  key_string(w, "name", "result");
  w.Key("valueBoolean");
  w.Bool(res.validity == terminology::Validity::Valid);
  w.EndObject();
  if (res.validity == terminology::Validity::NotChecked)
    parameter(w, "message", "valueString", "not checked: " + res.message);
  else if (!res.message.empty())
    parameter(w, "message", "valueString", res.message);
  if (!res.display.empty()) parameter(w, "display", "valueString", res.display);
  w.EndArray();
  w.EndObject();
  FhirResponse r;
  r.json.assign(buf.GetString(), buf.GetSize());
  return r;
}

FhirResponse lookup(const terminology::Store& store, const Args& a) {
  if (a.system.empty() || a.code.empty())
    return error_response(ErrorCategory::Invalid, "required", "$lookup needs system and code (or coding)");
  terminology::CodeResult res = store.lookup(a.system, a.code);
  if (res.validity != terminology::Validity::Valid)
    return error_response(ErrorCategory::NotFound, "not-found",
                          res.validity == terminology::Validity::Invalid ? res.message : "not checked: " + res.message);
  const terminology::CodeSystem* cs = store.code_system(a.system);
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  key_string(w, "resourceType", "Parameters");
  w.Key("parameter");
  w.StartArray();
  parameter(w, "name", "valueString", cs && !cs->name.empty() ? cs->name : a.system);
  if (cs && !cs->version.empty()) parameter(w, "version", "valueString", cs->version);
  parameter(w, "display", "valueString", res.display.empty() ? a.code : res.display);
  w.EndArray();
  w.EndObject();
  FhirResponse r;
  r.json.assign(buf.GetString(), buf.GetSize());
  return r;
}

// codesystem-operation-subsumes.html: how codeA relates to codeB in the
// system's is-a hierarchy. A system we do not hold is never guessed at.
FhirResponse subsumes(const terminology::Store& store, const Args& a) {
  if (a.system.empty() || a.code_a.empty() || a.code_b.empty())
    return error_response(ErrorCategory::Invalid, "required",
                          "$subsumes needs system, codeA and codeB (or codingA and codingB)");
  terminology::Validity a_over_b = store.subsumes(a.system, a.code_a, a.code_b);
  if (a_over_b == terminology::Validity::NotChecked)
    return error_response(ErrorCategory::NotFound, "not-found",
                          "not checked: this server does not hold the hierarchy of " + a.system);
  for (const std::string* code : {&a.code_a, &a.code_b})
    if (store.lookup(a.system, *code).validity != terminology::Validity::Valid)
      return error_response(ErrorCategory::NotFound, "not-found", "unknown code '" + *code + "' in " + a.system);
  const bool b_over_a = store.subsumes(a.system, a.code_b, a.code_a) == terminology::Validity::Valid;
  const bool a_over = a_over_b == terminology::Validity::Valid;
  const char* outcome = a_over && b_over_a ? "equivalent"
                        : a_over           ? "subsumes"
                        : b_over_a         ? "subsumed-by"
                                           : "not-subsumed";
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  key_string(w, "resourceType", "Parameters");
  w.Key("parameter");
  w.StartArray();
  parameter(w, "outcome", "valueCode", outcome);
  w.EndArray();
  w.EndObject();
  FhirResponse r;
  r.json.assign(buf.GetString(), buf.GetSize());
  return r;
}

}  // namespace

bool is_terminology_operation(const std::string& operation) {
  return operation == "expand" || operation == "validate-code" || operation == "lookup" || operation == "subsumes";
}

FhirResponse terminology_operation(const Services& services, const FhirRequest& req, const std::string& operation) {
  const terminology::Store* store = services.validator ? services.validator->terminology() : nullptr;
  if (!store) return error_response(ErrorCategory::NotFound, "not-supported", "this server has no terminology store");
  const std::string expected_type = operation == "lookup" || operation == "subsumes" ? "CodeSystem" : "ValueSet";
  if (req.type != expected_type)
    return error_response(ErrorCategory::NotFound, "not-supported",
                          "$" + operation + " is an operation on " + expected_type);
  Args a = read_args(req);
  if (operation == "expand") return expand(*store, req, a);
  if (operation == "validate-code") return validate_code(*store, req, a);
  if (operation == "subsumes") return subsumes(*store, a);
  return lookup(*store, a);
}

}  // namespace espace::interactions
