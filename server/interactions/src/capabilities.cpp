// capabilities — hl7.org/fhir/R4/http.html#capabilities, CapabilityStatement.
//
// Generated from the dispatch table, so it lists exactly what is implemented.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "common.h"
#include "search/registry.h"

namespace espace::interactions {

namespace {
const Interaction kTypeLevel[] = {Interaction::Read,   Interaction::VRead,           Interaction::Update,
                                  Interaction::Patch,  Interaction::Delete,          Interaction::HistoryInstance,
                                  Interaction::HistoryType, Interaction::Create, Interaction::SearchType};
const Interaction kSystemLevel[] = {Interaction::Transaction, Interaction::Batch, Interaction::HistorySystem,
                                    Interaction::SearchSystem};
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
  str("date", "2026-11-23");
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
  w.EndObject();
  w.EndArray();
  w.EndObject();
  FhirResponse r;
  r.json.assign(buf.GetString(), buf.GetSize());
  return r;
}

}  // namespace espace::interactions
