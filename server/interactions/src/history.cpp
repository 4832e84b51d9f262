// history (instance, type, system) — hl7.org/fhir/R4/http.html#history.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "common.h"

namespace espace::interactions {

namespace {

// Parameters this interaction understands; anything else is an error so that
// a typo does not silently return the whole history.
bool parse_count(const std::string& v, int* out) {
  if (v.empty() || v.size() > 6) return false;
  int n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  *out = n;
  return true;
}

}  // namespace

FhirResponse do_history(const Services& services, const FhirRequest& req) {
  storage::HistoryQuery q;
  q.type = req.interaction == Interaction::HistorySystem ? std::string() : req.type;
  q.id = req.interaction == Interaction::HistoryInstance ? req.id : std::string();
  q.count = services.limits.default_page_size;
  std::vector<std::pair<std::string, std::string>> kept;  // for the self/next links
  for (const auto& [name, value] : req.params) {
    if (name == "_count") {
      int n = 0;
      if (!parse_count(value, &n))
        return error_response(ErrorCategory::Invalid, "invalid", "_count must be a non-negative integer", "_count");
      q.count = std::min(n, services.limits.max_page_size);
      kept.emplace_back(name, std::to_string(q.count));
    } else if (name == "_since") {
      if (!parse_fhir_datetime(value, &q.since_us))
        return error_response(ErrorCategory::Invalid, "invalid", "_since must be an instant such as 2026-01-01T00:00:00Z",
                              "_since");
      kept.emplace_back(name, value);
    } else if (name == "_cursor") {
      int64_t cursor = 0;
      if (!parse_etag(value, &cursor) || cursor <= 0)
        return error_response(ErrorCategory::Invalid, "invalid", "malformed paging cursor", "_cursor");
      q.before_seq = cursor;
    } else if (name == "_format" || name == "_pretty") {
      kept.emplace_back(name, value);
    } else {
      return error_response(ErrorCategory::Invalid, "not-supported",
                            "unknown or unsupported history parameter '" + name + "'", name);
    }
  }
  if (req.interaction == Interaction::HistoryInstance) {
    storage::ResourceVersion v;
    Status s = services.store->read(req.type, req.id, &v);
    if (!s) return error_response(std::move(s));
  }

  storage::HistoryPage page;
  Status s = services.store->history(q, &page);
  if (!s) return error_response(std::move(s));

  std::string path = req.base_url;
  if (req.interaction != Interaction::HistorySystem) path += "/" + req.type;
  if (req.interaction == Interaction::HistoryInstance) path += "/" + req.id;
  path += "/_history";

  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("resourceType");
  w.String("Bundle");
  w.Key("type");
  w.String("history");
  w.Key("total");
  w.Int64(page.total);
  w.Key("link");
  w.StartArray();
  auto link = [&](const char* relation, const std::string& url) {
    w.StartObject();
    w.Key("relation");
    w.String(relation);
    w.Key("url");
    w.String(url);
    w.EndObject();
  };
  std::vector<std::pair<std::string, std::string>> self_params = kept;
  if (q.before_seq) self_params.emplace_back("_cursor", std::to_string(q.before_seq));
  link("self", path + query_string(self_params));
  // A full page may have more behind it; the cursor is the sequence of the
  // last version shown, so later writes never shift the pages.
  if (q.count > 0 && static_cast<int>(page.versions.size()) == q.count && page.last_seq > 1) {
    std::vector<std::pair<std::string, std::string>> next = kept;
    next.emplace_back("_cursor", std::to_string(page.last_seq));
    link("next", path + query_string(next));
  }
  w.EndArray();
  if (!page.versions.empty()) {
    w.Key("entry");
    w.StartArray();
    for (const storage::ResourceVersion& v : page.versions) {
      w.StartObject();
      w.Key("fullUrl");
      w.String(resource_url(req.base_url, v.type, v.id));
      if (!v.deleted) {
        w.Key("resource");
        w.RawValue(v.json.data(), v.json.size(), rapidjson::kObjectType);
      }
      w.Key("request");
      w.StartObject();
      w.Key("method");
      w.String(v.method);
      w.Key("url");
      w.String(v.method == "POST" ? v.type : v.type + "/" + v.id);
      w.EndObject();
      w.Key("response");
      w.StartObject();
      w.Key("status");
      w.String(v.deleted ? "204" : (v.method == "POST" || v.version == 1) ? "201" : "200");
      w.Key("etag");
      w.String(make_etag(v.version));
      w.Key("lastModified");
      w.String(format_instant(v.last_updated_us));
      w.EndObject();
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
  FhirResponse r;
  r.json.assign(buf.GetString(), buf.GetSize());
  return r;
}

}  // namespace espace::interactions
