#include "espace/http/fhir_api.h"

#include <rapidjson/prettywriter.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <optional>

#include "espace/fhir/json.h"
#include "espace/fhir/xml.h"
#include "espace/http/compression.h"
#include "espace/http/negotiation.h"
#include "espace/http/routes.h"
#include "espace/http/worker_pool.h"
#include "espace/interactions/binary_retrieve.h"
#include "espace/interactions/bulk_export.h"
#include "espace/interactions/operations.h"

namespace espace::http {

using fhir::ErrorCategory;
using fhir::Status;
using interactions::FhirRequest;
using interactions::FhirResponse;
using interactions::Interaction;

FhirApi::FhirApi(const interactions::Services& services, const policy::Policy& policy, WorkerPool& pool,
                 ApiOptions options)
    : services_(services), policy_(policy), pool_(pool), options_(std::move(options)) {}

FhirApi::~FhirApi() { finish_held_responses(); }

namespace {

Status error(ErrorCategory c, std::string code, std::string text, std::string expression = {}) {
  return Status::error(c, std::move(code), std::move(text), std::move(expression));
}

// Re-indents FHIR JSON without touching values: numbers pass through as text.
std::string pretty_json(const std::string& json) {
  rapidjson::StringBuffer buf;
  rapidjson::PrettyWriter<rapidjson::StringBuffer> writer(buf);
  writer.SetIndent(' ', 2);
  rapidjson::StringStream in(json.c_str());
  rapidjson::Reader reader;
  if (!reader.Parse<rapidjson::kParseNumbersAsStringsFlag>(in, writer)) return json;
  return std::string(buf.GetString(), buf.GetSize());
}

// Writes `json` (a FHIR JSON resource) in the negotiated format.
Status render_body(const fhir::Definitions& defs, const std::string& json, const ResponseFormat& fmt,
                   std::string* out) {
  if (fmt.format == Format::Json) {
    *out = fmt.pretty ? pretty_json(json) : json;
    return Status::ok();
  }
  fhir::Node node;
  fhir::ParseLimits limits;
  limits.max_bytes = json.size() + 1;
  limits.max_depth = 1000;  // our own output: already bounded when it came in
  Status s = fhir::parse_json(defs, json, &node, limits);
  if (!s) {
    s.set_category(ErrorCategory::Internal);
    return s;
  }
  fhir::XmlWriteOptions opts;
  opts.pretty = fmt.pretty;
  *out = fhir::write_xml(node, opts);
  return Status::ok();
}

Interaction interaction_of(RouteKind kind) {
  switch (kind) {
    case RouteKind::Read: return Interaction::Read;
    case RouteKind::VRead: return Interaction::VRead;
    case RouteKind::Update: return Interaction::Update;
    case RouteKind::Patch: return Interaction::Patch;
    case RouteKind::Delete: return Interaction::Delete;
    case RouteKind::HistoryInstance: return Interaction::HistoryInstance;
    case RouteKind::HistoryType: return Interaction::HistoryType;
    case RouteKind::HistorySystem: return Interaction::HistorySystem;
    case RouteKind::Create: return Interaction::Create;
    case RouteKind::SearchType: return Interaction::SearchType;
    case RouteKind::SearchSystem: return Interaction::SearchSystem;
    case RouteKind::Capabilities: return Interaction::Capabilities;
    case RouteKind::BatchOrTransaction: return Interaction::Transaction;
    case RouteKind::ConditionalUpdate: return Interaction::ConditionalUpdate;
    case RouteKind::ConditionalDelete: return Interaction::ConditionalDelete;
    case RouteKind::ConditionalPatch: return Interaction::ConditionalPatch;
    default: return Interaction::SearchSystem;
  }
}

bool takes_resource_body(RouteKind k) {
  return k == RouteKind::Create || k == RouteKind::Update || k == RouteKind::ConditionalUpdate ||
         k == RouteKind::BatchOrTransaction;
}

// Prefer: return=minimal|representation|OperationOutcome (RFC 7240, http.html#ops).
interactions::PreferReturn parse_prefer(std::string_view prefer) {
  if (prefer.find("return=minimal") != std::string_view::npos) return interactions::PreferReturn::Minimal;
  if (prefer.find("return=OperationOutcome") != std::string_view::npos)
    return interactions::PreferReturn::OperationOutcome;
  return interactions::PreferReturn::Representation;
}

// A Host header fit to appear in a URL: host[:port] characters only.
bool plausible_host(std::string_view host) {
  if (host.empty() || host.size() > 255) return false;
  for (char c : host)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
      return false;
  return true;
}

}  // namespace

namespace {

// The stored Binary as its own bytes, whole or one byte range (RFC 9110 section 14).
Response native_binary_response(const Request& request, FhirResponse&& out, Response&& response) {
  auto plain_error = [](int status, ErrorCategory category, std::string text) {
    Response r;
    r.status = status;
    r.headers.set("Content-Type", content_type(Format::Json));
    r.body = fhir::outcome_json(Status::error(category, "not-supported", std::move(text)).issues());
    return r;
  };
  std::string media, bytes;
  if (Status s = interactions::decode_binary(std::move(out.json), &media, &bytes); !s)
    return plain_error(500, ErrorCategory::Internal, s.message());
  if (!interactions::accept_admits(request.headers.get("Accept"), media))
    return plain_error(406, ErrorCategory::NotAcceptable,
                       "the document is " + media + ", which the Accept header does not admit");
  response.headers.set("Accept-Ranges", "bytes");
  uint64_t first = 0, last = 0;
  interactions::RangeAnswer range =
      interactions::parse_byte_range(request.headers.get("Range"), bytes.size(), &first, &last);
  // If-Range: ranges only of the version the client holds; our ETags are weak,
  // which never match there (RFC 9110 13.1.5), so only the date can.
  std::string_view if_range = request.headers.get("If-Range");
  if (!if_range.empty() && if_range != out.last_modified) range = interactions::RangeAnswer::Whole;
  if (range == interactions::RangeAnswer::Unsatisfiable) {
    response.status = 416;
    response.headers.set("Content-Range", "bytes */" + std::to_string(bytes.size()));
    return std::move(response);
  }
  response.headers.set("Content-Type", media);
  if (range == interactions::RangeAnswer::Partial) {
    response.status = 206;
    response.headers.set("Content-Range", "bytes " + std::to_string(first) + "-" + std::to_string(last) + "/" +
                                              std::to_string(bytes.size()));
    response.body = bytes.substr(first, last - first + 1);
    return std::move(response);
  }
  response.body = std::move(bytes);
  return std::move(response);
}

// The requester's view for a bulk export job: a guard begun as if the caller
// sent the job's per-patient request (interactions/bulk_export.h).
class GuardedExportView final : public interactions::ExportView {
 public:
  GuardedExportView(const interactions::Services& base) : base_(base) {}
  const interactions::Services& services() const override { return guard_ ? guard_->services() : base_; }
  std::unique_ptr<policy::RequestGuard> guard_;

