// read and vread — hl7.org/fhir/R4/http.html#read, #vread.
#include "common.h"

namespace espace::interactions {

namespace {

// 304 when the client's copy is current (If-None-Match with the ETag, or
// If-Modified-Since not older than the version) — http.html#cread.
bool not_modified(const FhirRequest& req, const storage::ResourceVersion& v) {
  if (!req.if_none_match.empty()) {
    int64_t version = 0;
    return req.if_none_match == "*" || (parse_etag(req.if_none_match, &version) && version == v.version);
  }
  if (!req.if_modified_since.empty()) {
    int64_t since = 0;
    // HTTP dates have one-second precision: compare at that precision.
    if (parse_http_date(req.if_modified_since, &since)) return v.last_updated_us / 1000000 <= since / 1000000;
  }
  return false;
}

FhirResponse version_response(const FhirRequest& req, storage::ResourceVersion&& v) {
  FhirResponse r;
  r.etag = make_etag(v.version);
  r.last_modified = format_http_date(v.last_updated_us);
  if (v.deleted) {
    r.error = Status::error(ErrorCategory::Gone, "deleted",
                            req.type + "/" + req.id + " was deleted (version " + std::to_string(v.version) + ")");
    return r;
  }
  if (not_modified(req, v)) {
    r.status = 304;
    return r;
  }
  r.content_location = version_url(req.base_url, req.type, req.id, v.version);
  r.json = std::move(v.json);
  return r;
}

}  // namespace

FhirResponse do_read(const Services& services, const FhirRequest& req) {
  storage::ResourceVersion v;
  Status s = services.store->read(req.type, req.id, &v);
  if (!s) return error_response(std::move(s));
  return version_response(req, std::move(v));
}

FhirResponse do_vread(const Services& services, const FhirRequest& req) {
  int64_t version = 0;
  if (!parse_etag(req.version_id, &version) || version <= 0)
    return error_response(ErrorCategory::NotFound, "not-found", "no version '" + req.version_id + "' of " + req.type +
                                                                    "/" + req.id);
  storage::ResourceVersion v;
  Status s = services.store->vread(req.type, req.id, version, &v);
  if (!s) return error_response(std::move(s));
  return version_response(req, std::move(v));
}

}  // namespace espace::interactions
