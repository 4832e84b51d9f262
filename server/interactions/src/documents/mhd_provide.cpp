// ITI-65 Provide Document Bundle checks (profiles.ihe.net/ITI/MHD/ITI-65.html,
// 2:3.65.4.1.3 "Expected Actions") as the DMP applies them.
//
// Choices (documented in test-data/mhd/README.md):
// - Entries are POSTs of exactly one SubmissionSet List, DocumentReferences
//   and Binaries; the subject is an existing Patient referenced by all.
// - Uniqueness: a document's masterIdentifier and the SubmissionSet's
//   official identifier are XDS uniqueIds, globally unique (ITI TF-3 4.2.3.2.26
//   and 4.2.3.3.12). We store each under an id derived from its uniqueId, so the
//   storage's "create an id that exists" conflict enforces uniqueness inside the
//   one write transaction: of two concurrent submissions exactly one wins.
//   A repeated uniqueId is refused with 409 Conflict, unless the submission is
//   the same as the stored one (same digest): then it is answered 200 with the
//   stored resources, so a Document Source retrying after a lost response does
//   no harm (XDS repeats a uniqueId only for the identical document).
#include "mhd_provide.h"

#include <openssl/evp.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <array>
#include <set>

#include "espace/fhir/json.h"

namespace espace::interactions::mhd {

namespace {

using fhir::Node;

std::string entry_path(size_t i) { return "Bundle.entry[" + std::to_string(i) + "]"; }

Status fail(ErrorCategory category, const std::string& code, size_t entry, const std::string& text,
            const std::string& sub = "") {
  return Status::error(category, code, "entry " + std::to_string(entry) + ": " + text,
                       entry_path(entry) + (sub.empty() ? "" : "." + sub));
}
Status unprocessable(size_t entry, const std::string& text, const std::string& sub = "") {
  return fail(ErrorCategory::Unprocessable, "processing", entry, text, sub);
}

std::string hex(const unsigned char* bytes, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(digits[bytes[i] >> 4]);
    out.push_back(digits[bytes[i] & 15]);
  }
  return out;
}

std::string base64_encode(const unsigned char* bytes, size_t n) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = static_cast<uint32_t>(bytes[i]) << 16;
    if (i + 1 < n) v |= static_cast<uint32_t>(bytes[i + 1]) << 8;
    if (i + 2 < n) v |= bytes[i + 2];
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < n ? alphabet[(v >> 6) & 63] : '=');
    out.push_back(i + 2 < n ? alphabet[v & 63] : '=');
  }
  return out;
}

// An OpenSSL message digest fed piece by piece.
class Hasher {
 public:
  explicit Hasher(const EVP_MD* md) : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, md, nullptr); }
  ~Hasher() { EVP_MD_CTX_free(ctx_); }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void add(std::string_view bytes) { EVP_DigestUpdate(ctx_, bytes.data(), bytes.size()); }
  std::string finish_hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, md, &len);
    return hex(md, len);
  }
  std::string finish_base64() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, md, &len);
    return base64_encode(md, len);
  }

 private:
  EVP_MD_CTX* ctx_;
};

std::string sha256_hex(std::string_view text) {
  Hasher h(EVP_sha256());
  h.add(text);
  return h.finish_hex();
}

// The value of each base64 character; -1 for any other byte, -2 for the
// whitespace a sender may wrap lines with.
const std::array<int8_t, 256>& base64_values() {
  static const std::array<int8_t, 256> table = [] {
    std::array<int8_t, 256> t{};
    t.fill(-1);
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int v = 0; v < 64; ++v) t[static_cast<uint8_t>(alphabet[v])] = static_cast<int8_t>(v);
    for (char c : {' ', '\n', '\r', '\t'}) t[static_cast<uint8_t>(c)] = -2;
    return t;
  }();
  return table;
}

