// batch and transaction — hl7.org/fhir/R4/http.html#transaction and #trules.
//
// A transaction is validated and prepared entirely before the storage write
// (ids assigned, references rewritten, bodies serialized), then every write
// runs in one storage transaction in the order DELETE, POST, PUT/PATCH: one
// failure rolls everything back. GET entries are answered after the commit.
// A batch runs each entry as an independent interaction.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <map>
#include <set>

#include "common.h"
#include "documents/mhd_provide.h"
#include "espace/interactions/validate.h"
#include "espace/fhir/json.h"

namespace espace::interactions {

namespace {

struct EntryRequest {
  std::string method;  // GET, POST, PUT, PATCH, DELETE, HEAD
  std::string url;     // as given
  std::string type, id, version_id, query;
  bool is_history = false;
  std::string if_match, if_none_exist, if_none_match, if_modified_since;
};

std::string entry_path(size_t i) { return "Bundle.entry[" + std::to_string(i) + "]"; }

Status entry_error(size_t i, ErrorCategory category, const std::string& code, const std::string& text,
                   const std::string& sub = "") {
  return Status::error(category, code, "entry " + std::to_string(i) + ": " + text,
                       entry_path(i) + (sub.empty() ? "" : "." + sub));
}

// Splits "Patient/1/_history/2?x=y" into its parts; false when the URL is not a
// relative FHIR URL this server understands.
bool parse_entry_url(std::string url, const std::string& base, EntryRequest* e) {
  if (!base.empty() && url.rfind(base + "/", 0) == 0) url = url.substr(base.size() + 1);
  if (!url.empty() && url.front() == '/') url.erase(0, 1);
  size_t q = url.find('?');
  if (q != std::string::npos) {
    e->query = url.substr(q + 1);
    url.resize(q);
  }
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= url.size()) {
    size_t slash = url.find('/', start);
    parts.push_back(url.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (parts.empty() || parts[0].empty()) return false;
  e->type = parts[0];
  if (parts.size() >= 2) e->id = parts[1];
  if (parts.size() >= 3) {
    if (parts[2] != "_history") return false;
    e->is_history = true;
  }
  if (parts.size() == 4) e->version_id = parts[3];
  if (parts.size() > 4) return false;
  if (parts.size() == 2 && parts[1] == "_history") {
    e->id.clear();
    e->is_history = true;
  }
  return true;
}

// Maps fullUrls of the bundle ("urn:uuid:…", absolute URLs) to "Type/id".
using ReferenceMap = std::map<std::string, std::string, std::less<>>;

void rewrite_references(fhir::Node& node, const ReferenceMap& map) {
  if (node.is_primitive()) {
    if (!node.has_value) return;
    const std::string& t = node.type->name;
    if (t == "uri" || t == "url" || t == "uuid" || t == "oid" || t == "canonical" || t == "string") {
      // Only Reference.reference is a string; other strings are left alone.
      if (t == "string" && !(node.def && node.def->path == "Reference.reference")) return;
      auto it = map.find(node.value);
      if (it != map.end()) node.value = it->second;
    } else if (t == "xhtml") {
      // Links in the narrative to bundle entries (http.html#trules).
      for (const auto& [from, to] : map) {
        for (const char* attr : {"href=\"", "src=\""}) {
          std::string needle = std::string(attr) + from + "\"";
          std::string repl = std::string(attr) + to + "\"";
          for (size_t at = node.value.find(needle); at != std::string::npos;
               at = node.value.find(needle, at + repl.size()))
            node.value.replace(at, needle.size(), repl);
        }
      }
    }
  }
  for (fhir::Node& c : node.children) rewrite_references(c, map);
}

// Conditional references "Patient?identifier=…" (http.html#trules) and
// dangling urn: references; fills the map as it resolves.
Status resolve_conditional_references(const Services& services, fhir::Node& node, ReferenceMap& map) {
  if (node.type && node.type->name == "Reference") {
    for (fhir::Node& c : node.children) {
      if (!c.def || c.def->name != "reference" || !c.has_value) continue;
      const std::string& ref = c.value;
      if (ref.rfind("urn:uuid:", 0) == 0 || ref.rfind("urn:oid:", 0) == 0) {
        auto it = map.find(ref);
        if (it == map.end())
          return Status::error(ErrorCategory::Invalid, "not-found",
                               "reference " + ref + " points to no entry of the bundle");
        c.value = it->second;
        continue;
      }
      size_t q = ref.find('?');
      if (q == std::string::npos || ref.find('/') < q) continue;
      auto known = map.find(ref);
      if (known == map.end()) {
        std::vector<std::string> ids;
        std::string type = ref.substr(0, q);
        if (!services.defs->resource_type(type))
          return Status::error(ErrorCategory::Invalid, "invalid", "conditional reference to unknown type " + type);
        Status s = resolve_criteria(services, type, std::string_view(ref).substr(q + 1), &ids);
        if (!s) return s;
        if (ids.size() != 1)
          return Status::error(ErrorCategory::PreconditionFailed, "multiple-matches",
                               "conditional reference " + ref + " matches " + std::to_string(ids.size()) +
                                   " resources (exactly one is required)");
        known = map.emplace(ref, type + "/" + ids[0]).first;
      }
      c.value = known->second;
    }
  }
  for (fhir::Node& c : node.children) {
    Status s = resolve_conditional_references(services, c, map);
    if (!s) return s;
  }
  return Status::ok();
}

// One response entry of a batch/transaction-response Bundle.
void write_entry(rapidjson::Writer<rapidjson::StringBuffer>& w, const FhirResponse& r, bool include_resource) {
  w.StartObject();
  int status = r.error.is_ok() ? r.status : http_status(r.error.category());
  std::string_view body = r.error.is_ok() ? std::string_view(r.json) : std::string_view();
  std::string outcome;
  if (!r.error.is_ok()) outcome = fhir::outcome_json(r.error.issues());
  if (include_resource && !body.empty()) {
    w.Key("resource");
    w.RawValue(body.data(), body.size(), rapidjson::kObjectType);
  }
  w.Key("response");
  w.StartObject();
  w.Key("status");
  w.String(std::to_string(status) + " " + reason_phrase(status));
  if (!r.location.empty()) {
    w.Key("location");
    w.String(r.location);
  }
  if (!r.etag.empty()) {
    w.Key("etag");
    w.String(r.etag);
  }
  if (!r.last_modified.empty()) {
    w.Key("lastModified");
    w.String(r.last_modified);
  }
  if (!outcome.empty()) {
    w.Key("outcome");
    w.RawValue(outcome.data(), outcome.size(), rapidjson::kObjectType);
  }
  w.EndObject();
  w.EndObject();
}

struct Entry {
  EntryRequest request;
  std::string full_url;
  std::optional<fhir::Node> resource;
};

// Reads the entries of a batch/transaction Bundle.
Status read_entries(const Services& services, const FhirRequest& req, fhir::Node& bundle, std::vector<Entry>* out) {
  size_t index = 0;
  for (fhir::Node& entry : bundle.children) {
    if (!entry.def || entry.def->name != "entry") continue;
    if (index >= services.limits.max_bundle_entries)
      return Status::error(ErrorCategory::TooLarge, "too-costly",
                           "the bundle has more than " + std::to_string(services.limits.max_bundle_entries) +
                               " entries");
    Entry e;
    e.full_url = std::string(entry.child_value("fullUrl"));
    for (fhir::Node& c : entry.children) {
      if (c.def && c.def->name == "resource") {
        c.def = nullptr;  // from here on it is a root resource of its own
        c.name = c.type->name;
        e.resource = std::move(c);
      }
    }
    const fhir::Node* request = entry.child("request");
    if (!request) return entry_error(index, ErrorCategory::Invalid, "required", "entry.request is missing", "request");
    e.request.method = std::string(request->child_value("method"));
    e.request.url = std::string(request->child_value("url"));
    e.request.if_match = std::string(request->child_value("ifMatch"));
    e.request.if_none_exist = std::string(request->child_value("ifNoneExist"));
    e.request.if_none_match = std::string(request->child_value("ifNoneMatch"));
    e.request.if_modified_since = std::string(request->child_value("ifModifiedSince"));
    if (!parse_entry_url(e.request.url, req.base_url, &e.request) || !services.defs->resource_type(e.request.type))
      return entry_error(index, ErrorCategory::Invalid, "invalid", "cannot understand request.url '" + e.request.url + "'",
                         "request.url");
    std::vector<std::pair<std::string, std::string>> decoded;
    if (!split_query(e.request.query, &decoded))
      return entry_error(index, ErrorCategory::Invalid, "invalid", "malformed percent-encoding in request.url",
                         "request.url");
    const std::string& m = e.request.method;
    bool needs_body = m == "POST" || m == "PUT";
    if (needs_body && !e.resource)
      return entry_error(index, ErrorCategory::Invalid, "required", m + " needs entry.resource", "resource");
    if (needs_body && fhir::resource_type(*e.resource) != e.request.type)
      return entry_error(index, ErrorCategory::Invalid, "invalid",
                         "entry.resource is a " + std::string(fhir::resource_type(*e.resource)) +
                             " but request.url names " + e.request.type,
                         "resource");
    if (m == "POST" && (!e.request.id.empty() || !e.request.query.empty()))
      return entry_error(index, ErrorCategory::Invalid, "invalid", "POST goes to the type URL", "request.url");
    if ((m == "PUT" || m == "DELETE" || m == "PATCH") && e.request.id.empty() && e.request.query.empty())
      return entry_error(index, ErrorCategory::Invalid, "invalid", m + " needs an id or search criteria in request.url",
                         "request.url");
    if (m == "PATCH")
      return entry_error(index, ErrorCategory::Invalid, "not-supported", "PATCH inside a bundle is not supported yet",
                         "request.method");
    if (m != "GET" && m != "HEAD" && m != "POST" && m != "PUT" && m != "DELETE")
      return entry_error(index, ErrorCategory::Invalid, "invalid", "unknown request.method '" + m + "'",
                         "request.method");
    out->push_back(std::move(e));
    ++index;
  }
  return Status::ok();
}

FhirRequest entry_as_request(const FhirRequest& outer, Entry& e) {
  FhirRequest r;
  r.base_url = outer.base_url;
  r.prefer_return = outer.prefer_return;
  r.type = e.request.type;
  r.id = e.request.id;
  r.version_id = e.request.version_id;
  r.if_match = e.request.if_match;
  r.if_none_exist = e.request.if_none_exist;
  r.if_none_match = e.request.if_none_match;
  r.if_modified_since = e.request.if_modified_since;
  // read_entries() already refused malformed queries.
  if (!e.request.query.empty()) split_query(e.request.query, &r.params);
  const std::string& m = e.request.method;
  if (m == "GET" || m == "HEAD") {
    if (e.request.is_history)
      r.interaction = e.request.id.empty() ? Interaction::HistoryType : Interaction::HistoryInstance;
    else if (!e.request.version_id.empty())
      r.interaction = Interaction::VRead;
    else if (!e.request.id.empty())
      r.interaction = Interaction::Read;
    else
      r.interaction = Interaction::SearchType;
  } else if (m == "POST") {
    r.interaction = Interaction::Create;
  } else if (m == "PUT") {
    r.interaction = e.request.id.empty() ? Interaction::ConditionalUpdate : Interaction::Update;
  } else if (m == "DELETE") {
    r.interaction = e.request.id.empty() ? Interaction::ConditionalDelete : Interaction::Delete;
  }
  if (e.resource) r.resource = std::move(*e.resource);
  return r;
}

FhirResponse run_batch(const Services& services, const FhirRequest& req, std::vector<Entry>& entries) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("resourceType");
  w.String("Bundle");
  w.Key("type");
  w.String("batch-response");
  if (!entries.empty()) {
    w.Key("entry");
    w.StartArray();
    for (Entry& e : entries) {
      FhirRequest sub = entry_as_request(req, e);
      FhirResponse r = dispatch(services, sub);
      write_entry(w, r, req.prefer_return != PreferReturn::Minimal);
    }
    w.EndArray();
  }
  w.EndObject();
  FhirResponse out;
  out.json.assign(buf.GetString(), buf.GetSize());
  return out;
}

// Processing order of http.html#trules.
int method_rank(const std::string& m) {
  if (m == "DELETE") return 0;
  if (m == "POST") return 1;
  if (m == "PUT" || m == "PATCH") return 2;
  return 3;
}

// `submission`: set for an ITI-65 Provide Document Bundle (documents/mhd_provide.h).
FhirResponse run_transaction(const Services& services, const FhirRequest& req, std::vector<Entry>& entries,
                             const mhd::Submission* submission) {
  const size_t n = entries.size();
  std::vector<WriteOp> ops(n);
  std::vector<bool> is_write(n, false);
  std::vector<FhirResponse> responses(n);
  std::vector<bool> answered(n, false);  // conditional create that matched: no write
  ReferenceMap refs;
  std::set<std::string> touched;  // "Type/id" of every write, to refuse doing two things to one resource

  // 1. Resolve the identity of every write and the fullUrl → Type/id map.
  for (size_t i = 0; i < n; ++i) {
    Entry& e = entries[i];
    const std::string& m = e.request.method;
    if (m == "GET" || m == "HEAD") continue;
    WriteOp& op = ops[i];
    op.type = e.request.type;
    op.method = m;
    if (Status s = parse_if_match(e.request.if_match, &op.if_match); !s)
      return error_response(entry_error(i, ErrorCategory::Invalid, "invalid", "malformed ifMatch", "request.ifMatch"));
    if (m == "POST") {
      op.kind = WriteOp::Kind::Create;
      if (!e.request.if_none_exist.empty()) {
        std::vector<std::string> ids;
        Status s = resolve_criteria(services, op.type, e.request.if_none_exist, &ids);
        if (!s) return error_response(entry_error(i, s.category(), "invalid", s.message(), "request.ifNoneExist"));
        if (ids.size() > 1)
          return error_response(entry_error(i, ErrorCategory::PreconditionFailed, "multiple-matches",
                                            "ifNoneExist matches several resources", "request.ifNoneExist"));
        if (ids.size() == 1) {
          op.id = ids[0];
          answered[i] = true;
        }
      }
      if (op.id.empty()) op.id = new_id();
      if (submission) {
        // Documents are stored under ids derived from their uniqueIds.
        auto forced = submission->id_of_full_url.find(e.full_url);
        if (forced != submission->id_of_full_url.end()) op.id = forced->second;
      }
    } else if (m == "PUT" || m == "DELETE") {
      op.kind = m == "PUT" ? WriteOp::Kind::Update : WriteOp::Kind::Delete;
      if (!e.request.id.empty()) {
        if (!is_valid_id(e.request.id))
          return error_response(entry_error(i, ErrorCategory::Invalid, "invalid", "malformed id", "request.url"));
        op.id = e.request.id;
      } else {
        std::vector<std::string> ids;
        Status s = resolve_criteria(services, op.type, e.request.query, &ids);
        if (!s) return error_response(entry_error(i, s.category(), "invalid", s.message(), "request.url"));
        if (ids.size() > 1)
          return error_response(entry_error(i, ErrorCategory::PreconditionFailed, "multiple-matches",
                                            "the criteria match several resources", "request.url"));
        if (ids.size() == 1) {
          op.id = ids[0];
        } else if (m == "DELETE") {
          answered[i] = true;  // nothing to delete
          responses[i].status = 204;
          continue;
        } else {
          std::string body_id(fhir::resource_id(*e.resource));
          op.id = body_id.empty() ? new_id() : body_id;
        }
      }
      if (m == "PUT") {
        std::string_view body_id = fhir::resource_id(*e.resource);
        if (!e.request.id.empty() && body_id != e.request.id)
          return error_response(entry_error(i, ErrorCategory::Invalid, "invalid",
                                            "the resource id must equal the id in request.url", "resource.id"));
      }
    }
    if (!touched.insert(op.type + "/" + op.id).second)
      return error_response(entry_error(i, ErrorCategory::Invalid, "invalid",
                                        "the transaction changes " + op.type + "/" + op.id + " more than once",
                                        "request.url"));
    is_write[i] = !answered[i];
    if (!e.full_url.empty() && m != "DELETE") {
      if (!refs.emplace(e.full_url, op.type + "/" + op.id).second)
        return error_response(entry_error(i, ErrorCategory::Invalid, "invalid", "duplicate fullUrl " + e.full_url,
                                          "fullUrl"));
    }
  }

  // 2. Rewrite references, then serialize every body (outside the writer).
  for (size_t i = 0; i < n; ++i) {
    Entry& e = entries[i];
    if (!is_write[i] || !e.resource || ops[i].kind == WriteOp::Kind::Delete) continue;
    rewrite_references(*e.resource, refs);
    Status s = resolve_conditional_references(services, *e.resource, refs);
    if (!s) return error_response(entry_error(i, s.category(), s.issues().front().code, s.message(), "resource"));
    s = PreparedBody::prepare(*e.resource, ops[i].id, &ops[i].body);
    if (!s) return error_response(std::move(s));
    ops[i].index = index_entries(*services.defs, *e.resource);
  }

  // 3. All writes in one storage transaction, in the processing order.
  std::vector<size_t> order;
  for (size_t i = 0; i < n; ++i)
    if (is_write[i]) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return method_rank(entries[a].request.method) < method_rank(entries[b].request.method);
  });
  std::vector<WriteOutcome> outcomes(n);
  size_t failed_at = 0;
  Status s = services.store->write([&](storage::WriteTxn& txn) {
    for (size_t i : order) {
      Status w = apply_write(txn, ops[i], &outcomes[i]);
      if (!w) {
        failed_at = i;
        return w;
      }
    }
    if (submission) {
      for (const WriteOp& supersede : submission->supersede) {
        WriteOutcome ignored;
        if (Status w = apply_write(txn, supersede, &ignored); !w) {
          failed_at = n;
          return w;
        }
      }
    }
    return Status::ok();
  });
  if (!s && submission) {
    if (auto explained = mhd::explain_failed_write(services, req, *submission, s, failed_at)) return *explained;
  }
  if (!s) {
    if (s.category() == ErrorCategory::Internal) return error_response(std::move(s));
    return error_response(entry_error(failed_at, s.category(), s.issues().front().code, s.message()));
  }

