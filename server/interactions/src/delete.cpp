// delete and conditional delete — hl7.org/fhir/R4/http.html#delete, #3.1.0.7.1.
#include "common.h"

namespace espace::interactions {

namespace {
FhirResponse delete_id(const Services& services, const FhirRequest& req, const std::string& id) {
  WriteOp op;
  op.kind = WriteOp::Kind::Delete;
  op.type = req.type;
  op.id = id;
  op.method = "DELETE";
  if (Status s = parse_if_match(req.if_match, &op.if_match); !s) return error_response(std::move(s));
  WriteOutcome outcome;
  Status s = services.store->write([&](storage::WriteTxn& txn) { return apply_write(txn, op, &outcome); });
  if (!s) return error_response(std::move(s));
  return write_response(req, op, outcome);
}
}  // namespace

FhirResponse do_delete(const Services& services, const FhirRequest& req) { return delete_id(services, req, req.id); }

FhirResponse do_conditional_delete(const Services& services, const FhirRequest& req) {
  std::vector<std::string> ids;
  Status s = resolve_criteria(services, req.type, req.params, &ids);
  if (!s) return error_response(std::move(s));
  if (ids.size() > 1)
    return error_response(ErrorCategory::PreconditionFailed, "multiple-matches",
                          "the criteria match " + std::to_string(ids.size()) +
                              " resources; this server deletes one resource per conditional delete");
  if (ids.empty()) {
    FhirResponse r;
    r.status = req.prefer_return == PreferReturn::OperationOutcome ? 200 : 204;
    if (r.status == 200) r.json = informational_outcome("no resource matched; nothing deleted");
    return r;
  }
  return delete_id(services, req, ids[0]);
}

}  // namespace espace::interactions