// Decodes base64 in chunks into the SHA-1 and counts the bytes, without
// holding the decoded document: a 50 MB document costs no extra 50 MB here.
struct DocumentFacts {
  uint64_t size = 0;
  std::string sha1_base64;
};
bool measure_base64(std::string_view text, DocumentFacts* out) {
  const std::array<int8_t, 256>& values = base64_values();
  Hasher sha1(EVP_sha1());
  constexpr size_t kChunk = 16 * 1024;  // on the stack of a worker thread
  std::array<char, kChunk> chunk;
  size_t used = 0;
  uint32_t acc = 0;
  int bits = 0;
  size_t padding = 0;
  for (size_t i = 0; i < text.size();) {
    // Whole groups of four characters to three bytes while the base64 is unbroken.
    if (bits == 0 && !padding) {
      const auto* base = reinterpret_cast<const unsigned char*>(text.data());
      const unsigned char* p = base + i;
      const unsigned char* groups_end = p + (text.size() - i) / 4 * 4;
      for (; p != groups_end; p += 4) {
        const int8_t v0 = values[p[0]], v1 = values[p[1]], v2 = values[p[2]], v3 = values[p[3]];
        if ((v0 | v1 | v2 | v3) < 0) break;  // white space, padding or a bad byte: one at a time
        if (used >= kChunk - 3) {  // leaves room for the slow path too
          sha1.add(std::string_view(chunk.data(), used));
          out->size += used;
          used = 0;
        }
        const uint32_t group = static_cast<uint32_t>(v0) << 18 | static_cast<uint32_t>(v1) << 12 |
                               static_cast<uint32_t>(v2) << 6 | static_cast<uint32_t>(v3);
        char* o = chunk.data() + used;
        o[0] = static_cast<char>(group >> 16);
        o[1] = static_cast<char>((group >> 8) & 0xff);
        o[2] = static_cast<char>(group & 0xff);
        used += 3;
      }
      i = static_cast<size_t>(p - base);
      if (i == text.size()) break;
    }
    const char c = text[i++];
    int8_t v = values[static_cast<uint8_t>(c)];
    if (v >= 0 && !padding) {
      acc = (acc << 6) | static_cast<uint32_t>(v);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        chunk[used++] = static_cast<char>((acc >> bits) & 0xff);
        if (used == kChunk) {
          sha1.add(std::string_view(chunk.data(), used));
          out->size += used;
          used = 0;
        }
      }
    } else if (c == '=') {
      ++padding;
    } else if (v != -2) {
      return false;  // bad character, or data after padding
    }
  }
  if (padding > 2) return false;
  sha1.add(std::string_view(chunk.data(), used));
  out->size += used;
  out->sha1_base64 = sha1.finish_base64();
  return true;
}

bool has_coding(const Node* codeable, std::string_view system, std::string_view code) {
  if (!codeable) return false;
  bool found = false;
  codeable->for_each_child("coding", [&](const Node& coding) {
    if (coding.child_value("system") == system && coding.child_value("code") == code) found = true;
  });
  return found;
}

bool is_submission_set(const Node& list) {
  return has_coding(list.child("code"), kListTypesSystem, "submissionset");
}

std::string strip_base(std::string ref, const std::string& base_url) {
  if (!base_url.empty() && ref.rfind(base_url + "/", 0) == 0) ref.erase(0, base_url.size() + 1);
  return ref;
}

// The SubmissionSet's uniqueId: identifier with use=official (MHD SubmissionSet
// profile), or the only identifier when none says so.
std::string list_unique_id(const Node& list) {
  std::string official, any;
  int count = 0;
  list.for_each_child("identifier", [&](const Node& id) {
    ++count;
    if (id.child_value("use") == "official" && official.empty()) official = std::string(id.child_value("value"));
    if (any.empty()) any = std::string(id.child_value("value"));
  });
  return !official.empty() ? official : count == 1 ? any : std::string();
}

bool is_ins_system(std::string_view system) {
  // INS-NIR, INS-NIA, and the test and demonstration INS-NIR OIDs of the ANS
  // (the ones our fr-patient-ins profile admits).
  return system == kInsNirSystem || system == "urn:oid:1.2.250.1.213.1.4.9" ||
         system == "urn:oid:1.2.250.1.213.1.4.10" || system == "urn:oid:1.2.250.1.213.1.4.11";
}

bool is_identity_reliability_url(std::string_view url) {
  return url == kIdentityReliabilityUrl || url == kOurIdentityReliabilityUrl;
}

