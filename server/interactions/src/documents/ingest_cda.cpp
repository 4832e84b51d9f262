// CDA R2 ingestion: read_cda_document and POST /DocumentReference/$ingest-cda
// (espace/interactions/cda.h).
//
// Choices, per the CI-SIS and the DMP: the stored document is the CDA itself
// (a PDF in nonXMLBody stays inside its CDA), so the Binary and the
// attachment are text/xml, the MIME type the CI-SIS gives CDA documents; the
// format code says whether the body is structured or a PDF. A document whose
// unique id (masterIdentifier) is already stored is refused with 409.
#include <array>
#include <chrono>
#include <functional>
#include <mutex>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "../common.h"
#include "cda_codec.h"
#include "cda_rules.h"
#include "cda_xml.h"
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

Status unprocessable(std::string message_id, std::string diagnostics, std::string expression = {}) {
  fhir::Issue i;
  i.code = "processing";
  i.message_id = std::move(message_id);
  i.diagnostics = "[" + i.message_id + "] " + diagnostics;
  i.expression = std::move(expression);
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

// Check-then-write of one document unique id must not interleave with
// another ingestion of the same id (a client retrying, two senders): the
// check and the write run under a lock chosen by the id. The server is one
// process; other ids rarely share a stripe.
std::mutex& document_id_lock(std::string_view unique_id) {
  static std::array<std::mutex, 64> stripes;
  return stripes[std::hash<std::string_view>{}(unique_id) % stripes.size()];
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

  // One document unique id, one DocumentReference.
  std::string unique_id;
  if (auto mi = doc.FindMember("masterIdentifier"); mi != doc.MemberEnd() && mi->value.IsObject()) {
    if (auto it = mi->value.FindMember("system"); it != mi->value.MemberEnd()) unique_id = it->value.GetString();
    unique_id += "|";
    if (auto it = mi->value.FindMember("value"); it != mi->value.MemberEnd()) unique_id += it->value.GetString();
  }
  std::lock_guard<std::mutex> same_document(document_id_lock(unique_id));
  if (!unique_id.empty()) {
    std::vector<std::string> existing;
    s = resolve_criteria(services, "DocumentReference", {{"identifier", unique_id}}, &existing);
    if (!s) return error_response(std::move(s));
    if (!existing.empty()) {
      fhir::Issue i;
      i.code = "duplicate";
      i.message_id = "cda-duplicate";
      i.diagnostics = "[cda-duplicate] a document with this unique id (ClinicalDocument/id) is already stored as DocumentReference/" +
                      existing.front();
      i.expression = "/ClinicalDocument/id";
      return error_response(Status::error(ErrorCategory::Conflict, std::move(i)));
    }
  }

  // Replaced documents must be known; their references are resolved.
  if (auto rel = doc.FindMember("relatesTo"); rel != doc.MemberEnd() && rel->value.IsArray()) {
    for (rapidjson::Value& link : rel->value.GetArray()) {
      auto target = link.FindMember("target");
      if (target == link.MemberEnd()) continue;
      auto id = target->value.FindMember("identifier");
      if (id == target->value.MemberEnd()) continue;
      std::string system = id->value.HasMember("system") ? id->value["system"].GetString() : "";
      std::string value = id->value.HasMember("value") ? id->value["value"].GetString() : "";
      std::vector<std::string> found;
      s = resolve_criteria(services, "DocumentReference", {{"identifier", system + "|" + value}}, &found);
      if (!s) return error_response(std::move(s));
      if (found.size() != 1)
        return error_response(unprocessable("cda-related-unknown",
                                            "the document replaces a document this server does not hold",
                                            "/ClinicalDocument/relatedDocument/parentDocument/id"));
      target->value.AddMember("reference", str("DocumentReference/" + found.front(), a), a);
    }
  }

  WriteOp binary_op, document_op;
  binary_op.kind = document_op.kind = WriteOp::Kind::Create;
  binary_op.method = document_op.method = "POST";
  binary_op.type = "Binary";
  document_op.type = "DocumentReference";
  binary_op.id = new_id();
  document_op.id = new_id();

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
    rapidjson::Document b(rapidjson::kObjectType);
    Allocator& ba = b.GetAllocator();
    b.AddMember("resourceType", "Binary", ba);
    b.AddMember("contentType", str(kCdaMimeType, ba), ba);
    // Access to the bytes follows access to the DocumentReference.
    rapidjson::Value context(rapidjson::kObjectType);
    context.AddMember("reference", str("DocumentReference/" + document_op.id, ba), ba);
    b.AddMember("securityContext", context, ba);
    b.AddMember("data", str(cda::base64_encode(req.body), ba), ba);
    s = fhir::parse_json(*services.defs, to_text(b), &binary);
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
  s = services.store->write([&](storage::WriteTxn& txn) {
    if (Status w = apply_write(txn, binary_op, &binary_outcome); !w) return w;
    return apply_write(txn, document_op, &document_outcome);
  });
  if (!s) return error_response(std::move(s));
  return write_response(req, document_op, document_outcome);
}

}  // namespace espace::interactions
