// Builders for IHE MHD ITI-65 Provide Document Bundles used by the mhd_*
// integration tests. Data is synthetic (test-data/mhd/).
#pragma once

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "http_client.h"

namespace mhd_test {

inline std::string read_test_data(const std::string& name) {
  std::ifstream in(std::string(ESPACE_SOURCE_DIR) + "/test-data/mhd/" + name, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::string base64(const std::string& bytes) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 2]);
    out += a[(v >> 18) & 63];
    out += a[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? a[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? a[v & 63] : '=';
  }
  return out;
}

struct Document {
  std::string unique_id;                  // masterIdentifier value
  std::string content = "Compte rendu synthetique de test.\n";
  std::string content_type = "text/plain";
  std::string size, hash;                 // attachment.size / hash as sent ("" to omit)
  std::string replaces;                   // "DocumentReference/<id>" or ""
  std::string type_code = "11488-4";      // LOINC
  std::string date = "2026-11-20T10:00:00+01:00";
  std::string security = "N";             // v3-Confidentiality
  std::string attachment_url;             // "" = the Binary entry of this document
  std::string subject;                    // "" = the bundle's patient
  bool inline_data = false;               // data in the attachment instead of a Binary
  std::string related;                    // context.related reference, "" to omit
  std::string facility = "SA01";          // context.facilityType code
};

struct Submission {
  std::string patient = "Patient/mhd-qualified";
  std::string unique_id;                  // SubmissionSet uniqueId
  std::vector<Document> documents;
  bool with_profile = true;
  bool list_lists_documents = true;
};

inline std::string provide_bundle(const Submission& s) {
  std::ostringstream b;
  b << R"({"resourceType":"Bundle","type":"transaction",)";
  if (s.with_profile)
    b << R"("meta":{"profile":["https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.Minimal.ProvideBundle"]},)";
  b << R"("entry":[)";
  // SubmissionSet
  b << R"({"fullUrl":"urn:uuid:00000000-0000-4000-8000-000000000001","resource":{"resourceType":"List",)"
    << R"("extension":[{"url":"https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId","valueIdentifier":{"value":"urn:oid:1.2.250.1.999.1"}},)"
    << R"({"url":"https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType","valueCodeableConcept":{"coding":[{"system":"http://loinc.org","code":")"
    << s.documents.front().type_code << R"("}]}}],)"
    << R"("identifier":[{"use":"official","system":"urn:ietf:rfc:3986","value":"urn:oid:)" << s.unique_id << R"("}],)"
    << R"("status":"current","mode":"working","code":{"coding":[{"system":"https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes","code":"submissionset"}]},)"
    << R"("subject":{"reference":")" << s.patient << R"("},"date":"2026-11-20T10:05:00+01:00",)"
    << R"("source":{"reference":"Practitioner/mhd-author"})";
  if (s.list_lists_documents) {
    b << R"(,"entry":[)";
    for (size_t i = 0; i < s.documents.size(); ++i)
      b << (i ? "," : "") << R"({"item":{"reference":"urn:uuid:00000000-0000-4000-8000-1000000000)" << (10 + i) << R"("}})";
    b << "]";
  }
  b << R"(},"request":{"method":"POST","url":"List"}})";
  for (size_t i = 0; i < s.documents.size(); ++i) {
    const Document& d = s.documents[i];
    std::string binary_url = "urn:uuid:00000000-0000-4000-8000-2000000000" + std::to_string(10 + i);
    b << R"(,{"fullUrl":"urn:uuid:00000000-0000-4000-8000-1000000000)" << (10 + i)
      << R"(","resource":{"resourceType":"DocumentReference",)"
      << R"("masterIdentifier":{"system":"urn:ietf:rfc:3986","value":"urn:oid:)" << d.unique_id << R"("},)"
      << R"("status":"current","type":{"coding":[{"system":"http://loinc.org","code":")" << d.type_code << R"("}]},)"
      << R"("category":[{"coding":[{"system":"urn:oid:1.2.250.1.213.1.1.4.1","code":"10"}]}],)"
      << R"("subject":{"reference":")" << (d.subject.empty() ? s.patient : d.subject) << R"("},)"
      << R"("date":")" << d.date << R"(","author":[{"reference":"Practitioner/mhd-author"}],)";
    if (!d.replaces.empty())
      b << R"("relatesTo":[{"code":"replaces","target":{"reference":")" << d.replaces << R"("}}],)";
    b << R"("securityLabel":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":")"
      << d.security << R"("}]}],)"
      << R"("content":[{"attachment":{"contentType":")" << d.content_type << R"(",)";
    if (d.inline_data)
      b << R"("data":")" << base64(d.content) << R"(")";
    else
      b << R"("url":")" << (d.attachment_url.empty() ? binary_url : d.attachment_url) << R"(")";
    if (!d.size.empty()) b << R"(,"size":)" << d.size;
    if (!d.hash.empty()) b << R"(,"hash":")" << d.hash << R"(")";
    b << R"(},"format":{"system":"urn:oid:1.3.6.1.4.1.19376.1.2.3","code":"urn:ihe:iti:xds:2017:mimeTypeSufficient"}}],)"
      << R"("context":{"event":[{"coding":[{"system":"urn:oid:2.16.840.1.113883.6.3","code":"C34"}]}],)"
      << R"("period":{"start":"2026-11-18","end":"2026-11-19"},)"
      << R"("facilityType":{"coding":[{"system":"urn:oid:2.16.840.1.113883.6.96","code":")" << d.facility << R"("}]},)"
      << R"("practiceSetting":{"coding":[{"system":"urn:oid:1.2.250.1.213.1.1.4.9","code":"ETABLISSEMENT"}]})";
    if (!d.related.empty()) b << R"(,"related":[{"reference":")" << d.related << R"("}])";
    b << R"(}},)"
      << R"("request":{"method":"POST","url":"DocumentReference"}})";
    if (!d.inline_data)
      b << R"(,{"fullUrl":")" << binary_url << R"(","resource":{"resourceType":"Binary","contentType":")"
        << d.content_type << R"(","data":")" << base64(d.content) << R"("},"request":{"method":"POST","url":"Binary"}})";
  }
  b << "]}";
  return b.str();
}

// Puts the synthetic patients and the author the bundles reference.
inline void load_fixtures(espace::testing::HttpClient& c) {
  for (const char* name : {"patient-qualified.json", "patient-qualified-2.json", "patient-provisional.json",
                           "patient-without-ins.json", "practitioner-author.json"}) {
    std::string body = read_test_data(name);
    std::string id = body.substr(body.find("\"id\"") + 4);
    id = id.substr(id.find('"') + 1);
    id = id.substr(0, id.find('"'));
    std::string type = body.substr(body.find("\"resourceType\"") + 14);
    type = type.substr(type.find('"') + 1);
    type = type.substr(0, type.find('"'));
    auto r = c.request("PUT", "/" + type + "/" + id, body, {{"Content-Type", "application/fhir+json"}});
    if (r.status != 201 && r.status != 200) throw std::runtime_error("fixture " + std::string(name) + ": " + r.body);
  }
}

inline espace::testing::HttpResponse post_bundle(espace::testing::HttpClient& c, const std::string& bundle) {
  return c.request("POST", "/", bundle, {{"Content-Type", "application/fhir+json"}});
}

// "Type/id" from a response location ".../Type/id/_history/n".
inline std::string target_of(const std::string& location, const std::string& type) {
  std::string t = location.substr(location.find("/" + type + "/") + 1);
  return t.substr(0, t.find("/_history"));
}

}  // namespace mhd_test