// A Patient (as stored JSON) whose identity may carry documents: an INS
// identifier and the identity reliability status QUAL.
Status check_qualified_identity(const std::string& patient_json, const std::string& patient_ref, size_t entry) {
  rapidjson::Document doc;
  doc.Parse(patient_json.data(), patient_json.size());
  if (doc.HasParseError() || !doc.IsObject())
    return Status::error(ErrorCategory::Internal, "exception", "stored Patient is not JSON");
  bool has_ins = false;
  if (doc.HasMember("identifier") && doc["identifier"].IsArray())
    for (auto& id : doc["identifier"].GetArray())
      if (id.IsObject() && id.HasMember("system") && id["system"].IsString() &&
          is_ins_system(id["system"].GetString()) && id.HasMember("value"))
        has_ins = true;
  std::string status;
  if (doc.HasMember("extension") && doc["extension"].IsArray()) {
    for (auto& ext : doc["extension"].GetArray()) {
      if (!ext.IsObject() || !ext.HasMember("url") || !ext["url"].IsString() ||
          !is_identity_reliability_url(ext["url"].GetString()) || !ext.HasMember("extension") ||
          !ext["extension"].IsArray())
        continue;
      for (auto& sub : ext["extension"].GetArray()) {
        if (!sub.IsObject() || !sub.HasMember("url") || !sub["url"].IsString() ||
            std::string_view(sub["url"].GetString()) != "identityStatus" || !sub.HasMember("valueCoding"))
          continue;
        const auto& coding = sub["valueCoding"];
        if (coding.IsObject() && coding.HasMember("code") && coding["code"].IsString())
          status = coding["code"].GetString();
      }
    }
  }
  if (status != "QUAL")
    return unprocessable(entry,
                         patient_ref + "'s identity is not qualified (identity reliability status " +
                             (status.empty() ? std::string("absent") : "'" + status + "'") +
                             "; QUAL is required by the INS rules before a document is filed)",
                         "resource.subject");
  if (!has_ins)
    return unprocessable(entry,
                         patient_ref + " has no INS identifier (INS-NIR " + std::string(kInsNirSystem) +
                             " or INS-NIA): documents are filed only under a qualified INS",
                         "resource.subject");
  return Status::ok();
}

// Resolves the subject reference to a stored Patient and checks its identity.
Status check_subject(const Services& services, const std::string& base_url, const std::string& subject_ref,
                     size_t entry) {
  std::string ref = strip_base(subject_ref, base_url);
  std::string id;
  size_t q = ref.find('?');
  if (ref.rfind("Patient?", 0) == 0 && q != std::string::npos) {
    std::vector<std::string> ids;
    Status s = resolve_criteria(services, "Patient", std::string_view(ref).substr(q + 1), &ids);
    if (!s) return unprocessable(entry, "subject " + subject_ref + ": " + s.message(), "resource.subject");
    if (ids.size() != 1)
      return unprocessable(entry, "subject " + subject_ref + " matches " + std::to_string(ids.size()) +
                                      " patients (exactly one is required)",
                           "resource.subject");
    id = ids[0];
  } else if (ref.rfind("Patient/", 0) == 0 && ref.find('/', 8) == std::string::npos) {
    id = ref.substr(8);
  } else {
    return unprocessable(entry, "subject must reference a Patient known to this server (got '" + subject_ref + "')",
                         "resource.subject");
  }
  storage::ResourceVersion v;
  Status s = is_valid_id(id) ? services.store->read("Patient", id, &v)
                             : Status::error(ErrorCategory::NotFound, "not-found", "malformed id");
  if (!s || v.deleted) {
    if (s.category() == ErrorCategory::Internal) return s;
    return unprocessable(entry, "subject " + subject_ref + " is not a Patient of this server", "resource.subject");
  }
  return check_qualified_identity(v.json, "Patient/" + id, entry);
}

