// update, update-as-create and conditional update — hl7.org/fhir/R4/http.html#update, #cond-update.
#include "common.h"
#include "documents/mhd_provide.h"
#include "espace/interactions/validate.h"

namespace espace::interactions {

namespace {

FhirResponse update_with_id(const Services& services, const FhirRequest& req, const std::string& id,
                            const char* method) {
  if (Status v = validate_for_write(services, *req.resource); !v) return error_response(std::move(v));
  fhir::Node resource = *req.resource;
  WriteOp op;
  op.kind = WriteOp::Kind::Update;
  op.type = req.type;
  op.id = id;
  op.method = method;
  if (Status s = parse_if_match(req.if_match, &op.if_match); !s) return error_response(std::move(s));
  Status s = PreparedBody::prepare(resource, id, &op.body);
  if (!s) return error_response(std::move(s));
  op.index = index_entries(*services.defs, resource);
  WriteOutcome outcome;
  s = services.store->write([&](storage::WriteTxn& txn) { return mhd::apply_checked_write(txn, resource, op, &outcome); });
  if (!s) return error_response(std::move(s));
  return write_response(req, op, outcome);
}

}  // namespace

FhirResponse do_update(const Services& services, const FhirRequest& req) {
  Status s = check_body_type(req);
  if (!s) return error_response(std::move(s));
  std::string_view body_id = fhir::resource_id(*req.resource);
  if (body_id.empty())
    return error_response(ErrorCategory::Invalid, "required", "an update needs the resource id in the body", "id");
  if (body_id != req.id)
    return error_response(ErrorCategory::Invalid, "invalid",
                          "the id in the body (" + std::string(body_id) + ") differs from the id in the URL (" +
                              req.id + ")",
                          "id");
  return update_with_id(services, req, req.id, "PUT");
}

FhirResponse do_conditional_update(const Services& services, const FhirRequest& req) {
  Status s = check_body_type(req);
  if (!s) return error_response(std::move(s));
  std::vector<std::string> ids;
  s = resolve_criteria(services, req.type, req.params, &ids);
  if (!s) return error_response(std::move(s));
  std::string body_id(fhir::resource_id(*req.resource));
  if (ids.size() > 1)
    return error_response(ErrorCategory::PreconditionFailed, "multiple-matches",
                          "the criteria match " + std::to_string(ids.size()) + " resources");
  if (ids.size() == 1) {
    if (!body_id.empty() && body_id != ids[0])
      return error_response(ErrorCategory::Invalid, "invalid",
                            "the id in the body differs from the id of the matching resource", "id");
    return update_with_id(services, req, ids[0], "PUT");
  }
  // No match: create, with the client's id when it gave one (update-as-create).
  if (!body_id.empty()) {
    if (!is_valid_id(body_id))
      return error_response(ErrorCategory::Invalid, "invalid", "malformed id in the body", "id");
    return update_with_id(services, req, body_id, "PUT");
  }
  return update_with_id(services, req, new_id(), "PUT");
}

}  // namespace espace::interactions