  // 4. Responses, in the order of the request entries; reads after the writes.
  for (size_t i = 0; i < n; ++i) {
    Entry& e = entries[i];
    const std::string& m = e.request.method;
    if (m == "GET" || m == "HEAD") {
      // Reads are answered after the commit, so a failed read is reported in
      // its entry and does not undo the writes.
      FhirRequest sub = entry_as_request(req, e);
      responses[i] = dispatch(services, sub);
    } else if (is_write[i]) {
      FhirRequest sub;
      sub.base_url = req.base_url;
      // An ITI-65 response carries no resources (below): no copies of them.
      sub.prefer_return = submission ? PreferReturn::Minimal : req.prefer_return;
      responses[i] = write_response(sub, ops[i], outcomes[i]);
    } else if (answered[i] && m == "POST") {
      responses[i] = existing_resource_response(services, req, ops[i].type, ops[i].id);
    }
  }

  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("resourceType");
  w.String("Bundle");
  w.Key("type");
  w.String("transaction-response");
  if (n) {
    w.Key("entry");
    w.StartArray();
    // ITI-65 answers with statuses and locations only (MHD 2:3.65.4.2): echoing
    // the documents back would double the memory of a large submission.
    const bool with_resources = req.prefer_return != PreferReturn::Minimal && !submission;
    for (size_t i = 0; i < n; ++i) write_entry(w, responses[i], with_resources);
    w.EndArray();
  }
  w.EndObject();
  FhirResponse out;
  out.json.assign(buf.GetString(), buf.GetSize());
  return out;
}

}  // namespace