// Appends the digest extension to the List (an R4 extension with valueString).
void add_digest_extension(Node& list, const std::string& digest) {
  const fhir::TypeDef *ext_type = nullptr, *url_type = nullptr, *value_type = nullptr;
  const fhir::ElementDef* ext_def = list.type->find_json("extension", &ext_type);
  if (!ext_def || !ext_type) return;
  const fhir::ElementDef* url_def = ext_type->find_json("url", &url_type);
  const fhir::ElementDef* value_def = ext_type->find_json("valueString", &value_type);
  if (!url_def || !value_def) return;
  Node ext;
  ext.def = ext_def;
  ext.type = ext_type;
  ext.name = ext_def->name;
  Node url;
  url.def = url_def;
  url.type = url_type;
  url.name = url_def->name;
  url.value = kSubmissionDigestUrl;
  url.has_value = true;
  Node value;
  value.def = value_def;
  value.type = value_type;
  value.name = "valueString";
  value.value = "sha256:" + digest;
  value.has_value = true;
  fhir::insert_ordered(ext, std::move(url));
  fhir::insert_ordered(ext, std::move(value));
  fhir::insert_ordered(list, std::move(ext));
}

}  // namespace

bool is_provide_bundle(const Node& bundle) {
  bool yes = false;
  if (const Node* meta = bundle.child("meta"))
    meta->for_each_child("profile", [&](const Node& p) {
      std::string_view v = p.value;
      if (v.rfind(kMhdProfilePrefix, 0) == 0 && v.find("ProvideBundle") != std::string_view::npos) yes = true;
    });
  if (yes) return true;
  bundle.for_each_child("entry", [&](const Node& entry) {
    const Node* r = entry.child("resource");
    if (r && fhir::resource_type(*r) == "List" && is_submission_set(*r)) yes = true;
  });
  return yes;
}

