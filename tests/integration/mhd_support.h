// Builders for IHE MHD ITI-65 Provide Document Bundles used by the mhd_*
// integration tests. Data is synthetic (test-data/mhd/).
#pragma once

#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <sstream>
#include <string>
#include <vector>

#include "http_client.h"

namespace mhd_test {

// ANS terminologies (NOS) used in the DMP metadata.
inline const std::string kFormatSystem =
    "https://mos.esante.gouv.fr/NOS/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode";
inline const std::string kFacilitySystem =
    "https://mos.esante.gouv.fr/NOS/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite";
inline const std::string kSettingSystem =
    "https://mos.esante.gouv.fr/NOS/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice";

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

// SHA-1 (FIPS 180-4), for attachment.hash: the server computes it with
// OpenSSL, the tests independently.
inline std::string sha1_base64(const std::string& message) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  std::string m = message;
  uint64_t bits = static_cast<uint64_t>(message.size()) * 8;
  m += static_cast<char>(0x80);
  while (m.size() % 64 != 56) m += '\0';
  for (int i = 7; i >= 0; --i) m += static_cast<char>((bits >> (i * 8)) & 0xff);
  auto rol = [](uint32_t x, int n) { return (x << n) | (x >> (32 - n)); };
  for (size_t chunk = 0; chunk < m.size(); chunk += 64) {
    uint32_t w[80];
    for (int i = 0; i < 16; ++i)
      w[i] = static_cast<uint32_t>(static_cast<unsigned char>(m[chunk + 4 * i])) << 24 |
             static_cast<uint32_t>(static_cast<unsigned char>(m[chunk + 4 * i + 1])) << 16 |
             static_cast<uint32_t>(static_cast<unsigned char>(m[chunk + 4 * i + 2])) << 8 |
             static_cast<uint32_t>(static_cast<unsigned char>(m[chunk + 4 * i + 3]));
    for (int i = 16; i < 80; ++i) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      uint32_t f, k;
      if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
      else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
      else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
      else f = b ^ c ^ d, k = 0xCA62C1D6;
      uint32_t t = rol(a, 5) + f + e + k + w[i];
      e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  std::string digest;
  for (uint32_t v : h)
    for (int i = 3; i >= 0; --i) digest += static_cast<char>((v >> (i * 8)) & 0xff);
  return base64(digest);
}

struct Document {
  std::string unique_id;                  // masterIdentifier value
  std::string content = "Compte rendu synthetique de test.\n";
  std::string content_type = "text/plain";
  std::string size, hash;                 // attachment.size / hash as sent ("" = the true ones)
  std::string replaces;                   // "DocumentReference/<id>" or ""
  std::string type_code = "11488-4";      // LOINC
  std::string date = "2026-11-20T10:00:00+01:00";
  std::string security = "N";             // v3-Confidentiality
  std::string attachment_url;             // "" = the Binary entry of this document
  std::string subject;                    // "" = the bundle's patient
  bool inline_data = false;               // data in the attachment instead of a Binary
  std::string related;                    // context.related reference, "" to omit
  std::string facility = "SA05";          // context.facilityType code (TRE-R02)
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
      << R"("date":")" << d.date << R"(","author":[{"reference":"Practitioner/mhd-author"}],)"
      << R"("custodian":{"reference":"Organization/mhd-custodian"},)";
    if (!d.replaces.empty())
      b << R"("relatesTo":[{"code":"replaces","target":{"reference":")" << d.replaces << R"("}}],)";
    b << R"("securityLabel":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":")"
      << d.security << R"("}]}],)"
      << R"("content":[{"attachment":{"contentType":")" << d.content_type << R"(",)";
    if (d.inline_data)
      b << R"("data":")" << base64(d.content) << R"(")";
    else
      b << R"("url":")" << (d.attachment_url.empty() ? binary_url : d.attachment_url) << R"(")";
    b << R"(,"size":)" << (d.size.empty() ? std::to_string(d.content.size()) : d.size);
    b << R"(,"hash":")" << (d.hash.empty() ? sha1_base64(d.content) : d.hash) << R"(")";
    b << R"(},"format":{"system":")" << kFormatSystem << R"(","code":"urn:ihe:iti:xds:2017:mimeTypeSufficient"}}],)"
      << R"("context":{"event":[{"coding":[{"system":"urn:oid:2.16.840.1.113883.6.3","code":"C34"}]}],)"
      << R"("period":{"start":"2026-11-18","end":"2026-11-19"},)"
      << R"("facilityType":{"coding":[{"system":")" << kFacilitySystem << R"(","code":")" << d.facility << R"("}]},)"
      << R"("practiceSetting":{"coding":[{"system":")" << kSettingSystem << R"(","code":"ETABLISSEMENT"}]})";
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

// Puts the synthetic patients, the author and the custodian the bundles
// reference. The patients whose identity is not qualified are refused by our
// fr-patient-ins profile: they are stored only by a server running with
// --relaxed-profiles (`relaxed`).
inline void load_fixtures(espace::testing::HttpClient& c, bool relaxed = false) {
  std::vector<std::string> names = {"patient-qualified.json", "patient-qualified-2.json", "practitioner-author.json",
                                    "organization-custodian.json"};
  if (relaxed) {
    names.push_back("patient-provisional.json");
    names.push_back("patient-without-ins.json");
  }
  for (const std::string& name : names) {
    std::string body = read_test_data(name);
    std::string id = body.substr(body.find("\"id\"") + 4);
    id = id.substr(id.find('"') + 1);
    id = id.substr(0, id.find('"'));
    std::string type = body.substr(body.find("\"resourceType\"") + 14);
    type = type.substr(type.find('"') + 1);
    type = type.substr(0, type.find('"'));
    auto r = c.request("PUT", "/" + type + "/" + id, body, {{"Content-Type", "application/fhir+json"}});
    if (r.status != 201 && r.status != 200) throw std::runtime_error("fixture " + name + ": " + r.body);
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
