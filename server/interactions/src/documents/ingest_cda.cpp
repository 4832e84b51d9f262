// CDA R2 ingestion: read_cda_document and POST /DocumentReference/$ingest-cda
// (espace/interactions/cda.h).
//
// Choices, per the CI-SIS and the DMP: the stored document is the CDA itself
// (a PDF in nonXMLBody stays inside its CDA), so the Binary and the
// attachment are text/xml, the MIME type the CI-SIS gives CDA documents; the
// format code says whether the body is structured or a PDF. A document whose
// unique id (masterIdentifier) is already stored is refused with 409; a
// replacement (relatedDocument RPLC) marks the replaced one superseded.
#include <array>
#include <chrono>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "../common.h"
#include "cda_codec.h"
#include "cda_rules.h"
#include "cda_xml.h"
#include "mhd_provide.h"
#include "espace/fhir/json.h"
#include "espace/interactions/cda.h"
#include "espace/interactions/validate.h"

namespace espace::interactions {
namespace {

constexpr std::string_view kInsSystem = "urn:oid:1.2.250.1.213.1.4.8";
constexpr std::string_view kCdaMimeType = "text/xml";

using Allocator = rapidjson::Document::AllocatorType;

rapidjson::Value str(std::string_view s, Allocator& a) {
  return rapidjson::Value(s.data(), static_cast<rapidjson::SizeType>(s.size()), a);
}

std::string to_text(const rapidjson::Value& v) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  v.Accept(w);
  return std::string(buf.GetString(), buf.GetSize());
}

rapidjson::Value& member(rapidjson::Value& object, const char* name, rapidjson::Type type, Allocator& a) {
  auto it = object.FindMember(name);
  if (it == object.MemberEnd()) {
    object.AddMember(rapidjson::StringRef(name), rapidjson::Value(type), a);
    it = object.FindMember(name);
  }
  if (it->value.GetType() != type) it->value = rapidjson::Value(type);
  return it->value;
}

Status unprocessable(std::string message_id, std::string diagnostics, std::string xpath = {}) {
  fhir::Issue i;
  i.code = "processing";
  i.message_id = std::move(message_id);
  i.diagnostics = diagnostics;
  i.location = std::move(xpath);
  return Status::error(ErrorCategory::Unprocessable, std::move(i));
}

// Parse, check, map; the DocumentReference as JSON (rapidjson) so the
// operation can complete it before it becomes a Node.
Status read_cda_json(std::string_view xml, rapidjson::Document* doc, std::string* ins,
                     std::vector<fhir::Issue>* warnings) {
  const cda::CdaConfig* config = nullptr;
  if (Status s = cda::cda_config(&config); !s) return s;
  std::unique_ptr<cda::XmlElement> root;
  if (Status s = cda::parse_cda_xml(xml, &root); !s) return s;

  Status failed;
  for (fhir::Issue& issue : cda::check_header(*config, *root)) {
    if (issue.severity != fhir::Severity::Error) {
      warnings->push_back(std::move(issue));
      continue;
    }
    if (failed) failed = Status::error(ErrorCategory::Unprocessable, std::move(issue));
    else failed.add(std::move(issue));
  }
  if (!failed) return failed;

  cda::Path ins_path;
  cda::parse_path("/ClinicalDocument/recordTarget/patientRole/id[@root='1.2.250.1.213.1.4.8']/@extension", &ins_path);
  cda::PathResult r = cda::evaluate_path(ins_path, *root, "/ClinicalDocument");
  if (r.matches.empty())  // the rules file is expected to require it; never map a document without
    return unprocessable("cda-patient-ins", "the document has no INS-NIR patient identifier", r.missing_xpath);
  *ins = r.matches.front().value;

  cda::map_header(*config, *root, doc);
  Allocator& a = doc->GetAllocator();
  // The attachment describes the CDA as received.
  rapidjson::Value& content = member(*doc, "content", rapidjson::kArrayType, a);
  if (content.Empty()) content.PushBack(rapidjson::Value(rapidjson::kObjectType), a);
  rapidjson::Value& attachment = member(content[0], "attachment", rapidjson::kObjectType, a);
  std::array<uint8_t, 20> digest = cda::sha1(xml);
  attachment.RemoveMember("contentType");
  attachment.AddMember("contentType", str(kCdaMimeType, a), a);
  attachment.RemoveMember("size");
  attachment.AddMember("size", rapidjson::Value(static_cast<uint64_t>(xml.size())), a);
  attachment.RemoveMember("hash");
  attachment.AddMember(
      "hash", str(cda::base64_encode(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size())), a),
      a);
  return Status::ok();
}

