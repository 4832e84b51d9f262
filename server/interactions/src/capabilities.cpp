// capabilities — hl7.org/fhir/R4/http.html#capabilities, CapabilityStatement.
//
// Generated from the dispatch table, so it lists exactly what is implemented.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <chrono>
#include <ctime>

#include "common.h"
#include "espace/interactions/operations.h"
#include "search/registry.h"

namespace espace::interactions {

namespace {
const Interaction kTypeLevel[] = {Interaction::Read,   Interaction::VRead,           Interaction::Update,
                                  Interaction::Patch,  Interaction::Delete,          Interaction::HistoryInstance,
                                  Interaction::HistoryType, Interaction::Create, Interaction::SearchType};
const Interaction kSystemLevel[] = {Interaction::Transaction, Interaction::Batch, Interaction::HistorySystem,
                                    Interaction::SearchSystem};

// The canonical OperationDefinition of an operation: the specification's own
// for the operations R4 defines, the Bulk Data IG's for $export (R4 has none),
// ours otherwise.
std::string operation_definition(const OperationDef& op, const std::string& type) {
  static const char* const kStandard[][2] = {
      {"validate", "Resource-validate"},      {"expand", "ValueSet-expand"},
      {"validate-code", "ValueSet-validate-code"}, {"lookup", "CodeSystem-lookup"},
      {"subsumes", "CodeSystem-subsumes"},
      {"everything", "Patient-everything"},
  };
  for (const auto& [name, id] : kStandard)
    if (op.name == name) return std::string("http://hl7.org/fhir/OperationDefinition/") + id;
  if (op.name == "export")
    return std::string("http://hl7.org/fhir/uv/bulkdata/OperationDefinition/") +
           (type == "Patient" ? "patient-export" : "export");
  return "https://espace.example/fhir/OperationDefinition/" + (type.empty() ? std::string() : type + "-") + op.name;
}

bool applies_to(const OperationDef& op, const std::string& type) {
  if (!op.type && !op.instance) return false;
  if (op.types.empty()) return true;
  for (const std::string& t : op.types)
    if (t == type) return true;
  return false;
}

// rest[.resource].operation, left out when no operation applies (FHIR JSON
// has no empty arrays).
template <typename Writer, typename Applies>
void write_operations(Writer& w, const std::string& type, Applies applies) {
  bool any = false;
  for (const OperationDef& op : operation_table()) {
    if (!applies(op)) continue;
    if (!any) {
      w.Key("operation");
      w.StartArray();
      any = true;
    }
    w.StartObject();
    w.Key("name");
    w.String(op.name);
    w.Key("definition");
    w.String(operation_definition(op, type));
    w.EndObject();
  }
  if (any) w.EndArray();
}

// The statement's date: when this server process started (the statement
// describes the running server, generated from its tables).
const std::string& started_date() {
  static const std::string date = [] {
    std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[16];
    std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
    return std::string(buf);
  }();
  return date;
}
}  // namespace

FhirResponse do_capabilities(const Services& services, const FhirRequest& req) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  auto str = [&](const char* k, const std::string& v) {
    w.Key(k);
    w.String(v);
  };
  w.StartObject();
  str("resourceType", "CapabilityStatement");
  str("status", "active");
  str("date", started_date());
  str("publisher", "espace");
  str("kind", "instance");
  w.Key("software");
  w.StartObject();
  str("name", "espace");
  str("version", "0.1.0");
  w.EndObject();
  w.Key("implementation");
  w.StartObject();
  str("description", "espace FHIR R4 server");
  str("url", req.base_url);
  w.EndObject();
  str("fhirVersion", "4.0.1");
  w.Key("format");
  w.StartArray();
  w.String("application/fhir+json");
  w.String("application/fhir+xml");
  w.EndArray();
  w.Key("patchFormat");
  w.StartArray();
  w.String("application/json-patch+json");
  w.EndArray();
  w.Key("rest");
  w.StartArray();
  w.StartObject();
  str("mode", "server");
  w.Key("resource");
  w.StartArray();
  const search::Registry& registry = search::Registry::get(*services.defs);
  for (const std::string& type : services.defs->resource_type_names()) {
    w.StartObject();
    str("type", type);
    w.Key("interaction");
    w.StartArray();
    for (Interaction i : kTypeLevel) {
      w.StartObject();
      str("code", interaction_code(i));
      w.EndObject();
    }
    w.EndArray();
    str("versioning", "versioned-update");
    w.Key("readHistory");
    w.Bool(true);
    w.Key("updateCreate");
    w.Bool(true);
    w.Key("conditionalCreate");
    w.Bool(true);
    str("conditionalRead", "not-supported");
    w.Key("conditionalUpdate");
    w.Bool(true);
    str("conditionalDelete", "single");
    // The parameters the engine evaluates: those with an expression of a
    // supported type, plus _id and _lastUpdated (from the version rows) and
    // _text (the narrative). Composites have an expression only when supported.
    w.Key("searchInclude");
    w.StartArray();
    w.String("*");
    w.EndArray();
    w.Key("searchRevInclude");
    w.StartArray();
    w.String("*");
    w.EndArray();
    w.Key("searchParam");
    w.StartArray();
    if (const auto* params = registry.params_of(type)) {
      for (const auto& [code, def] : *params) {
        bool works = code == "_id" || code == "_lastUpdated" || code == "_text" ||
                     (def.expression && def.type != search::ParamType::Composite &&
                      def.type != search::ParamType::Special);
        if (!works) continue;
        w.StartObject();
        str("name", code);
        if (!def.url.empty()) str("definition", def.url);
        str("type", search::param_type_name(def.type));
        w.EndObject();
      }
    }
    w.EndArray();
    write_operations(w, type, [&](const OperationDef& op) { return applies_to(op, type); });
    w.EndObject();
  }
  w.EndArray();
  w.Key("interaction");
  w.StartArray();
  for (Interaction i : kSystemLevel) {
    w.StartObject();
    str("code", interaction_code(i));
    w.EndObject();
  }
  w.EndArray();
  write_operations(w, {}, [](const OperationDef& op) { return op.system; });
  w.EndObject();
  w.EndArray();
  w.EndObject();
  FhirResponse r;
  r.json.assign(buf.GetString(), buf.GetSize());
  return r;
}

}  // namespace espace::interactions
