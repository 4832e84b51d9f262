// create and conditional create — hl7.org/fhir/R4/http.html#create, #ccreate.
#include "common.h"
#include "documents/mhd_provide.h"
#include "espace/interactions/validate.h"

namespace espace::interactions {

FhirResponse do_create(const Services& services, const FhirRequest& req) {
  Status s = check_body_type(req);
  if (!s) return error_response(std::move(s));
  s = validate_for_write(services, *req.resource);
  if (!s) return error_response(std::move(s));

  if (!req.if_none_exist.empty()) {
    std::vector<std::string> ids;
    s = resolve_criteria(services, req.type, req.if_none_exist, &ids);
    if (!s) return error_response(std::move(s));
    if (ids.size() > 1)
      return error_response(ErrorCategory::PreconditionFailed, "multiple-matches",
                            "If-None-Exist matches " + std::to_string(ids.size()) + " resources");
    // The resource already exists: answer as a read of it, nothing created.
    if (ids.size() == 1) return existing_resource_response(services, req, req.type, ids[0]);
  }

  // The server assigns the id; a client-supplied id is ignored (http.html#create).
  fhir::Node resource = *req.resource;
  WriteOp op;
  op.kind = WriteOp::Kind::Create;
  op.type = req.type;
  op.id = req.type == "DocumentReference" ? mhd::document_reference_id(resource) : new_id();
  op.method = "POST";
  s = PreparedBody::prepare(resource, op.id, &op.body);
  if (!s) return error_response(std::move(s));
  op.index = index_entries(*services.defs, resource);

  WriteOutcome outcome;
  s = services.store->write([&](storage::WriteTxn& txn) { return mhd::apply_checked_write(txn, resource, op, &outcome); });
  if (!s && req.type == "DocumentReference") return mhd::document_create_failed(services, req, resource, op, std::move(s));
  if (!s) return error_response(std::move(s));
  return write_response(req, op, outcome);
}

}  // namespace espace::interactions