bool accepted_media_type(std::string_view type) {
  return type == "application/xml" || type == "text/xml" || type == "application/hl7-cda+xml";
}

// The id a document unique id is stored under: the one ITI-65 uses.
std::string document_id_for(std::string_view unique_id) { return mhd::derived_id("DocumentReference", unique_id); }

// The identity reliability extension (ours, or FR Core's) says QUAL.
bool qualified_identity(std::string_view patient_json) {
  rapidjson::Document p;
  p.Parse(patient_json.data(), patient_json.size());
  if (p.HasParseError() || !p.IsObject() || !p.HasMember("extension") || !p["extension"].IsArray()) return false;
  for (const auto& ext : p["extension"].GetArray()) {
    if (!ext.IsObject() || !ext.HasMember("url") || !ext["url"].IsString()) continue;
    std::string_view url = ext["url"].GetString();
    if (url != "https://espace.example/fhir/StructureDefinition/identity-reliability" &&
        url != "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability")
      continue;
    if (!ext.HasMember("extension") || !ext["extension"].IsArray()) continue;
    for (const auto& part : ext["extension"].GetArray()) {
      if (!part.IsObject() || !part.HasMember("url") || !part["url"].IsString() ||
          std::string_view(part["url"].GetString()) != "identityStatus" || !part.HasMember("valueCoding"))
        continue;
      const auto& coding = part["valueCoding"];
      if (coding.IsObject() && coding.HasMember("code") && coding["code"].IsString() &&
          std::string_view(coding["code"].GetString()) == "QUAL")
        return true;
    }
  }
  return false;
}