Status prepare_submission(const Services& services, const std::string& base_url, Node& bundle, Submission* out) {
  std::vector<Node*> resources;
  std::vector<std::string> full_urls;
  size_t index = 0;
  Hasher digest(EVP_sha256());
  for (Node& entry : bundle.children) {
    if (!entry.def || entry.def->name != "entry") continue;
    Node* resource = nullptr;
    for (Node& c : entry.children)
      if (c.def && c.def->name == "resource") resource = &c;
    std::string full_url(entry.child_value("fullUrl"));
    const Node* request = entry.child("request");
    std::string method = request ? std::string(request->child_value("method")) : std::string();
    if (!resource) return unprocessable(index, "an ITI-65 entry carries a resource", "resource");
    std::string type(fhir::resource_type(*resource));
    if (method != "POST")
      return unprocessable(index, "ITI-65 entries are created with POST (got '" + method + "')", "request.method");
    if (type != "List" && type != "DocumentReference" && type != "Binary")
      return unprocessable(index,
                           "an ITI-65 bundle carries a SubmissionSet List, DocumentReferences and Binaries, not a " +
                               type + " (the patient must already be known to the server)",
                           "resource");
    if (full_url.empty()) return unprocessable(index, "fullUrl is required to link the submission", "fullUrl");
    if (std::find(full_urls.begin(), full_urls.end(), full_url) != full_urls.end())
      return unprocessable(index, "duplicate fullUrl " + full_url, "fullUrl");
    // The digest covers what is stored: metadata as sent, documents by their hash.
    digest.add(full_url);
    digest.add(std::string_view("\0", 1));
    if (type == "Binary") {
      Hasher content(EVP_sha256());
      content.add(resource->child_value("data"));
      digest.add(std::string("Binary ") + std::string(resource->child_value("contentType")) + " " + content.finish_hex());
    } else {
      // Written as a root resource (the writer ignores the entry's def and name).
      digest.add(fhir::write_json(*resource));
    }
    digest.add(std::string_view("\0", 1));
    resources.push_back(resource);
    full_urls.push_back(full_url);
    ++index;
  }
  out->digest = digest.finish_hex();
  const size_t n = resources.size();

  // Exactly one SubmissionSet.
  size_t list_at = n;
  for (size_t i = 0; i < n; ++i) {
    if (fhir::resource_type(*resources[i]) != "List") continue;
    if (!is_submission_set(*resources[i]))
      return unprocessable(i, "the only List an ITI-65 bundle may carry is the SubmissionSet (code " +
                                  std::string(kListTypesSystem) + "#submissionset); folders are not supported",
                           "resource.code");
    if (list_at != n) return unprocessable(i, "a second SubmissionSet: exactly one is required", "resource");
    list_at = i;
  }
  if (list_at == n)
    return Status::error(ErrorCategory::Unprocessable, "required",
                         "the ITI-65 bundle has no SubmissionSet (a List with code " + std::string(kListTypesSystem) +
                             "#submissionset)",
                         "Bundle.entry");
  Node& list = *resources[list_at];
  std::string list_uid = list_unique_id(list);
  if (list_uid.empty())
    return unprocessable(list_at, "the SubmissionSet has no uniqueId (identifier with use=official)",
                         "resource.identifier");

  // The List's items, as references.
  std::set<std::string> listed;
  list.for_each_child("entry", [&](const Node& e) {
    if (const Node* item = e.child("item")) listed.insert(std::string(item->child_value("reference")));
  });
  std::string subject(list.child("subject") ? list.child("subject")->child_value("reference") : "");
  if (subject.empty()) return unprocessable(list_at, "the SubmissionSet has no subject", "resource.subject");

  // Binaries by fullUrl.
  std::map<std::string, size_t> binary_at;
  for (size_t i = 0; i < n; ++i)
    if (fhir::resource_type(*resources[i]) == "Binary") binary_at.emplace(full_urls[i], i);
  std::set<std::string> attached_binaries;
  std::set<std::string> unique_ids;

  for (size_t i = 0; i < n; ++i) {
    Node& r = *resources[i];
    std::string type(fhir::resource_type(r));
    SubmittedEntry se;
    se.type = type;
    se.full_url = full_urls[i];
    if (type == "List") {
      se.unique_id = list_uid;
      se.id = derived_id("List", list_uid);
    } else if (type == "Binary") {
      se.id = derived_id("Binary", out->digest + "|" + full_urls[i]);
      if (r.child_value("data").empty())
        return unprocessable(i, "the Binary carries no data", "resource.data");
    } else {  // DocumentReference
      const Node* master = r.child("masterIdentifier");
      std::string uid(master ? master->child_value("value") : "");
      if (uid.empty())
        return unprocessable(i, "the DocumentReference has no masterIdentifier (the document's uniqueId)",
                             "resource.masterIdentifier");
      if (!unique_ids.insert(uid).second)
        return unprocessable(i, "masterIdentifier " + uid + " appears twice in the submission",
                             "resource.masterIdentifier");
      se.unique_id = uid;
      se.id = derived_id("DocumentReference", uid);
      if (r.child_value("status") != "current")
        return unprocessable(i, "a submitted DocumentReference has status current (got '" +
                                    std::string(r.child_value("status")) + "')",
                             "resource.status");
      if (!listed.count(full_urls[i]))
        return unprocessable(i, "the DocumentReference " + full_urls[i] + " is not an entry of the SubmissionSet",
                             "fullUrl");
      std::string doc_subject(r.child("subject") ? r.child("subject")->child_value("reference") : "");
      if (doc_subject != subject)
        return unprocessable(i, "the DocumentReference's subject (" + (doc_subject.empty() ? "none" : doc_subject) +
                                    ") differs from the SubmissionSet's (" + subject + ")",
                             "resource.subject");
      // Every content attachment: in the bundle or inline, size and hash as stated.
      size_t content_index = 0;
      Status bad = Status::ok();
      r.for_each_child("content", [&](const Node& content) {
        const Node* att = content.child("attachment");
        std::string where = "resource.content[" + std::to_string(content_index++) + "].attachment";
        if (!bad || !att) return;
        std::string url(att->child_value("url"));
        std::string_view inline_data = att->child_value("data");
        std::string_view data;
        std::string binary_type;
        if (!url.empty()) {
          auto b = binary_at.find(url);
          if (b == binary_at.end()) {
            bad = unprocessable(i, "attachment url " + url + " is not the fullUrl of a Binary in the bundle",
                                where + ".url");
            return;
          }
          attached_binaries.insert(url);
          data = resources[b->second]->child_value("data");
          binary_type = std::string(resources[b->second]->child_value("contentType"));
        } else if (!inline_data.empty()) {
          data = inline_data;
        } else {
          bad = unprocessable(i, "the attachment has neither url nor data", where);
          return;
        }
        DocumentFacts facts;
        if (!measure_base64(data, &facts)) {
          bad = unprocessable(i, "the document is not valid base64", where);
          return;
        }
        if (facts.size > services.limits.max_document_bytes) {
          bad = fail(ErrorCategory::TooLarge, "too-costly", i,
                     "the document has " + std::to_string(facts.size) + " bytes; this server accepts at most " +
                         std::to_string(services.limits.max_document_bytes),
                     where);
          return;
        }
        std::string_view stated_size = att->child_value("size");
        if (!stated_size.empty() && stated_size != std::to_string(facts.size)) {
          bad = unprocessable(i, "attachment.size is " + std::string(stated_size) + " but the document has " +
                                     std::to_string(facts.size) + " bytes",
                              where + ".size");
          return;
        }
        std::string_view stated_hash = att->child_value("hash");
        if (!stated_hash.empty() && stated_hash != facts.sha1_base64) {
          bad = unprocessable(i, "attachment.hash " + std::string(stated_hash) +
                                     " is not the SHA-1 of the document (" + facts.sha1_base64 + ", base64)",
                              where + ".hash");
          return;
        }
        std::string_view stated_type = att->child_value("contentType");
        if (!binary_type.empty() && !stated_type.empty() && stated_type != binary_type) {
          bad = unprocessable(i, "attachment.contentType " + std::string(stated_type) +
                                     " differs from the Binary's " + binary_type,
                              where + ".contentType");
          return;
        }
      });
      if (!bad) return bad;
      if (content_index == 0) return unprocessable(i, "the DocumentReference has no content", "resource.content");

      // Replacement: the target must be a current document of the same patient.
      size_t relates_index = 0;
      r.for_each_child("relatesTo", [&](const Node& rel) {
        std::string where = "resource.relatesTo[" + std::to_string(relates_index++) + "]";
        if (!bad || rel.child_value("code") != "replaces") return;
        std::string target(rel.child("target") ? rel.child("target")->child_value("reference") : "");
        target = strip_base(target, base_url);
        std::string target_id = target.rfind("DocumentReference/", 0) == 0 ? target.substr(18) : "";
        storage::ResourceVersion current;
        Status rs = is_valid_id(target_id) ? services.store->read("DocumentReference", target_id, &current)
                                           : Status::error(ErrorCategory::NotFound, "not-found", "no id");
        if (!rs && rs.category() == ErrorCategory::Internal) {
          bad = rs;
          return;
        }
        if (!rs || current.deleted) {
          bad = unprocessable(i, "the replaced document " + (target.empty() ? std::string("(none)") : target) +
                                     " is not a DocumentReference of this server",
                              where + ".target");
          return;
        }
        Node stored;
        if (Status ps = fhir::parse_json(*services.defs, current.json, &stored); !ps) {
          bad = ps;
          bad.set_category(ErrorCategory::Internal);
          return;
        }
        std::string_view status = stored.child_value("status");
        if (status != "current") {
          bad = fail(ErrorCategory::Conflict, "conflict", i,
                     "the replaced document " + target + " is " + std::string(status) +
                         ", not current: only the current version of a document can be replaced",
                     where + ".target");
          return;
        }
        std::string stored_subject(stored.child("subject") ? stored.child("subject")->child_value("reference") : "");
        if (strip_base(stored_subject, base_url) != strip_base(subject, base_url) &&
            subject.find('?') == std::string::npos) {
          bad = unprocessable(i, "the replaced document " + target + " belongs to another patient", where + ".target");
          return;
        }
        for (const WriteOp& op : out->supersede)
          if (op.id == target_id) {
            bad = unprocessable(i, target + " is replaced twice in one submission", where + ".target");
            return;
          }
        WriteOp op;
        op.kind = WriteOp::Kind::Update;
        op.type = "DocumentReference";
        op.id = target_id;
        op.method = "PUT";
        op.if_match = current.version;
        if (Status ss = fhir::set_primitive(stored, "status", "superseded"); !ss) {
          bad = ss;
          return;
        }
        if (Status ss = PreparedBody::prepare(stored, target_id, &op.body); !ss) {
          bad = ss;
          return;
        }
        op.index = index_entries(*services.defs, stored);
        out->supersede.push_back(std::move(op));
      });
      if (!bad) return bad;
    }
    out->id_of_full_url[se.full_url] = se.id;
    out->entries.push_back(std::move(se));
  }
  for (const std::string& item : listed) {
    auto it = std::find(full_urls.begin(), full_urls.end(), item);
    if (it == full_urls.end() || fhir::resource_type(*resources[it - full_urls.begin()]) != "DocumentReference")
      return unprocessable(list_at, "SubmissionSet entry " + item + " is not a DocumentReference of the bundle",
                           "resource.entry");
  }
  for (const auto& [url, at] : binary_at)
    if (!attached_binaries.count(url))
      return unprocessable(at, "the Binary " + url + " is the document of no DocumentReference", "fullUrl");

  if (Status s = check_subject(services, base_url, subject, list_at); !s) return s;
  add_digest_extension(list, out->digest);
  return Status::ok();
}