FhirResponse do_bundle(const Services& services, const FhirRequest& req) {
  if (!req.resource || fhir::resource_type(*req.resource) != "Bundle")
    return error_response(ErrorCategory::Invalid, "invalid", "POST to the base URL takes a batch or transaction Bundle");
  fhir::Node bundle = *req.resource;
  std::string_view type = bundle.child_value("type");
  if (type != "batch" && type != "transaction")
    return error_response(ErrorCategory::Invalid, "invalid",
                          "Bundle.type must be batch or transaction (got '" + std::string(type) + "')", "Bundle.type");
  // A transaction is all or nothing: the whole Bundle is validated first, so
  // issues carry Bundle.entry[i] locations and Bundle-internal references are
  // checked. Batch entries are validated one by one as they run.
  if (type == "transaction")
    if (Status v = validate_for_write(services, bundle); !v) return error_response(std::move(v));
  std::optional<mhd::Submission> submission;
  if (type == "transaction" && mhd::is_provide_bundle(bundle)) {
    submission.emplace();
    if (Status m = mhd::prepare_submission(services, req.base_url, bundle, &*submission); !m)
      return error_response(std::move(m));
  }
  std::vector<Entry> entries;
  Status s = read_entries(services, req, bundle, &entries);
  if (!s) return error_response(std::move(s));
  return type == "batch" ? run_batch(services, req, entries) : run_transaction(services, req, entries, submission ? &*submission : nullptr);
}

}  // namespace espace::interactions
