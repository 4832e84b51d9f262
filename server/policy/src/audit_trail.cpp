// One AuditEvent per request (audit.h has the mapping to IHE BALP).
//
// The event is built as compact JSON with a fixed member order — the form
// the storage hashes into the chain — on the request's worker thread; the
// storage writer only inserts it.
#include "espace/policy/audit.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string_view>

#include "espace/interactions/devices.h"
#include "espace/interactions/text_forms.h"

namespace espace::policy {

namespace {

using interactions::FhirRequest;
using interactions::Interaction;
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

constexpr const char* kExtensionBase = "https://espace.example/fhir/StructureDefinition/";
constexpr const char* kRoleSystem = "https://espace.example/fhir/CodeSystem/caller-role";
constexpr const char* kRppsSystem = "urn:oid:1.2.250.1.71.4.2.1";
constexpr const char* kFinessSystem = "urn:oid:1.2.250.1.71.4.2.2";
constexpr const char* kProfessionSystem = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante";
constexpr const char* kSpecialtySystem = "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale";
constexpr const char* kActReason = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
constexpr const char* kDicom = "http://dicom.nema.org/resources/ontology/DCM";
constexpr size_t kMaxPatients = 100;    // per event; the storage takes up to 1000
constexpr size_t kMaxEntities = 1000;   // resources listed per event (a page of results)

bool is_fhir_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
      return false;
  return true;
}

void add_patient(std::vector<std::string>* patients, std::string_view id) {
  if (!is_fhir_id(id) || patients->size() >= kMaxPatients) return;
  if (std::find(patients->begin(), patients->end(), id) == patients->end()) patients->emplace_back(id);
}

// "Patient/123", "123" (for parameters that only take Patients) or an
// absolute URL ending in Patient/123.
void add_patient_reference(std::vector<std::string>* patients, std::string_view ref, bool bare_id_is_patient) {
  size_t at = ref.rfind("Patient/");
  if (at != std::string_view::npos && (at == 0 || ref[at - 1] == '/')) {
    std::string_view id = ref.substr(at + 8);
    id = id.substr(0, id.find('/'));  // Patient/1/_history/2
    add_patient(patients, id);
  } else if (bare_id_is_patient && ref.find('/') == std::string_view::npos) {
    add_patient(patients, ref);
  }
}

// The patients a request names by itself: its URL, its patient/subject
// criteria, the subject of the resource it writes. The rules add those of the
// data actually touched (AccessRecord::patients).
std::vector<std::string> request_patients(const FhirRequest& req, const AccessRecord& access) {
  std::vector<std::string> out;
  for (const std::string& p : access.patients) add_patient(&out, p);
  if (req.type == "Patient" && !req.id.empty()) add_patient(&out, req.id);
  if (req.compartment_type == "Patient") add_patient(&out, req.compartment_id);
  for (const auto& [name, value] : req.params) {
    std::string_view base = std::string_view(name).substr(0, name.find(':'));
    if (name.find('.') != std::string::npos) continue;  // chained: criteria on another resource
    bool patient_param = base == "patient";
    if (!patient_param && base != "subject" && base != "beneficiary") continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      add_patient_reference(&out, rest.substr(0, comma), patient_param);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  if (req.resource) {
    const fhir::Node& r = *req.resource;
    if (fhir::resource_type(r) == "Patient") add_patient(&out, fhir::resource_id(r));
    for (const char* element : {"subject", "patient", "beneficiary"})
      if (const fhir::Node* ref = r.child(element)) add_patient_reference(&out, ref->child_value("reference"), false);
  }
  return out;
}

const char* action_code(Interaction i) {
  switch (i) {
    case Interaction::Create: return "C";
    case Interaction::Read:
    case Interaction::VRead:
    case Interaction::HistoryInstance:
    case Interaction::HistoryType:
    case Interaction::HistorySystem:
    case Interaction::Capabilities: return "R";
    case Interaction::Update:
    case Interaction::Patch:
    case Interaction::ConditionalUpdate:
    case Interaction::ConditionalPatch: return "U";
    case Interaction::Delete:
    case Interaction::ConditionalDelete: return "D";
    // Searches are queries: "E" per the audit-event-action code system.
    case Interaction::SearchType:
    case Interaction::SearchSystem:
    case Interaction::Batch:
    case Interaction::Transaction:
    case Interaction::Operation: return "E";
  }
  return "E";
}

// restful-interaction codes (the CapabilityStatement ones, plus history).
const char* subtype_code(Interaction i) {
  switch (i) {
    case Interaction::HistoryInstance:
    case Interaction::HistoryType:
    case Interaction::HistorySystem: return "history";
    default: return interactions::interaction_code(i);
  }
}

bool is_search(Interaction i) { return i == Interaction::SearchType || i == Interaction::SearchSystem; }

// Parameters whose values say nothing about who the patient is; the values
// of all others (names, birth date, identifiers, addresses, ...) are not kept.
bool value_is_kept(std::string_view name) {
  if (name.find('.') != std::string_view::npos || name.rfind("_has", 0) == 0) return false;
  std::string_view base = name.substr(0, name.find(':'));
  static constexpr std::string_view kKept[] = {
      "_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_type", "_id",
      "_lastUpdated", "_since", "_format", "_pretty", "_tag", "_security", "_profile", "_page", "_cursor",
      "_before", "_after", "patient", "subject", "type", "category", "status", "date", "code", "period",
      "clinical-status", "verification-status", "authored", "created", "intent", "class", "security-label",
      "relatesto", "contenttype", "format", "setting", "facility", "event", "onset-date", "recorded-date"};
  return std::find(std::begin(kKept), std::end(kKept), base) != std::end(kKept);
}

std::string percent_encode(std::string_view s) {
  static const char digits[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~' || c == ':' || c == '|' || c == '/' || c == ',') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  return out;
}

std::string redacted_query(const FhirRequest& req) {
  std::string q;
  for (const auto& [name, value] : req.params) {
    if (!q.empty()) q += '&';
    q += percent_encode(name);
    q += '=';
    q += value_is_kept(name) ? percent_encode(value) : std::string("redacted");
  }
  return q;
}

std::string base64(std::string_view in) {
  static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t n = (uint32_t{static_cast<unsigned char>(in[i])} << 16) |
                 (uint32_t{static_cast<unsigned char>(in[i + 1])} << 8) | static_cast<unsigned char>(in[i + 2]);
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += table[(n >> 6) & 63];
    out += table[n & 63];
  }
  if (i < in.size()) {
    uint32_t n = uint32_t{static_cast<unsigned char>(in[i])} << 16;
    if (i + 1 < in.size()) n |= uint32_t{static_cast<unsigned char>(in[i + 1])} << 8;
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += i + 1 < in.size() ? table[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

void string_member(Writer& w, const char* key, std::string_view value) {
  w.Key(key);
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

void coding(Writer& w, const char* system, std::string_view code, const char* display = nullptr) {
  w.StartObject();
  string_member(w, "system", system);
  string_member(w, "code", code);
  if (display) string_member(w, "display", display);
  w.EndObject();
}

void codeable(Writer& w, const char* system, std::string_view code, const char* display = nullptr) {
  w.StartObject();
  w.Key("coding");
  w.StartArray();
  coding(w, system, code, display);
  w.EndArray();
  w.EndObject();
}

// Professionals and patients name HL7 v3 ActReason codes; connected apps name
// the purposes of their device-app-connection Consent, which are codes of our
// device-data-purpose system (server/policy/data/purposes.json).
const char* purpose_system(std::string_view purpose) {
  for (std::string_view app_purpose : {"prevention", "diagnosis", "care", "follow-up"})
    if (purpose == app_purpose) return interactions::devices::kPurposeSystem.data();
  return kActReason;
}

void purpose_of_use(Writer& w, const char* key, const Caller& caller, const AccessRecord& access) {
  std::string purpose = access.break_glass ? std::string("ETREAT") : caller.purpose_of_use;
  if (purpose.empty()) return;
  w.Key(key);
  w.StartArray();
  codeable(w, purpose_system(purpose), purpose);
  w.EndArray();
}

void identifier(Writer& w, const char* system, std::string_view value) {
  w.Key("identifier");
  w.StartObject();
  string_member(w, "system", system);
  string_member(w, "value", value);
  w.EndObject();
}

// The requesting agent: the person (or the system) behind the request.
void user_agent(Writer& w, const Caller& caller, const AccessRecord& access) {
  w.StartObject();
  bool human = caller.role != Role::System && caller.role != Role::Open && caller.role != Role::Anonymous;
  if (access.break_glass || !access.rules.empty()) {
    w.Key("extension");
    w.StartArray();
    if (access.break_glass) {
      w.StartObject();
      string_member(w, "url", std::string(kExtensionBase) + "audit-break-the-glass");
      w.Key("valueBoolean");
      w.Bool(true);
      w.EndObject();
    }
    for (const std::string& rule : access.rules) {
      w.StartObject();
      string_member(w, "url", std::string(kExtensionBase) + "audit-rule");
      string_member(w, "valueString", rule);
      w.EndObject();
    }
    w.EndArray();
  }
  w.Key("type");
  if (human)
    codeable(w, "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "humanuser", "human user");
  else
    codeable(w, kDicom, "110150", "Application");
  w.Key("role");
  w.StartArray();
  codeable(w, kRoleSystem, role_name(caller.role));
  if (!caller.profession_code.empty()) codeable(w, kProfessionSystem, caller.profession_code);
  if (!caller.specialty_code.empty()) codeable(w, kSpecialtySystem, caller.specialty_code);
  w.EndArray();
  std::string self = caller.fhir_user;
  if (self.empty() && caller.role == Role::Patient && !caller.patient_id.empty()) self = "Patient/" + caller.patient_id;
  if (!self.empty() || !caller.national_id.empty() || !caller.display_name.empty()) {
    w.Key("who");
    w.StartObject();
    if (!self.empty()) string_member(w, "reference", self);
    if (!caller.national_id.empty()) identifier(w, kRppsSystem, caller.national_id);
    if (!caller.display_name.empty()) string_member(w, "display", caller.display_name);
    w.EndObject();
  }
  if (!caller.subject.empty()) string_member(w, "altId", caller.subject);
  if (!caller.display_name.empty()) string_member(w, "name", caller.display_name);
  w.Key("requestor");
  w.Bool(true);
  // The token that carried the identity (IHE IUA: its id; BALP agent.policy).
  if (!caller.token_id.empty() || !caller.issuer.empty()) {
    w.Key("policy");
    w.StartArray();
    if (!caller.issuer.empty()) w.String(caller.issuer.c_str());
    if (!caller.token_id.empty()) w.String(("urn:jti:" + caller.token_id).c_str());
    w.EndArray();
  }
  if (!caller.remote_address.empty()) {
    w.Key("network");
    w.StartObject();
    string_member(w, "address", caller.remote_address);
    string_member(w, "type", "2");  // network-type 2: an IP address
    w.EndObject();
  }
  purpose_of_use(w, "purposeOfUse", caller, access);
  w.EndObject();
}

void other_agent(Writer& w, const char* type_system, const char* type_code, const char* type_display,
                 const char* id_system, std::string_view id, std::string_view reference, std::string_view display) {
  w.StartObject();
  w.Key("type");
  codeable(w, type_system, type_code, type_display);
  w.Key("who");
  w.StartObject();
  if (!reference.empty()) string_member(w, "reference", reference);
  if (!id.empty()) {
    if (id_system)
      identifier(w, id_system, id);
    else {
      w.Key("identifier");
      w.StartObject();
      string_member(w, "value", id);
      w.EndObject();
    }
  }
  if (!display.empty()) string_member(w, "display", display);
  w.EndObject();
  w.Key("requestor");
  w.Bool(false);
  w.EndObject();
}

void entity(Writer& w, std::string_view what, const char* type_code, const char* type_display, const char* role_code,
            const char* role_display, std::string_view query_b64 = {}) {
  w.StartObject();
  if (!what.empty()) {
    w.Key("what");
    w.StartObject();
    string_member(w, "reference", what);
    w.EndObject();
  }
  w.Key("type");
  coding(w, "http://terminology.hl7.org/CodeSystem/audit-entity-type", type_code, type_display);
  w.Key("role");
  coding(w, "http://terminology.hl7.org/CodeSystem/object-role", role_code, role_display);
  if (!query_b64.empty()) string_member(w, "query", query_b64);
  w.EndObject();
}

// A UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then 74 bits
// that only need to be unique. Time-ordered ids land at the right edge of the
// audit table's id index, so a commit of many events dirties few index pages.
// The 74 bits are a per-process random key (drawn once) and a counter mixed by
// a bijection on 62 bits: distinct within the process without a call to the
// CSPRNG per request (which cost more than the rest of the id), and neither
// sequential nor shared with another process but by chance.
struct EventIdKey {
  uint64_t a = 0, b = 0;
  EventIdKey() {
    unsigned char r[16];
    if (RAND_bytes(r, sizeof r) != 1) {
      // The CSPRNG failing is not a reason to lose the trail: ids need only be unique.
      const uint64_t t = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                         static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
      for (int i = 0; i < 16; ++i) r[i] = static_cast<unsigned char>((t >> ((i % 8) * 8)) ^ (i * 0x9d));
    }
    for (int i = 0; i < 8; ++i) {
      a = (a << 8) | r[i];
      b = (b << 8) | r[8 + i];
    }
  }
};

uint64_t mix62(uint64_t x) {
  constexpr uint64_t kMask = (uint64_t{1} << 62) - 1;
  // Each step is invertible on 62-bit values: xor with a right shift, and
  // multiplication by an odd number modulo 2^62.
  x &= kMask;
  x ^= x >> 31;
  x = (x * 0x7fb5d329728ea185ULL) & kMask;
  x ^= x >> 27;
  x = (x * 0x81dadef4bc2dd44dULL) & kMask;
  x ^= x >> 33;
  return x;
}

std::string new_event_id() {
  static const EventIdKey key;
  static std::atomic<uint64_t> counter{0};
  const uint64_t n = counter.fetch_add(1, std::memory_order_relaxed);
  const uint64_t low = mix62(n + key.b);  // 62 bits, distinct for each n
  const uint64_t ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  unsigned char b[16];
  for (int i = 0; i < 6; ++i) b[i] = static_cast<unsigned char>(ms >> (8 * (5 - i)));
  b[6] = static_cast<unsigned char>(0x70 | ((key.a >> 8) & 0x0f));
  b[7] = static_cast<unsigned char>(key.a);
  b[8] = static_cast<unsigned char>(0x80 | ((low >> 56) & 0x3f));
  for (int i = 9; i < 16; ++i) b[i] = static_cast<unsigned char>(low >> (8 * (15 - i)));
  return interactions::uuid_text(b);
}

class StorageAuditTrail final : public AuditTrail {
 public:
  StorageAuditTrail(storage::Storage& store, AuditOptions options) : store_(store), options_(std::move(options)) {}

  fhir::Status record(const Caller& caller, const FhirRequest& request, int status,
                      const AccessRecord& access) override {
    std::vector<storage::AuditRecord> records;
    records.push_back(build(caller, request, status, access));  // moved; a braced list would copy
    return store_.append_audit(&records);
  }

  void record_then(const Caller& caller, const FhirRequest& request, int status, const AccessRecord& access,
                   std::function<void(fhir::Status)> done) override {
    std::vector<storage::AuditRecord> records;
    records.push_back(build(caller, request, status, access));
    store_.append_audit_then(std::move(records), std::move(done));
  }

  bool flushes_writes_of(const storage::Storage& store) const override { return &store == &store_; }

 private:
  storage::AuditRecord build(const Caller& caller, const FhirRequest& request, int status,
                             const AccessRecord& access) const {
    int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    storage::AuditRecord record = build_audit_record(caller, request, status, access, options_, now, new_event_id());
    // OpenSSL's SHA-256 (hardware-accelerated where the CPU has it) for the
    // content digest, the storage only chains it; fed in two pieces so that
    // the JSON is not copied. One context per thread, reset for each use.
    thread_local std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    const std::string prefix = storage::audit_content_prefix(record);
    record.content_hash.resize(SHA256_DIGEST_LENGTH);
    unsigned int size = 0;
    static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);  // fetched once, not per digest
    if (!ctx || !sha256 || EVP_DigestInit_ex(ctx.get(), sha256, nullptr) != 1 ||
        EVP_DigestUpdate(ctx.get(), prefix.data(), prefix.size()) != 1 ||
        EVP_DigestUpdate(ctx.get(), record.json.data(), record.json.size()) != 1 ||
        EVP_DigestFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(record.content_hash.data()), &size) != 1 ||
        size != SHA256_DIGEST_LENGTH)
      record.content_hash.clear();  // the storage computes it then
    return record;
  }

  storage::Storage& store_;
  AuditOptions options_;
};

}  // namespace

const char* audit_outcome(int status) {
  if (status < 400) return "0";
  if (status < 500) return "4";
  if (status < 503) return "8";
  return "12";
}

storage::AuditRecord build_audit_record(const Caller& caller, const FhirRequest& req, int status,
                                        const AccessRecord& access, const AuditOptions& options, int64_t recorded_us,
                                        const std::string& id) {
  storage::AuditRecord rec;
  rec.id = id;
  rec.recorded_us = recorded_us;
  rec.patients = request_patients(req, access);
  const std::string recorded = interactions::format_instant(recorded_us);

  // Sized for a typical event (about 3 KiB) so that writing it does not reallocate.
  rapidjson::StringBuffer buf(nullptr, 4096);
  Writer w(buf);
  w.StartObject();
  string_member(w, "resourceType", "AuditEvent");
  string_member(w, "id", id);
  w.Key("meta");
  w.StartObject();
  string_member(w, "versionId", "1");
  string_member(w, "lastUpdated", recorded);
  w.EndObject();
  w.Key("type");
  coding(w, "http://terminology.hl7.org/CodeSystem/audit-event-type", "rest", "RESTful Operation");
  w.Key("subtype");
  w.StartArray();
  coding(w, "http://hl7.org/fhir/restful-interaction", subtype_code(req.interaction));
  w.EndArray();
  string_member(w, "action", action_code(req.interaction));
  string_member(w, "recorded", recorded);
  string_member(w, "outcome", audit_outcome(status));
  std::string desc = "HTTP " + std::to_string(status);
  if (!req.operation.empty()) desc += " $" + req.operation;
  string_member(w, "outcomeDesc", desc);
  purpose_of_use(w, "purposeOfEvent", caller, access);

  w.Key("agent");
  w.StartArray();
  user_agent(w, caller, access);
  if (!caller.client_id.empty())
    other_agent(w, kDicom, "110150", "Application", nullptr, caller.client_id, {}, {});
  if (!caller.organization_id.empty())
    other_agent(w, "http://terminology.hl7.org/CodeSystem/v3-RoleClass", "PROV", "healthcare provider", kFinessSystem,
                caller.organization_id, {}, {});
  // On whose behalf a legal representative acts (R4 agents have no
  // onBehalfOf: one agent per represented patient, with our role code).
  for (const std::string& p : caller.represented_patients)
    if (is_fhir_id(p))
      other_agent(w, kRoleSystem, "represented-patient", "represented patient", nullptr, {}, "Patient/" + p, {});
  other_agent(w, kDicom, "110152", "Destination Role ID", nullptr, {}, {}, options.observer);
  w.EndArray();

  w.Key("source");
  w.StartObject();
  string_member(w, "site", options.site);
  w.Key("observer");
  w.StartObject();
  string_member(w, "display", options.observer);
  w.EndObject();
  w.Key("type");
  w.StartArray();
  coding(w, "http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server");
  w.EndArray();
  w.EndObject();

  const bool query = is_search(req.interaction);
  const bool has_entities = !rec.patients.empty() || !access.resources.empty() || query ||
                            (!req.type.empty() && !req.id.empty());
  if (has_entities) {
    w.Key("entity");
    w.StartArray();
    for (const std::string& p : rec.patients) entity(w, "Patient/" + p, "1", "Person", "1", "Patient");
    size_t listed = 0;
    for (const std::string& r : access.resources) {
      if (listed++ == kMaxEntities) break;
      entity(w, r, "2", "System Object", "4", "Domain Resource");
    }
    // The resource the URL names, when the rules listed nothing (refused, absent, open policy).
    if (access.resources.empty() && !req.type.empty() && !req.id.empty() && req.type != "Patient")
      entity(w, req.type + "/" + req.id, "2", "System Object", "4", "Domain Resource");
    if (query) {
      std::string q = (req.type.empty() ? std::string() : req.type) + "?" + redacted_query(req);
      entity(w, {}, "2", "System Object", "24", "Query", base64(q));
    }
    w.EndArray();
  }
  w.EndObject();
  rec.json.assign(buf.GetString(), buf.GetSize());
  return rec;
}

std::unique_ptr<AuditTrail> make_audit_trail(storage::Storage& store, AuditOptions options) {
  return std::make_unique<StorageAuditTrail>(store, std::move(options));
}

}  // namespace espace::policy