 private:
  const interactions::Services& base_;
};

// Who owns an export job: the same account of the same issuer through the same software.
std::string export_owner(const policy::Caller& caller) {
  return caller.issuer + '\n' + caller.subject + '\n' + caller.client_id + '\n' + policy::role_name(caller.role);
}

// An OperationOutcome response in the negotiated format (JSON when that fails).
Response outcome_response(const fhir::Definitions& defs, const Status& s, ResponseFormat* fmt, std::string allow = {}) {
  Response r;
  r.status = interactions::http_status(s.category());
  std::string body;
  Status rendered = render_body(defs, fhir::outcome_json(s.issues()), *fmt, &body);
  if (!rendered) {
    fmt->format = Format::Json;
    body = fhir::outcome_json(s.issues());
  }
  r.body = std::move(body);
  r.headers.set("Content-Type", content_type(fmt->format));
  if (!allow.empty()) r.headers.set("Allow", std::move(allow));
  return r;
}

Status unrecorded_access() {
  return Status::error(ErrorCategory::Unavailable, "transient",
                       "the access could not be recorded in the audit trail; nothing was sent");
}

}  // namespace

// A response that leaves once both halves are in: the worker's response and
// the audit trail's verdict on the record (`missing` counts what is not in
// yet). Whichever thread brings the last half sends it, so no worker sleeps
// through a flush.
struct FhirApi::HeldResponse {
  const FhirApi* api;
  Responder respond;
  Response response;
  ResponseFormat fmt;            // the request's, for the answer when the record fails
  Status audit_status;
  bool audit_required = false;   // a record that fails replaces the response
  std::atomic<int> missing{1};   // the response, plus one per record in flight

