// Patient/[id]/$everything — hl7.org/fhir/R4/patient-operation-everything.html.
//
// A searchset Bundle: the Patient, every resource of its Patient compartment
// (matches), and the practitioners, organizations, locations, medications and
// devices they reference (includes). Everything is read through
// Services::store, so under a policy the guard filters, pages and includes
// exactly as for a search. Parameters: _since (instant), _type (types,
// comma-separated, repeatable), _count (page size); pages follow in creation
// order with the server's own _after cursor. start/end (care dates) are
// refused as not supported rather than silently ignored.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <chrono>

#include "common.h"
#include "search/query.h"
#include "search/registry.h"

namespace espace::interactions {

namespace {

// Types a compartment resource commonly points to that are outside the
// compartment but needed to read the record (the operation's description).
const char* const kSupportingTypes[] = {"Practitioner", "PractitionerRole", "Organization", "Location",
                                        "Medication",   "Device",           "Substance"};

// Inputs from the query string (GET) or a Parameters body (POST), as
// name/value pairs in the search syntax.
Status collect_inputs(const FhirRequest& req, std::vector<std::pair<std::string, std::string>>* out) {
  *out = req.params;
  if (!req.resource) return Status::ok();
  if (fhir::resource_type(*req.resource) != "Parameters")
    return Status::error(ErrorCategory::Invalid, "invalid", "$everything takes a Parameters resource in the body");
  for (const fhir::Node& p : req.resource->children) {
    if (!p.def || p.def->name != "parameter") continue;
    std::string name(p.child_value("name"));
    const fhir::Node* value = nullptr;
    for (const fhir::Node& c : p.children)
      if (c.name.starts_with("value") && c.has_value) value = &c;
    if (!value)
      return Status::error(ErrorCategory::Invalid, "required", "parameter '" + name + "' has no value", "Parameters.parameter");
    out->emplace_back(name, value->value);
  }
  return Status::ok();
}

}  // namespace

FhirResponse everything_operation(const Services& services, const FhirRequest& req) {
  if (req.type != "Patient" || req.id.empty())
    return error_response(ErrorCategory::NotFound, "not-supported", "$everything is defined on Patient/[id]");
  std::vector<std::pair<std::string, std::string>> inputs;
  if (Status s = collect_inputs(req, &inputs); !s) return error_response(std::move(s));

  // Inputs -> search parameters of a system-level search, parsed (and
  // checked) by the search engine.
  std::vector<std::pair<std::string, std::string>> params;  // for the parser
  std::vector<std::pair<std::string, std::string>> kept;    // for the links
  int64_t since_us = 0;
  bool patient_type_wanted = true;
  std::vector<std::string> wanted_types;
  for (const auto& [name, value] : inputs) {
    if (name == "_format" || name == "_pretty") {
      kept.emplace_back(name, value);
    } else if (name == "_since") {
      if (!parse_fhir_datetime(value, &since_us))
        return error_response(ErrorCategory::Invalid, "invalid", "_since must be an instant such as 2026-01-01T00:00:00Z",
                              "_since");
      params.emplace_back("_lastUpdated", "ge" + value);
      kept.emplace_back(name, value);
    } else if (name == "_type") {
      size_t start = 0;
      while (start <= value.size()) {
        size_t comma = value.find(',', start);
        std::string t = value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (!services.defs->resource_type(t))
          return error_response(ErrorCategory::Invalid, "invalid", "_type: unknown resource type '" + t + "'", "_type");
        wanted_types.push_back(t);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
      kept.emplace_back(name, value);
    } else if (name == "_count" || name == "_after") {
      params.emplace_back(name, value);
      if (name == "_count") kept.emplace_back(name, value);
    } else if (name == "start" || name == "end") {
      return error_response(ErrorCategory::Invalid, "not-supported",
                            "$everything: '" + name + "' (care dates) is not supported; use _since or _type", name);
    } else {
      return error_response(ErrorCategory::Invalid, "not-supported", "$everything: unknown parameter '" + name + "'",
                            name);
    }
  }
  if (!wanted_types.empty())
    patient_type_wanted = std::find(wanted_types.begin(), wanted_types.end(), "Patient") != wanted_types.end();

  const search::Registry& registry = search::Registry::get(*services.defs);
  search::ParseContext ctx;
  ctx.registry = &registry;
  ctx.defs = services.defs;
  ctx.base_url = req.base_url;
  ctx.limits = services.limits;
  search::ParsedSearch parsed;
  if (Status s = search::parse_search(ctx, "", params, &parsed); !s) return error_response(std::move(s));
  storage::SearchQuery& q = parsed.query;
  q.count = parsed.count;
  q.walk_threshold = services.limits.search_walk_threshold;

  // The Patient first (absent, or hidden by the policy: 404 alike).
  storage::ResourceVersion patient;
  if (Status s = services.store->read("Patient", req.id, &patient); !s) return error_response(std::move(s));
  if (patient.deleted) return error_response(ErrorCategory::Gone, "deleted", "Patient/" + req.id + " was deleted");
  bool first_page = q.after_key == 0;
  bool show_patient = first_page && patient_type_wanted && patient.last_updated_us >= since_us;

  storage::Condition in_compartment;
  std::vector<std::string> member_types;
  if (Status s = search::compartment_condition(registry, "Patient", req.id, "", &in_compartment, &member_types); !s)
    return error_response(std::move(s));
  q.all_of.push_back(std::move(in_compartment));
  if (wanted_types.empty()) {
    q.types = member_types;
  } else {
    for (const std::string& t : wanted_types)
      if (std::find(member_types.begin(), member_types.end(), t) != member_types.end()) q.types.push_back(t);
  }
  for (const char* target : kSupportingTypes) {
    if (!wanted_types.empty() && std::find(wanted_types.begin(), wanted_types.end(), target) == wanted_types.end())
      continue;
    storage::IncludeSpec spec;
    spec.source_type = "*";
    spec.param = "*";
    spec.target_type = target;
    q.includes.push_back(std::move(spec));
  }

  storage::SearchPage page;
  if (!q.types.empty() && q.count > 0)
    if (Status s = services.store->search(q, &page); !s) return error_response(std::move(s));

  std::string path = "/Patient/" + req.id + "/$everything";
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  auto str = [&](const char* k, const std::string& v) {
    w.Key(k);
    w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
  };
  w.StartObject();
  str("resourceType", "Bundle");
  str("id", new_id());
  w.Key("meta");
  w.StartObject();
  str("lastUpdated", format_instant(std::chrono::duration_cast<std::chrono::microseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count()));
  w.EndObject();
  str("type", "searchset");
  w.Key("link");
  w.StartArray();
  auto link = [&](const char* relation, const std::vector<std::pair<std::string, std::string>>& ps) {
    w.StartObject();
    str("relation", relation);
    str("url", link_url(req.base_url, path, ps));
    w.EndObject();
  };
  auto self = kept;
  if (q.after_key > 0) self.emplace_back("_after", std::to_string(q.after_key));
  link("self", self);
  if (page.more && !page.matches.empty()) {
    auto next = kept;
    next.emplace_back("_after", std::to_string(page.matches.back().key));
    link("next", next);
  }
  w.EndArray();
  auto entry = [&](const storage::ResourceVersion& v, const char* mode) {
    w.StartObject();
    str("fullUrl", resource_url(req.base_url, v.type, v.id));
    w.Key("resource");
    w.RawValue(v.json.data(), v.json.size(), rapidjson::kObjectType);
    w.Key("search");
    w.StartObject();
    str("mode", mode);
    w.EndObject();
    w.EndObject();
  };
  if (show_patient || !page.matches.empty() || !page.included.empty()) {
    w.Key("entry");
    w.StartArray();
    if (show_patient) entry(patient, "match");
    for (const storage::SearchMatch& m : page.matches)
      if (!(m.resource.type == "Patient" && m.resource.id == req.id)) entry(m.resource, "match");
    for (const storage::ResourceVersion& v : page.included) entry(v, "include");
    w.EndArray();
  }
  w.EndObject();
  FhirResponse r;
  r.json.assign(buf.GetString(), buf.GetSize());
  return r;
}

}  // namespace espace::interactions
