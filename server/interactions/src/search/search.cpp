// search-type, search-system, compartment search — hl7.org/fhir/R4/search.html.
// Parameters become one storage::SearchQuery (query.cpp); the storage runs it
// (under a policy, the guarded storage of policy/guard.h, which leaves out what
// the caller may not see); the Bundle is built here.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <chrono>

#include "../common.h"
#include "../documents/mhd_provide.h"
#include "espace/profiles/validator.h"
#include "query.h"
#include "registry.h"

namespace espace::interactions {

namespace {

using search::SummaryMode;
using search::TotalMode;

// Marks a resource as a subset (search.html#summary): meta.tag SUBSETTED.
void add_subsetted_tag(rapidjson::Document& doc) {
  auto& alloc = doc.GetAllocator();
  if (!doc.HasMember("meta") || !doc["meta"].IsObject()) {
    rapidjson::Value meta(rapidjson::kObjectType);
    doc.AddMember("meta", meta, alloc);
  }
  rapidjson::Value& meta = doc["meta"];
  if (!meta.HasMember("tag") || !meta["tag"].IsArray()) {
    rapidjson::Value tags(rapidjson::kArrayType);
    meta.AddMember("tag", tags, alloc);
  }
  rapidjson::Value tag(rapidjson::kObjectType);
  tag.AddMember("system", "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", alloc);
  tag.AddMember("code", "SUBSETTED", alloc);
  tag.AddMember("display", "subsetted", alloc);
  meta["tag"].PushBack(tag, alloc);
}

// _summary (true/text/data) and _elements applied to the top-level elements
// of a stored resource.
std::string subset(const fhir::Definitions& defs, const std::string& json, SummaryMode summary,
                   const std::vector<std::string>& elements) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("resourceType")) return json;
  const fhir::TypeDef* type = defs.resource_type(doc["resourceType"].GetString());
  if (!type) return json;
  auto keep = [&](std::string_view member) {
    std::string_view name = member.starts_with("_") ? member.substr(1) : member;
    if (name == "resourceType" || name == "id" || name == "meta") return true;
    const fhir::TypeDef* chosen = nullptr;
    const fhir::ElementDef* el = type->find_json(name, &chosen);
    if (!elements.empty()) {
      for (const std::string& e : elements)
        if (e == name || (el && e == el->name)) return true;
      return false;
    }
    switch (summary) {
      case SummaryMode::True: return el && el->is_summary;
      case SummaryMode::Text: return name == "text" || (el && el->min > 0);
      case SummaryMode::Data: return name != "text";
      default: return true;
    }
  };
  for (auto it = doc.MemberBegin(); it != doc.MemberEnd();) {
    if (!keep(std::string_view(it->name.GetString(), it->name.GetStringLength())))
      it = doc.EraseMember(it);
    else
      ++it;
  }
  add_subsetted_tag(doc);
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  doc.Accept(w);
  return std::string(buf.GetString(), buf.GetSize());
}

}  // namespace

void prepare_search(const fhir::Definitions& defs) { search::Registry::get(defs); }

