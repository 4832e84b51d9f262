// AuditEvent over the REST API, served from the storage's audit table
// (storage.h, AuditRecord): read, vread (version 1, the only one),
// history-instance and search by patient and date, newest first. Only the
// server writes AuditEvents: every write interaction answers 405. Who may
// read which events is the policy's decision (the guard's storage filters
// read_audit and search_audit).
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cctype>
#include <chrono>

#include "common.h"

namespace espace::interactions {

FhirResponse do_audit_event(const Services& services, const FhirRequest& req);

namespace {

constexpr int kDefaultCount = 50;

FhirResponse written_by_server_only() {
  return error_response(ErrorCategory::NotAllowed, "not-supported",
                        "AuditEvent resources are written by the server only (create, update, patch and delete are "
                        "not allowed)");
}

// The end (exclusive) of the period a partial FHIR date or dateTime denotes:
// 2026 -> 2027-01-01, 2026-11 -> 2026-12-01, 2026-11-23 -> next day, a time to
// the second -> one second later.
bool period_end(std::string_view text, int64_t start_us, int64_t* end_us) {
  if (text.size() == 4 || text.size() == 7) {
    int year = std::stoi(std::string(text.substr(0, 4)));
    int month = text.size() == 7 ? std::stoi(std::string(text.substr(5, 2))) : 12;
    if (month == 12) {
      ++year;
      month = 1;
    } else {
      ++month;
    }
    if (year > 9998) return false;
    std::string next = std::to_string(year);
    next.insert(0, 4 - std::min<size_t>(4, next.size()), '0');
    if (text.size() == 7) next += (month < 10 ? "-0" : "-") + std::to_string(month);
    return parse_fhir_datetime(next, end_us);
  }
  if (text.size() == 10) {
    *end_us = start_us + int64_t{86400} * 1000000;
    return true;
  }
  bool fraction = text.find('.') != std::string_view::npos;
  *end_us = start_us + (fraction ? 1 : 1000000);
  return true;
}

// Narrows [since, before) by one date criterion (search.html#prefix).
Status apply_date(const std::string& raw, int64_t* since, int64_t* before) {
  std::string_view v = raw;
  std::string prefix = "eq";
  if (v.size() >= 2 && std::isalpha(static_cast<unsigned char>(v[0])) &&
      std::isalpha(static_cast<unsigned char>(v[1]))) {
    prefix = std::string(v.substr(0, 2));
    v.remove_prefix(2);
  }
  int64_t start = 0, end = 0;
  if (!parse_fhir_datetime(v, &start) || !period_end(v, start, &end))
    return Status::error(ErrorCategory::Invalid, "invalid", "date: '" + raw + "' is not a FHIR date or dateTime",
                         "date");
  auto at_least = [&](int64_t t) { *since = std::max(*since, t); };
  auto below = [&](int64_t t) { *before = *before == 0 ? t : std::min(*before, t); };
  if (prefix == "eq") {
    at_least(start);
    below(end);
  } else if (prefix == "ge") {
    at_least(start);
  } else if (prefix == "gt" || prefix == "sa") {
    at_least(end);
  } else if (prefix == "le") {
    below(end);
  } else if (prefix == "lt" || prefix == "eb") {
    below(start);
  } else {
    return Status::error(ErrorCategory::Invalid, "not-supported",
                         "date: prefix '" + prefix + "' is not supported for AuditEvent", "date");
  }
  return Status::ok();
}

bool parse_positive(const std::string& text, int64_t max, int64_t* out) {
  if (text.empty() || text.size() > 18) return false;
  int64_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  if (n < 1 || n > max) return false;
  *out = n;
  return true;
}

FhirResponse read_event(const Services& services, const FhirRequest& req, const char* version) {
  if (version && std::string_view(version) != "1") {
    int64_t n = 0;
    // Audit events have one version; any other is as absent as an unknown id.
    if (!parse_etag(version, &n) || n != 1)
      return error_response(ErrorCategory::NotFound, "not-found",
                            "AuditEvent/" + req.id + " has no version " + std::string(version));
  }
  storage::AuditRecord rec;
  if (Status s = services.store->read_audit(req.id, &rec); !s) return error_response(std::move(s));
  FhirResponse r;
  r.etag = make_etag(1);
  r.last_modified = format_http_date(rec.recorded_us);
  r.content_location = version_url(req.base_url, "AuditEvent", req.id, 1);
  if (!req.if_none_match.empty()) {
    int64_t v = 0;
    if (req.if_none_match == "*" || (parse_etag(req.if_none_match, &v) && v == 1)) {
      r.status = 304;
      return r;
    }
  }
  r.json = std::move(rec.json);
  return r;
}

void write_string(rapidjson::Writer<rapidjson::StringBuffer>& w, const char* key, const std::string& value) {
  w.Key(key);
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

// A Bundle (searchset or history) of audit records.
std::string bundle(const FhirRequest& req, const char* type, const std::vector<storage::AuditRecord>& records,
                   const std::string& self, const std::string& next) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  write_string(w, "resourceType", "Bundle");
  write_string(w, "id", new_id());
  w.Key("meta");
  w.StartObject();
  write_string(w, "lastUpdated",
               format_instant(std::chrono::duration_cast<std::chrono::microseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count()));
  w.EndObject();
  write_string(w, "type", type);
  if (std::string_view(type) == "history") {
    w.Key("total");
    w.Int64(static_cast<int64_t>(records.size()));
  }
  w.Key("link");
  w.StartArray();
  w.StartObject();
  write_string(w, "relation", "self");
  write_string(w, "url", self);
  w.EndObject();
  if (!next.empty()) {
    w.StartObject();
    write_string(w, "relation", "next");
    write_string(w, "url", next);
    w.EndObject();
  }
  w.EndArray();
  if (!records.empty()) {
    w.Key("entry");
    w.StartArray();
    for (const storage::AuditRecord& r : records) {
      w.StartObject();
      write_string(w, "fullUrl", resource_url(req.base_url, "AuditEvent", r.id));
      w.Key("resource");
      w.RawValue(r.json.data(), r.json.size(), rapidjson::kObjectType);
      if (std::string_view(type) == "searchset") {
        w.Key("search");
        w.StartObject();
        write_string(w, "mode", "match");
        w.EndObject();
      } else {
        w.Key("request");
        w.StartObject();
        write_string(w, "method", "POST");
        write_string(w, "url", "AuditEvent");
        w.EndObject();
      }
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

FhirResponse history_instance(const Services& services, const FhirRequest& req) {
  storage::AuditRecord rec;
  if (Status s = services.store->read_audit(req.id, &rec); !s) return error_response(std::move(s));
  FhirResponse r;
  std::string path = "AuditEvent/" + req.id + "/_history";
  r.json = bundle(req, "history", {rec}, req.base_url + "/" + path, {});
  return r;
}

FhirResponse search_events(const Services& services, const FhirRequest& req) {
  storage::AuditQuery q;
  q.count = kDefaultCount;
  std::vector<std::pair<std::string, std::string>> used;  // echoed in links
  if (req.compartment_type == "Patient") {
    q.patient = req.compartment_id;
  } else if (!req.compartment_type.empty()) {
    return error_response(ErrorCategory::Invalid, "not-supported",
                          "AuditEvent is searched in the Patient compartment only");
  }
  for (const auto& [name, value] : req.params) {
    if (name == "patient" || name == "patient:Patient") {
      std::string_view id = value;
      if (id.rfind("Patient/", 0) == 0) id.remove_prefix(8);
      if (!is_valid_id(id))
        return error_response(ErrorCategory::Invalid, "invalid",
                              "patient: give one Patient id or reference (several are not supported)", "patient");
      if (!q.patient.empty() && q.patient != id)
        return error_response(ErrorCategory::Invalid, "invalid", "patient: only one patient per search", "patient");
      q.patient = std::string(id);
      used.emplace_back("patient", value);
    } else if (name == "date") {
      if (Status s = apply_date(value, &q.since_us, &q.before_us); !s) return error_response(std::move(s));
      used.emplace_back(name, value);
    } else if (name == "_count") {
      int64_t n = 0;
      if (!parse_positive(value, storage::kMaxAuditCount, &n))
        return error_response(ErrorCategory::Invalid, "invalid",
                              "_count must be an integer from 1 to " + std::to_string(storage::kMaxAuditCount),
                              "_count");
      q.count = static_cast<int>(n);
      used.emplace_back(name, value);
    } else if (name == "_cursor") {
      int64_t n = 0;
      if (!parse_positive(value, INT64_MAX / 2, &n))
        return error_response(ErrorCategory::Invalid, "invalid", "_cursor: not a cursor of this server", "_cursor");
      q.before_seq = n;
    } else if (name == "_sort") {
      // Newest first is the only order.
      if (value != "-date")
        return error_response(ErrorCategory::Invalid, "not-supported", "AuditEvent searches sort by -date only",
                              "_sort");
    } else if (name == "_format" || name == "_pretty" || name == "_total") {
      // Rendering is the http layer's; totals are not given (the policy may hide events).
    } else if (req.lenient) {
      continue;  // Prefer: handling=lenient
    } else {
      return error_response(ErrorCategory::Invalid, "not-supported",
                            "AuditEvent search supports patient, date, _count and _sort=-date; not '" + name + "'",
                            name);
    }
  }
  if (q.since_us != 0 && q.before_us != 0 && q.since_us >= q.before_us) {
    FhirResponse r;
    r.json = bundle(req, "searchset", {}, link_url(req.base_url, "/AuditEvent", used), {});
    return r;
  }
  storage::AuditPage page;
  if (Status s = services.store->search_audit(q, &page); !s) return error_response(std::move(s));
  const std::string path = req.compartment_type.empty() ? std::string("AuditEvent")
                                                        : "Patient/" + req.compartment_id + "/AuditEvent";
  auto self_params = used;
  if (q.before_seq) self_params.emplace_back("_cursor", std::to_string(q.before_seq));
  std::string next;
  if (page.more && page.last_seq > 0) {
    auto next_params = used;
    next_params.emplace_back("_cursor", std::to_string(page.last_seq));
    next = link_url(req.base_url, "/" + path, next_params);
  }
  FhirResponse r;
  r.json = bundle(req, "searchset", page.records, link_url(req.base_url, "/" + path, self_params), next);
  return r;
}

}  // namespace

FhirResponse do_audit_event(const Services& services, const FhirRequest& req) {
  switch (req.interaction) {
    case Interaction::Read: return read_event(services, req, nullptr);
    case Interaction::VRead: return read_event(services, req, req.version_id.c_str());
    case Interaction::HistoryInstance: return history_instance(services, req);
    case Interaction::SearchType: return search_events(services, req);
    case Interaction::Create:
    case Interaction::Update:
    case Interaction::Patch:
    case Interaction::Delete:
    case Interaction::ConditionalUpdate:
    case Interaction::ConditionalDelete:
    case Interaction::ConditionalPatch: return written_by_server_only();
    default:
      return error_response(ErrorCategory::NotAllowed, "not-supported",
                            std::string(interaction_code(req.interaction)) +
                                " is not supported for AuditEvent (read, vread, history of one event and search are)");
  }
}

}  // namespace espace::interactions
