// DocumentReference rules for the plain REST writes (create, update), so that
// POST and PUT cannot do what ITI-65 and the lifecycle PATCH refuse
// (choices in test-data/mhd/README.md):
// - uniqueness: a created DocumentReference with a masterIdentifier is stored
//   under the id its uniqueId determines (mhd::derived_id, as ITI-65 and
//   $ingest-cda do), so a second document with that uniqueId is the storage's
//   "id exists" conflict inside the write transaction, whichever channel came
//   first and however the requests interleave. Re-posting the identical
//   resource answers with the stored one (nothing written), as a conditional
//   create would.
// - a PUT on an existing document may change only what the limited PATCH may
//   (mhd_lifecycle.cpp): compared with the version current inside the write
//   transaction, so a concurrent change cannot slip between check and write.
// - a PUT may not create a document under an id of the client's choosing
//   (update-as-create): the uniqueness above would not hold for it.
#include <rapidjson/document.h>

#include "espace/fhir/json.h"
#include "mhd_provide.h"

namespace espace::interactions::mhd {

namespace {

std::string_view master_identifier(const fhir::Node& resource) {
  const fhir::Node* master = resource.child("masterIdentifier");
  return master ? master->child_value("value") : std::string_view();
}

// What a sharer may change, and what the server maintains, are left out of
// the comparison of two versions of a document.
void drop_changeable(rapidjson::Document& doc) {
  if (!doc.IsObject()) return;
  for (const char* name : {"id", "status", "securityLabel"}) doc.RemoveMember(name);
  auto meta = doc.FindMember("meta");
  if (meta == doc.MemberEnd() || !meta->value.IsObject()) return;
  for (const char* name : {"versionId", "lastUpdated", "security", "tag"}) meta->value.RemoveMember(name);
  if (meta->value.ObjectEmpty()) doc.RemoveMember("meta");
}

// The first top-level element where two documents differ, "" when equal.
std::string first_difference(const rapidjson::Document& stored, const rapidjson::Document& sent) {
  for (auto it = stored.MemberBegin(); it != stored.MemberEnd(); ++it) {
    auto other = sent.FindMember(it->name);
    if (other == sent.MemberEnd() || other->value != it->value) return it->name.GetString();
  }
  for (auto it = sent.MemberBegin(); it != sent.MemberEnd(); ++it)
    if (!stored.HasMember(it->name)) return it->name.GetString();
  return {};
}

Status parse_object(std::string_view json, rapidjson::Document* doc) {
  doc->Parse(json.data(), json.size());
  if (doc->HasParseError() || !doc->IsObject())
    return Status::error(ErrorCategory::Internal, "exception", "a stored DocumentReference is not a JSON object");
  return Status::ok();
}

Status duplicate(std::string_view unique_id, const std::string& stored_id) {
  return Status::error(ErrorCategory::Conflict, "duplicate",
                       "masterIdentifier " + std::string(unique_id) + " is already the uniqueId of DocumentReference/" +
                           stored_id +
                           "; a uniqueId identifies one document (replace a document with a new uniqueId and "
                           "relatesTo.code=replaces)",
                       "DocumentReference.masterIdentifier");
}

// A PUT on the stored version `current_json`: only the lifecycle's changes.
Status check_metadata_update(std::string_view current_json, const fhir::Node& resource) {
  rapidjson::Document stored, sent;
  if (Status s = parse_object(current_json, &stored); !s) return s;
  if (Status s = parse_object(fhir::write_json(resource), &sent); !s) return s;
  drop_changeable(stored);
  drop_changeable(sent);
  if (std::string element = first_difference(stored, sent); !element.empty())
    return Status::error(ErrorCategory::Unprocessable, "business-rule",
                         "the DMP allows changing only securityLabel, meta.security, meta.tag (archive flag) and "
                         "status (to entered-in-error) of a shared document; " +
                             element + " differs from the stored version",
                         "DocumentReference." + element);
  return check_document_status_change(current_json, resource.child_value("status"));
}

}  // namespace

std::string document_reference_id(const fhir::Node& resource) {
  std::string_view unique_id = master_identifier(resource);
  return unique_id.empty() ? new_id() : derived_id("DocumentReference", unique_id);
}

Status apply_checked_write(storage::WriteTxn& txn, const fhir::Node& resource, const WriteOp& op, WriteOutcome* out) {
  if (op.type == "DocumentReference" && op.kind != WriteOp::Kind::Delete) {
    std::optional<storage::ResourceVersion> current;
    if (Status s = txn.current(op.type, op.id, &current); !s) return s;
    if (current && !current->deleted) {
      if (op.kind == WriteOp::Kind::Update)
        if (Status s = check_metadata_update(current->json, resource); !s) return s;
    } else if (std::string_view unique_id = master_identifier(resource); !unique_id.empty()) {
      std::string expected_id = derived_id("DocumentReference", unique_id);
      if (op.id != expected_id) {
        std::optional<storage::ResourceVersion> holder;
        if (Status s = txn.current(op.type, expected_id, &holder); !s) return s;
        if (holder && !holder->deleted) return duplicate(unique_id, expected_id);
        return Status::error(ErrorCategory::Unprocessable, "business-rule",
                             "DocumentReference/" + op.id +
                                 " does not exist: a document is created with POST (or an ITI-65 submission), "
                                 "which files it under an id its uniqueId (masterIdentifier) determines",
                             "DocumentReference.id");
      }
    }
  }
  return apply_write(txn, op, out);
}

FhirResponse document_create_failed(const Services& services, const FhirRequest& request, const fhir::Node& resource,
                                    const WriteOp& op, Status failure) {
  std::string_view unique_id = master_identifier(resource);
  if (failure.category() != ErrorCategory::Conflict || unique_id.empty()) return error_response(std::move(failure));
  storage::ResourceVersion stored;
  if (Status s = services.store->read(op.type, op.id, &stored); !s || stored.deleted)
    return error_response(duplicate(unique_id, op.id));
  rapidjson::Document stored_doc, sent_doc;
  if (Status s = parse_object(stored.json, &stored_doc); !s) return error_response(std::move(s));
  if (Status s = parse_object(fhir::write_json(resource), &sent_doc); !s) return error_response(std::move(s));
  // The identical document again (a retry after a lost answer): the stored one.
  for (rapidjson::Document* doc : {&stored_doc, &sent_doc}) {
    doc->RemoveMember("id");
    doc->RemoveMember("meta");
  }
  if (stored_doc == sent_doc) return existing_resource_response(services, request, op.type, op.id);
  return error_response(duplicate(unique_id, op.id));
}

}  // namespace espace::interactions::mhd