namespace {

// The stored digest of the SubmissionSet stored under `list_id`, or "".
std::string stored_digest(const Services& services, const std::string& list_id) {
  storage::ResourceVersion v;
  if (!services.store->read("List", list_id, &v) || v.deleted) return {};
  rapidjson::Document doc;
  doc.Parse(v.json.data(), v.json.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("extension") || !doc["extension"].IsArray()) return {};
  for (auto& ext : doc["extension"].GetArray())
    if (ext.IsObject() && ext.HasMember("url") && ext["url"].IsString() &&
        std::string_view(ext["url"].GetString()) == kSubmissionDigestUrl && ext.HasMember("valueString") &&
        ext["valueString"].IsString())
      return ext["valueString"].GetString();
  return {};
}

FhirResponse replay(const Services& services, const FhirRequest& req, const Submission& sub) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("resourceType");
  w.String("Bundle");
  w.Key("type");
  w.String("transaction-response");
  w.Key("entry");
  w.StartArray();
  for (const SubmittedEntry& e : sub.entries) {
    storage::ResourceVersion v;
    if (Status s = services.store->read(e.type, e.id, &v); !s) return error_response(std::move(s));
    w.StartObject();
    w.Key("response");
    w.StartObject();
    w.Key("status");
    w.String("200 OK");
    w.Key("location");
    w.String(version_url(req.base_url, e.type, e.id, v.version));
    w.Key("etag");
    w.String(make_etag(v.version));
    w.Key("lastModified");
    w.String(format_instant(v.last_updated_us));
    w.EndObject();
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  FhirResponse out;
  out.json.assign(buf.GetString(), buf.GetSize());
  return out;
}

}  // namespace