  void arrive() {
    if (missing.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    if (audit_required && !audit_status) response = outcome_response(*api->services_.defs, unrecorded_access(), &fmt);
    const FhirApi* owner = api;
    Responder send = std::move(respond);
    Response out = std::move(response);
    delete this;
    send(std::move(out));
    std::lock_guard lock(owner->held_mutex_);
    if (--owner->held_count_ == 0) owner->held_cv_.notify_all();
  }
};

void FhirApi::finish_held_responses() {
  std::unique_lock lock(held_mutex_);
  held_cv_.wait(lock, [&] { return held_count_ == 0; });
}

Response FhirApi::handle_now(const Request& request) const { return handle_request(request, nullptr); }

Response FhirApi::handle_request(const Request& original, HeldResponse* held) const {
  Response response;
  // Bodies sent with Content-Encoding are inflated (bounded) before anything else.
  std::optional<Request> decoded;
  if (original.headers.find("Content-Encoding")) {
    decoded = original;
    if (Status s = decode_request_body(&*decoded, options_.max_body_bytes); !s) {
      Response r;
      r.status = interactions::http_status(s.category());
      r.headers.set("Content-Type", content_type(Format::Json));
      r.body = fhir::outcome_json(s.issues());
      return r;
    }
  }
  const Request& request = decoded ? *decoded : original;
  ResponseFormat fmt;
  auto fail = [&](Status s, std::string allow = {}) { return outcome_response(*services_.defs, s, &fmt, std::move(allow)); };
  // Puts the access on record before anything of the response leaves. Held
  // (the server's path): the record is appended without waiting, and the
  // response waits for it instead. False: the record failed and `required`.
  auto trace = [&](const policy::Caller& who, const FhirRequest& what, int status, const policy::AccessRecord& access,
                   bool required) {
    if (!held) return audit_->record(who, what, status, access).is_ok() || !required;
    held->fmt = fmt;
    held->audit_required = required;
    held->missing.fetch_add(1, std::memory_order_relaxed);
    audit_->record_then(who, what, status, access, [held](Status s) {
      held->audit_status = std::move(s);
      held->arrive();
    });
    return true;
  };

  RouteMatch route = match_route(request.method, request.path);
  const interactions::ExportEndpoint export_endpoint =
      export_ ? interactions::export_endpoint(request.path) : interactions::ExportEndpoint::None;
  if (export_endpoint == interactions::ExportEndpoint::None) switch (route.kind) {
    case RouteKind::NotFound: return fail(error(ErrorCategory::NotFound, "not-found", route.error));
    case RouteKind::BadId: return fail(error(ErrorCategory::Invalid, "invalid", route.error));
    case RouteKind::NotAllowed:
      return fail(error(ErrorCategory::NotAllowed, "not-supported",
                        request.method + " is not allowed on this URL (allowed: " + route.allow + ")"),
                  route.allow);
    case RouteKind::Health:
      response.status = 200;
      response.headers.set("Content-Type", "application/json");
      response.body = "{\"status\":\"ok\"}";
      return response;
    default: break;
  }
  // ITI-68 / binary.html#rest: a Binary read answers the document itself unless FHIR is asked for.
  const std::string* format_param = nullptr;
  for (const auto& [name, value] : request.query)
    if (name == "_format" && !format_param) format_param = &value;
  const bool native_binary = (route.kind == RouteKind::Read || route.kind == RouteKind::VRead) &&
                             route.type == "Binary" &&
                             interactions::wants_native_binary(format_param, request.headers.get("Accept"));
  // Export status and files have their own media types (manifest JSON, NDJSON).
  if (!native_binary && export_endpoint == interactions::ExportEndpoint::None)
    if (Status s = negotiate_response(request, &fmt); !s) return fail(std::move(s));

  // Who is calling, before anything else about the request is looked at. The
  // CapabilityStatement is public (SMART App Launch: clients discover the
  // server before they hold a token) and holds no patient data.
  const bool public_route = route.kind == RouteKind::Capabilities;
  policy::Caller caller;
  policy::Credentials credentials;
  credentials.authorization = std::string(request.headers.get("Authorization"));
  credentials.remote_address = request.remote_address;
  if (Status s = policy_.authenticate(credentials, &caller); !s) {
    if (public_route && credentials.authorization.empty()) {
      caller = policy::Caller();
      caller.remote_address = request.remote_address;
    } else {
      if (audit_) {
        // Failed authentications are accesses too: traced, with what was asked.
        FhirRequest attempted;
        attempted.interaction = interaction_of(route.kind);
        attempted.type = route.type;
        attempted.id = route.id;
        attempted.method = request.method;
        policy::Caller unknown;
        unknown.remote_address = request.remote_address;
        trace(unknown, attempted, interactions::http_status(s.category()), policy::AccessRecord(), false);
      }
      Response r = fail(std::move(s));
      // RFC 6750 section 3: a 401 names the scheme and why the token was refused.
      r.headers.set("WWW-Authenticate", credentials.authorization.empty()
                                            ? std::string("Bearer realm=\"espace\"")
                                            : std::string("Bearer realm=\"espace\", error=\"invalid_token\""));
      return r;
    }
  }
  // Bulk export answers (status, manifest, NDJSON): traced, then sent as they are.
  auto export_response = [&](interactions::ExportAnswer&& a, const FhirRequest& traced,
                             const policy::AccessRecord& access) {
    if (audit_) {
      policy::AccessRecord record = access;
      for (const std::string& p : a.patients)
        if (std::find(record.patients.begin(), record.patients.end(), p) == record.patients.end())
          record.patients.push_back(p);
      if (!trace(caller, traced, a.status, record, true)) return fail(unrecorded_access());
    }
    Response r = a.error.is_ok() ? Response() : fail(std::move(a.error));
    r.status = a.status;
    for (auto& [name, value] : a.headers) r.headers.set(name, std::move(value));
    if (!a.content_type.empty()) {
      r.headers.set("Content-Type", a.content_type);
      r.body = std::move(a.body);
    }
    return r;
  };
  if (export_endpoint != interactions::ExportEndpoint::None) {
    FhirRequest traced;
    traced.interaction = Interaction::Operation;
    traced.operation = export_endpoint == interactions::ExportEndpoint::File ? "export-file" : "export-poll-status";
    traced.method = request.method;
    traced.params = request.query;
    return export_response(export_->follow_up(export_endpoint, request.method, request.query, export_owner(caller)),
                           traced, policy::AccessRecord());
  }
  // Refusals by the rules are traced like every other access.
  auto refuse = [&](Status s, const FhirRequest& refused) {
    if (audit_) {
      policy::AccessRecord none;
      trace(caller, refused, interactions::http_status(s.category()), none, false);
    }
    return fail(std::move(s));
  };

  FhirRequest req;
  req.interaction = interaction_of(route.kind);
  req.type = route.type;
  req.id = route.id;
  req.version_id = route.version_id;
  req.params = request.query;
  req.if_match = request.headers.get("If-Match");
  req.if_none_match = request.headers.get("If-None-Match");
  req.if_modified_since = request.headers.get("If-Modified-Since");
  req.if_none_exist = request.headers.get("If-None-Exist");
  req.prefer_return = parse_prefer(request.headers.get("Prefer"));
  if (!options_.base_url.empty()) {
    req.base_url = options_.base_url;
  } else {
    std::string_view host = request.headers.get("Host");
    req.base_url = "http://" + std::string(plausible_host(host) ? host : std::string_view("localhost"));
  }
  // Operations come from one table (interactions/operations.h).
  const interactions::OperationDef* op = nullptr;
  if (route.kind == RouteKind::OperationSystem || route.kind == RouteKind::OperationType ||
      route.kind == RouteKind::OperationInstance) {
    interactions::OperationLevel level = route.kind == RouteKind::OperationSystem ? interactions::OperationLevel::System
                                         : route.kind == RouteKind::OperationType ? interactions::OperationLevel::Type
                                                                                  : interactions::OperationLevel::Instance;
    op = interactions::find_operation(route.operation, level, route.type);
    if (!op) return fail(error(ErrorCategory::NotFound, "not-supported", "unknown operation $" + route.operation));
    if (request.method != "POST" && !op->allows_get)
      return fail(error(ErrorCategory::NotAllowed, "not-supported", "$" + op->name + " takes POST"), "POST");
    req.interaction = Interaction::Operation;
    req.operation = op->name;
  }
  req.method = request.method;
  req.lenient = request.headers.get("Prefer").find("handling=lenient") != std::string_view::npos;
  if (route.kind == RouteKind::SearchCompartment) {
    // /Patient/123/Observation: a search of Observation within Patient/123's compartment.
    req.compartment_type = route.type;
    req.compartment_id = route.id;
    req.id.clear();
    if (route.compartment == "*") {
      req.interaction = Interaction::SearchSystem;
      req.type.clear();
    } else {
      req.interaction = Interaction::SearchType;
      req.type = route.compartment;
    }
  }
  if (route.kind == RouteKind::SearchType && request.method == "POST") {
    // POST /{type}/_search: criteria in an application/x-www-form-urlencoded body, added to the URL's.
    BodyKind kind;
    if (!request.body.empty()) {
      if (Status s = request_body_kind(request.headers.get("Content-Type"), &kind); !s) return fail(std::move(s));
      if (kind != BodyKind::FormUrlEncoded)
        return fail(error(ErrorCategory::UnsupportedMedia, "not-supported",
                          "_search takes an application/x-www-form-urlencoded body"));
      std::string ignored_path;
      std::vector<std::pair<std::string, std::string>> form;
      if (!parse_target("/?" + request.body, &ignored_path, &form))
        return fail(error(ErrorCategory::Invalid, "invalid", "malformed percent-encoding in the _search body"));
      req.params.insert(req.params.end(), form.begin(), form.end());
    }
  }

  const bool op_resource_body = op && op->body == interactions::OperationBody::Resource &&
                                 (request.method == "POST" && (!request.body.empty() || !op->allows_get));
  if (op && op->body == interactions::OperationBody::Raw && request.method == "POST") {
    if (request.body.empty())
      return fail(error(ErrorCategory::Invalid, "required", "$" + op->name + " needs a request body"));
    std::string_view ct = request.headers.get("Content-Type");
    req.content_type = std::string(ct.substr(0, ct.find(';')));
    while (!req.content_type.empty() && req.content_type.back() == ' ') req.content_type.pop_back();
    req.body = request.body;
  }
  if (op && op->body == interactions::OperationBody::None && !request.body.empty())
    return fail(error(ErrorCategory::Invalid, "invalid", "$" + op->name + " takes no request body"));
  if (takes_resource_body(route.kind) || op_resource_body || route.kind == RouteKind::Patch ||
      route.kind == RouteKind::ConditionalPatch) {
    if (request.body.empty())
      return fail(error(ErrorCategory::Invalid, "required", "this interaction needs a request body"));
    BodyKind kind;
    if (Status s = request_body_kind(request.headers.get("Content-Type"), &kind); !s) return fail(std::move(s));
    fhir::ParseLimits limits;
    limits.max_bytes = options_.max_body_bytes;
    limits.max_depth = options_.max_json_depth;
    if (route.kind == RouteKind::Patch || route.kind == RouteKind::ConditionalPatch) {
      if (kind != BodyKind::JsonPatch)
        return fail(error(ErrorCategory::UnsupportedMedia, "not-supported",
                          "patch accepts application/json-patch+json"));
      req.content_type = "application/json-patch+json";
      req.body = request.body;
    } else {
      fhir::Node node;
      Status s;
      if (kind == BodyKind::Json)
        s = fhir::parse_json(*services_.defs, request.body, &node, limits);
      else if (kind == BodyKind::Xml)
        s = fhir::parse_xml(*services_.defs, request.body, &node, limits);
      else
        return fail(error(ErrorCategory::UnsupportedMedia, "not-supported",
                          "the body must be application/fhir+json or application/fhir+xml"));
      if (!s) return fail(std::move(s));
      req.resource = std::move(node);
    }
  }

  std::unique_ptr<policy::RequestGuard> guard;
  // An anonymous caller of the public CapabilityStatement skips the rules;
  // a caller with a token meets them like everywhere else (NON_CARE_PURPOSE, ...).
  const bool anonymous_public = public_route && !caller.authenticated;
  if (!anonymous_public)
    if (Status s = policy_.begin(caller, req, services_, &guard); !s) return refuse(std::move(s), req);

  if (op && op->name == "export" && export_) {
    const policy::Caller job_caller = caller;
    const policy::Policy* policy = &policy_;
    const interactions::Services* base = &services_;
    interactions::ExportViewOpener open = [job_caller, policy, base](const FhirRequest& as_if,
                                                                     std::unique_ptr<interactions::ExportView>* view) {
      auto v = std::make_unique<GuardedExportView>(*base);
      if (Status s = policy->begin(job_caller, as_if, *base, &v->guard_); !s) return s;
      *view = std::move(v);
      return Status::ok();
    };
    const bool all_patients = caller.role == policy::Role::System || caller.role == policy::Role::Open;
    static const policy::AccessRecord kNothingAccessed;
    return export_response(export_->kick_off(req, request.headers.get("Prefer"), export_owner(caller), all_patients,
                                             std::move(open)),
                           req, guard ? guard->record() : kNothingAccessed);
  }
  FhirResponse out;
  {
    // With the audit record to follow on the same storage, the request's
    // writes return at commit and the record's flush makes them durable:
    // one flush wait per write request instead of two.
    std::optional<storage::DeferFlushToNextWrite> one_flush;
    if (audit_ && services_.store && audit_->flushes_writes_of(*services_.store)) one_flush.emplace();
    out = interactions::dispatch(guard ? guard->services() : services_, req);
  }
  const int final_status = out.error.is_ok() ? out.status : interactions::http_status(out.error.category());
  if (audit_) {
    // The access is on record before anything of it leaves the server.
    static const policy::AccessRecord kNothingAccessed;
    if (!trace(caller, req, final_status, guard ? guard->record() : kNothingAccessed, true))
      return fail(unrecorded_access());
  }
  if (!out.error.is_ok()) return fail(std::move(out.error));

  response.status = out.status;
  if (!out.etag.empty()) response.headers.set("ETag", out.etag);
  if (!out.last_modified.empty()) response.headers.set("Last-Modified", out.last_modified);
  if (!out.location.empty()) response.headers.set("Location", out.location);
  if (!out.content_location.empty()) response.headers.set("Content-Location", out.content_location);
  if (native_binary && out.status == 200 && !out.json.empty())
    return native_binary_response(request, std::move(out), std::move(response));
  if (!out.json.empty() && out.status != 304) {
    if (fmt.format == Format::Json && !fmt.pretty) {
      response.body = std::move(out.json);  // already what goes out: no copy
    } else if (Status s = render_body(*services_.defs, out.json, fmt, &response.body); !s) {
      return fail(std::move(s));
    }
    response.headers.set("Content-Type", content_type(fmt.format));
  }
  return response;
}

namespace {

// /health touches no storage: answered on the I/O thread, so liveness stays
// visible when every worker is busy. Everything else may block on the
// database and goes to the worker pool (the I/O threads never wait on it).
// The same test as match_route's Health row, without matching every route.
bool runs_on_io_thread(const Request& request) {
  if (request.method != "GET" || !request.body.empty()) return false;
  return request.path == "/health" || request.path == "/health/";
}

// A request on its way to a worker, with the way back.
struct PendingRequest {
  Request request;
  Responder respond;
};

}  // namespace

void FhirApi::handle(Request&& request, Responder respond) {
  if (runs_on_io_thread(request)) {
    Response r = handle_now(request);
    compress_response(request, &r);
    respond(std::move(r));
    return;
  }
  // The task captures two plain pointers, which std::function keeps without
  // an allocation of its own; the task owns `pending` once it runs, and
  // shutdown() runs every queued task.
  auto* pending = new PendingRequest{std::move(request), std::move(respond)};
  bool queued = pool_.post([this, pending] {
    std::unique_ptr<PendingRequest> owned(pending);
    if (!audit_) {
      Response r = handle_request(owned->request, nullptr);
      compress_response(owned->request, &r);
      owned->respond(std::move(r));
      return;
    }
    {
      std::lock_guard lock(held_mutex_);
      ++held_count_;
    }
    auto* held = new HeldResponse{this, std::move(owned->respond), Response(), ResponseFormat(), Status::ok()};
    // The held response must arrive whatever happens: it holds the Responder
    // and counts for finish_held_responses().
    Response r;
    try {
      r = handle_request(owned->request, held);
      compress_response(owned->request, &r);
    } catch (...) {
      std::fprintf(stderr, "espace: a request failed with an exception\n");
      ResponseFormat json;
      r = outcome_response(*services_.defs, error(ErrorCategory::Internal, "exception", "the request failed"), &json);
    }
    held->response = std::move(r);
    held->arrive();
  });
  if (!queued) {
    std::unique_ptr<PendingRequest> owned(pending);
    Response r;
    r.status = 503;
    r.headers.set("Content-Type", content_type(Format::Json));
    r.headers.set("Retry-After", "1");
    fhir::Issue issue;
    issue.code = "transient";
    issue.diagnostics = "the server is overloaded; retry later";
    r.body = fhir::outcome_json({issue});
    owned->respond(std::move(r));
  }
}

}  // namespace espace::http