Status duplicate(const std::string& id) {
  fhir::Issue i;
  i.code = "duplicate";
  i.message_id = "cda-duplicate";
  i.diagnostics = "a document with this unique id (ClinicalDocument/id) is already stored as DocumentReference/" + id;
  i.location = "/ClinicalDocument/id";
  return Status::error(ErrorCategory::Conflict, std::move(i));
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Status read_cda_document(const fhir::Definitions& defs, std::string_view xml, CdaDocument* out) {
  rapidjson::Document doc;
  *out = CdaDocument();
  if (Status s = read_cda_json(xml, &doc, &out->patient_ins, &out->warnings); !s) return s;
  return fhir::parse_json(defs, to_text(doc), &out->document_reference);
}

FhirResponse ingest_cda_operation(const Services& services, const FhirRequest& req) {
  if (!accepted_media_type(req.content_type))
    return error_response(ErrorCategory::UnsupportedMedia, "not-supported",
                          "$ingest-cda takes the CDA document itself as application/xml, text/xml or "
                          "application/hl7-cda+xml");
  // The same bound as a document of an ITI-65 submission (serve --max-document-bytes).
  if (req.body.size() > services.limits.max_document_bytes)
    return error_response(ErrorCategory::TooLarge, "too-costly",
                          "the document has " + std::to_string(req.body.size()) +
                              " bytes; this server accepts at most " +
                              std::to_string(services.limits.max_document_bytes));
  rapidjson::Document doc;
  std::string ins;
  std::vector<fhir::Issue> warnings;
  if (Status s = read_cda_json(req.body, &doc, &ins, &warnings); !s) return error_response(std::move(s));
  Allocator& a = doc.GetAllocator();

  // The patient: the one Patient carrying the document's INS.
  std::vector<std::string> patients;
  Status s = resolve_criteria(services, "Patient", {{"identifier", std::string(kInsSystem) + "|" + ins}}, &patients);
  if (!s) return error_response(std::move(s));
  const std::string ins_xpath = "/ClinicalDocument/recordTarget/patientRole/id[@root='1.2.250.1.213.1.4.8']/@extension";
  if (patients.empty())
    return error_response(unprocessable("cda-patient-unknown",
                                        "no Patient with the document's INS (system " + std::string(kInsSystem) +
                                            ") is known to this server",
                                        ins_xpath));
  if (patients.size() > 1)
    return error_response(unprocessable("cda-patient-ambiguous",
                                        "several Patients carry the document's INS; the identity must be resolved first",
                                        ins_xpath));

  // Documents are filed only for a qualified identity (INS status QUAL).
  {
    storage::ResourceVersion patient;
    if (Status ps = services.store->read("Patient", patients.front(), &patient); !ps) return error_response(std::move(ps));
    if (!qualified_identity(patient.json))
      return error_response(unprocessable("cda-patient-not-qualified",
                                          "the Patient with the document's INS is not a qualified identity "
                                          "(identity reliability status QUAL): documents cannot be filed for it yet",
                                          ins_xpath));
  }

  // One document unique id, one DocumentReference: stored under an id derived
  // from the uniqueId as ITI-65 does (mhd_provide.cpp), so the storage's
  // refusal to create an existing id settles concurrent and cross-channel
  // duplicates inside the write transaction.
  std::string unique_id;
  if (auto mi = doc.FindMember("masterIdentifier"); mi != doc.MemberEnd() && mi->value.IsObject())
    if (auto it = mi->value.FindMember("value"); it != mi->value.MemberEnd() && it->value.IsString())
      unique_id = it->value.GetString();
  if (unique_id.empty())  // the rules require ClinicalDocument/id; never store a document without it
    return error_response(unprocessable("cda-document-id", "the document has no unique id", "/ClinicalDocument/id"));
  WriteOp binary_op, document_op;
  document_op.id = document_id_for(unique_id);
  storage::ResourceVersion existing;
  if (services.store->read("DocumentReference", document_op.id, &existing) && !existing.deleted)
    return error_response(duplicate(document_op.id));

  // Replaced documents must be held and current; they become superseded in
  // the same transaction (as an ITI-65 replacement does).
  std::vector<WriteOp> supersede;
  if (auto rel = doc.FindMember("relatesTo"); rel != doc.MemberEnd() && rel->value.IsArray()) {
    for (rapidjson::Value& link : rel->value.GetArray()) {
      auto target = link.FindMember("target");
      if (target == link.MemberEnd()) continue;
      auto id = target->value.FindMember("identifier");
      if (id == target->value.MemberEnd() || !id->value.HasMember("value")) continue;
      const std::string related_xpath = "/ClinicalDocument/relatedDocument/parentDocument/id";
      std::string target_id = document_id_for(id->value["value"].GetString());
      storage::ResourceVersion current;
      if (!services.store->read("DocumentReference", target_id, &current) || current.deleted)
        return error_response(unprocessable("cda-related-unknown",
                                            "the document replaces a document this server does not hold",
                                            related_xpath));
      fhir::Node stored;
      if (Status ps = fhir::parse_json(*services.defs, current.json, &stored); !ps) {
        ps.set_category(ErrorCategory::Internal);
        return error_response(std::move(ps));
      }
      if (stored.child_value("status") != "current") {
        fhir::Issue i;
        i.code = "conflict";
        i.message_id = "cda-related-not-current";
        i.diagnostics = "the replaced document is " + std::string(stored.child_value("status")) +
                        ": only the current version of a document can be replaced";
        i.location = related_xpath;
        return error_response(Status::error(ErrorCategory::Conflict, std::move(i)));
      }
      const fhir::Node* stored_subject = stored.child("subject");
      if (!stored_subject || stored_subject->child_value("reference") != "Patient/" + patients.front())
        return error_response(unprocessable("cda-related-other-patient",
                                            "the replaced document belongs to another patient", related_xpath));
      WriteOp op;
      op.kind = WriteOp::Kind::Update;
      op.type = "DocumentReference";
      op.id = target_id;
      op.method = "PUT";
      op.if_match = current.version;  // changed meanwhile: the transaction fails
      if (Status ss = fhir::set_primitive(stored, "status", "superseded"); !ss) return error_response(std::move(ss));
      if (Status ss = PreparedBody::prepare(stored, target_id, &op.body); !ss) return error_response(std::move(ss));
      op.index = index_entries(*services.defs, stored);
      supersede.push_back(std::move(op));
      target->value.AddMember("reference", str("DocumentReference/" + target_id, a), a);
    }
  }

  binary_op.kind = document_op.kind = WriteOp::Kind::Create;
  binary_op.method = document_op.method = "POST";
  binary_op.type = "Binary";
  document_op.type = "DocumentReference";
  binary_op.id = new_id();

  rapidjson::Value subject(rapidjson::kObjectType);
  subject.AddMember("reference", str("Patient/" + patients.front(), a), a);
  doc.RemoveMember("subject");
  doc.AddMember("subject", subject, a);
  doc.RemoveMember("date");
  doc.AddMember("date", str(format_instant(now_us()), a), a);
  rapidjson::Value& attachment = doc["content"][0]["attachment"];
  attachment.RemoveMember("url");
  attachment.AddMember("url", str("Binary/" + binary_op.id, a), a);

  fhir::Node document, binary;
  s = fhir::parse_json(*services.defs, to_text(doc), &document);
  if (!s) return error_response(std::move(s));
  {
    // The Binary's frame is parsed; its data, the largest value of the
    // request, is moved in rather than written to JSON and parsed again.
    rapidjson::Document b(rapidjson::kObjectType);
    Allocator& ba = b.GetAllocator();
    b.AddMember("resourceType", "Binary", ba);
    b.AddMember("contentType", str(kCdaMimeType, ba), ba);
    // Access to the bytes follows access to the DocumentReference.
    rapidjson::Value context(rapidjson::kObjectType);
    context.AddMember("reference", str("DocumentReference/" + document_op.id, ba), ba);
    b.AddMember("securityContext", context, ba);
    s = fhir::parse_json(*services.defs, to_text(b), &binary);
    if (!s) return error_response(std::move(s));
    s = fhir::set_primitive(binary, "data", cda::base64_encode(req.body));
    if (!s) return error_response(std::move(s));
  }
  s = validate_for_write(services, document);
  if (!s) return error_response(std::move(s));
  s = validate_for_write(services, binary);
  if (!s) return error_response(std::move(s));

  s = PreparedBody::prepare(binary, binary_op.id, &binary_op.body);
  if (!s) return error_response(std::move(s));
  binary_op.index = index_entries(*services.defs, binary);
  s = PreparedBody::prepare(document, document_op.id, &document_op.body);
  if (!s) return error_response(std::move(s));
  document_op.index = index_entries(*services.defs, document);

  WriteOutcome binary_outcome, document_outcome;
  bool document_written = false;
  s = services.store->write([&](storage::WriteTxn& txn) {
    for (const WriteOp& op : supersede) {
      WriteOutcome ignored;
      if (Status w = apply_write(txn, op, &ignored); !w) return w;
    }
    if (Status w = apply_write(txn, binary_op, &binary_outcome); !w) return w;
    Status w = apply_write(txn, document_op, &document_outcome);
    document_written = w.is_ok();
    return w;
  });
  if (!s && s.category() == ErrorCategory::Conflict && !document_written) return error_response(duplicate(document_op.id));
  if (!s && s.category() == ErrorCategory::PreconditionFailed) {
    fhir::Issue i;
    i.code = "conflict";
    i.message_id = "cda-related-changed";
    i.diagnostics = "the replaced document changed while this one was stored; send it again";
    i.location = "/ClinicalDocument/relatedDocument/parentDocument/id";
    return error_response(Status::error(ErrorCategory::Conflict, std::move(i)));
  }
  if (!s) return error_response(std::move(s));
  return write_response(req, document_op, document_outcome);
}

}  // namespace espace::interactions