std::optional<FhirResponse> explain_failed_write(const Services& services, const FhirRequest& request,
                                                 const Submission& submission, const Status& failure,
                                                 size_t failed_entry) {
  if (failed_entry >= submission.entries.size()) {
    if (failure.category() == ErrorCategory::PreconditionFailed)
      return error_response(ErrorCategory::Conflict, "conflict",
                            "a document this submission replaces was changed by another request meanwhile; nothing "
                            "was stored");
    return std::nullopt;
  }
  if (failure.category() != ErrorCategory::Conflict) return std::nullopt;
  const SubmittedEntry& e = submission.entries[failed_entry];
  std::string list_id;
  for (const SubmittedEntry& s : submission.entries)
    if (s.type == "List") list_id = s.id;
  if (stored_digest(services, list_id) == "sha256:" + submission.digest) return replay(services, request, submission);
  std::string what = e.type == "List" ? "SubmissionSet uniqueId " : e.type == "DocumentReference" ? "document uniqueId " : "";
  return error_response(Status::error(
      ErrorCategory::Conflict, "duplicate",
      "entry " + std::to_string(failed_entry) + ": " + what + e.unique_id +
          " was already submitted with different content; a uniqueId identifies one submission (replace a document "
          "with a new uniqueId and relatesTo.code=replaces)",
      "Bundle.entry[" + std::to_string(failed_entry) + "]"));
}

std::string derived_id(std::string_view kind, std::string_view unique_id) {
  return sha256_hex(std::string(kind) + "|" + std::string(unique_id)).substr(0, 40);
}

}  // namespace espace::interactions::mhd