FhirResponse do_search(const Services& services, const FhirRequest& req) {
  const search::Registry& registry = search::Registry::get(*services.defs);
  search::ParseContext ctx;
  ctx.registry = &registry;
  ctx.defs = services.defs;
  ctx.base_url = req.base_url;
  ctx.lenient = req.lenient;
  ctx.limits = services.limits;
  ctx.terminology = services.validator ? services.validator->terminology() : nullptr;
  std::string type = req.interaction == Interaction::SearchType ? req.type : std::string();
  search::ParsedSearch parsed;
  if (Status s = search::parse_search(ctx, type, req.params, &parsed); !s) return error_response(std::move(s));
  storage::SearchQuery& q = parsed.query;
  // ITI-67: deleted and archived documents only when the query asks (documents/mhd_lifecycle.cpp).
  if (type == "DocumentReference") mhd::add_default_document_filters(req.params, &q);

  std::string path = type.empty() ? std::string() : "/" + type;
  if (!req.compartment_type.empty()) {
    if (!services.defs->resource_type(req.compartment_type))
      return error_response(ErrorCategory::NotFound, "not-supported", "unknown resource type '" + req.compartment_type + "'");
    storage::Condition cond;
    std::vector<std::string> member_types;
    if (Status s = search::compartment_condition(registry, req.compartment_type, req.compartment_id, type, &cond,
                                                 &member_types);
        !s)
      return error_response(std::move(s));
    q.all_of.push_back(std::move(cond));
    if (type.empty()) {
      if (q.types.empty()) {
        q.types = member_types;
      } else {
        std::vector<std::string> both;
        for (const std::string& t : q.types)
          if (std::find(member_types.begin(), member_types.end(), t) != member_types.end()) both.push_back(t);
        q.types = both.empty() ? std::vector<std::string>{"-"} : both;  // no member type: nothing matches
      }
    }
    path = "/" + req.compartment_type + "/" + req.compartment_id + "/" + (type.empty() ? "*" : type);
  }

  q.walk_threshold = services.limits.search_walk_threshold;
  bool count_only = parsed.summary == SummaryMode::Count;
  q.count = count_only ? 0 : parsed.count;
  // _count=0 asks for the number of matches only, like _summary=count.
  q.want_total = count_only || q.count == 0 || parsed.total == TotalMode::Accurate ||
                 parsed.total == TotalMode::Estimate;

  storage::SearchPage page;
  if (Status s = services.store->search(q, &page); !s) return error_response(std::move(s));

  int64_t total = page.total;
  if (total < 0 && parsed.total != TotalMode::None && q.offset == 0 && q.after_key == 0 && q.before_key == 0 &&
      !page.more)
    total = static_cast<int64_t>(page.matches.size());  // the whole result is on this page

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
  if (total >= 0) {
    w.Key("total");
    w.Int64(total);
  }
  w.Key("link");
  w.StartArray();
  auto link = [&](const char* relation, std::vector<std::pair<std::string, std::string>> params) {
    w.StartObject();
    str("relation", relation);
    str("url", link_url(req.base_url, path, params));
    w.EndObject();
  };
  std::vector<std::pair<std::string, std::string>> self = parsed.used;
  if (q.offset > 0) self.emplace_back("_offset", std::to_string(q.offset));
  if (q.after_key > 0) self.emplace_back("_after", std::to_string(q.after_key));
  if (q.before_key > 0) self.emplace_back("_before", std::to_string(q.before_key));
  link("self", self);
  // Creation order pages by key, so inserts and deletes elsewhere never
  // shift the pages; explicit sorts page by offset.
  bool keyset = q.sort.empty();
  bool backwards = keyset && q.before_key > 0;
  bool has_next = backwards ? !page.matches.empty() : page.more;
  bool has_prev = keyset ? (backwards ? page.more : q.after_key > 0) && !page.matches.empty() : q.offset > 0;
  if (has_next && !page.matches.empty()) {
    auto next = parsed.used;
    if (keyset)
      next.emplace_back("_after", std::to_string(page.matches.back().key));
    else
      next.emplace_back("_offset", std::to_string(q.offset + q.count));
    link("next", next);
  }
  if (has_prev && keyset) {
    auto prev = parsed.used;
    prev.emplace_back("_before", std::to_string(page.matches.front().key));
    link("previous", prev);
  }
  if (has_prev && !keyset) {
    auto prev = parsed.used;
    int64_t o = q.offset - q.count;
    if (o > 0) prev.emplace_back("_offset", std::to_string(o));
    link("previous", prev);
  }
  w.EndArray();

  bool subsetting = !parsed.elements.empty() || parsed.summary == SummaryMode::True ||
                    parsed.summary == SummaryMode::Text || parsed.summary == SummaryMode::Data;
  bool any_entry = !page.matches.empty() || !page.included.empty() || !parsed.ignored.empty();
  if (any_entry) {
    w.Key("entry");
    w.StartArray();
  }
  auto entry = [&](const storage::ResourceVersion& v, const char* mode) {
    w.StartObject();
    str("fullUrl", resource_url(req.base_url, v.type, v.id));
    w.Key("resource");
    if (subsetting) {
      std::string json = subset(*services.defs, v.json, parsed.summary, parsed.elements);
      w.RawValue(json.data(), json.size(), rapidjson::kObjectType);
    } else {
      w.RawValue(v.json.data(), v.json.size(), rapidjson::kObjectType);
    }
    w.Key("search");
    w.StartObject();
    str("mode", mode);
    w.EndObject();
    w.EndObject();
  };
  for (const storage::SearchMatch& m : page.matches) entry(m.resource, "match");
  for (const storage::ResourceVersion& v : page.included) entry(v, "include");
  if (!parsed.ignored.empty()) {
    std::vector<fhir::Issue> issues;
    for (const std::string& text : parsed.ignored) {
      fhir::Issue issue;
      issue.severity = fhir::Severity::Warning;
      issue.code = "not-supported";
      issue.diagnostics = "ignored parameter " + text;
      issues.push_back(std::move(issue));
    }
    std::string outcome = fhir::outcome_json(issues);
    w.StartObject();
    w.Key("resource");
    w.RawValue(outcome.data(), outcome.size(), rapidjson::kObjectType);
    w.Key("search");
    w.StartObject();
    str("mode", "outcome");
    w.EndObject();
    w.EndObject();
  }
  if (any_entry) w.EndArray();
  w.EndObject();
  FhirResponse r;
  r.json.assign(buf.GetString(), buf.GetSize());
  return r;
}

}  // namespace espace::interactions
