// The audit table of the SQLite storage.
//
// Why a table of its own rather than AuditEvent resources: an audit record is
// written for every request, reads included, so it must cost little — one
// row (plus one index row per patient), no versions, no search index rows —
// and it must never change, which the resource tables allow.
#include "sqlite_audit.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>
#include <unordered_set>

namespace espace::storage::sqlite {

using fhir::ErrorCategory;

const char* const kAuditSchema = R"sql(
CREATE TABLE audit_log(
  seq       INTEGER PRIMARY KEY,
  id        TEXT NOT NULL UNIQUE,
  recorded  INTEGER NOT NULL,
  patients  TEXT NOT NULL,
  body      BLOB NOT NULL,
  prev_hash BLOB NOT NULL,
  hash      BLOB NOT NULL
);
CREATE TABLE audit_patient(
  patient TEXT NOT NULL,
  seq     INTEGER NOT NULL,
  PRIMARY KEY(patient, seq)
) WITHOUT ROWID;
INSERT INTO storage_meta(key, value) VALUES('audit_head_seq', 0);
)sql";

namespace {

// Patients are stored in one column, separated by this (ids cannot hold it).
constexpr char kPatientSeparator = ',';
constexpr size_t kMaxAuditJson = 1u << 20;
constexpr size_t kMaxRecordsPerCall = 10000;
constexpr size_t kMaxPatientsPerRecord = 1000;

Status invalid(std::string msg) {
  return Status::error(ErrorCategory::Invalid, "invalid", "storage: " + std::move(msg));
}

// FHIR id syntax: [A-Za-z0-9\-\.]{1,64}.
bool is_fhir_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
      return false;
  return true;
}

std::string join_patients(const std::vector<std::string>& patients) {
  std::string out;
  for (const std::string& p : patients) {
    if (!out.empty()) out += kPatientSeparator;
    out += p;
  }
  return out;
}

std::vector<std::string> split_patients(std::string_view text) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  size_t start = 0;
  for (;;) {
    size_t at = text.find(kPatientSeparator, start);
    out.emplace_back(text.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) break;
    start = at + 1;
  }
  return out;
}

// The stored body (encode_audit_body). Byte 0x01 first marks the encoded
// form; then 0x01 X is the byte X itself (for the control bytes, which compact
// JSON holds only if its writer left them unescaped) and 0x02 + k is
// kAuditPhrases[k]; every other byte is itself. The list is part of the
// stored format: it may only ever be extended in a new format with another
// first byte, never changed. Its fragments are those our AuditTrail writes
// (server/policy/src/audit_trail.cpp); other JSON is stored nearly as it is.
constexpr char kEncodedBody = '\x01';
constexpr char kLiteralByte = '\x01';
constexpr unsigned char kFirstPhraseToken = 0x02;
constexpr std::string_view kAuditPhrases[] = {
    R"({"resourceType":"AuditEvent","id":")",
    R"(","meta":{"versionId":"1","lastUpdated":")",
    R"("},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest","display":"RESTful Operation"},"subtype":[{"system":"http://hl7.org/fhir/restful-interaction","code":")",
    R"("}],"action":")",
    R"(","recorded":")",
    R"(","outcome":")",
    R"(","outcomeDesc":"HTTP )",
    R"("purposeOfEvent":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":")",
    R"("purposeOfUse":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":")",
    R"("agent":[{"extension":[{"url":"https://espace.example/fhir/StructureDefinition/audit-rule","valueString":")",
    R"({"url":"https://espace.example/fhir/StructureDefinition/audit-rule","valueString":")",
    R"("type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/extra-security-role-type","code":"humanuser","display":"human user"}]},"role":[{"coding":[{"system":"https://espace.example/fhir/CodeSystem/caller-role","code":")",
    R"("type":{"coding":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110150","display":"Application"}]})",
    R"(,"role":[{"coding":[{"system":"https://espace.example/fhir/CodeSystem/caller-role","code":")",
    R"({"coding":[{"system":"https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante","code":")",
    R"({"coding":[{"system":"https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale","code":")",
    R"("who":{"reference":")",
    R"("identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":")",
    R"(,"requestor":true)",
    R"(,"network":{"address":")",
    R"(","type":"2"})",
    R"({"type":{"coding":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110152","display":"Destination Role ID"}]},"who":{"display":")",
    R"("},"requestor":false}],"source":{"site":")",
    R"(","observer":{"display":")",
    R"("},"type":[{"system":"http://terminology.hl7.org/CodeSystem/security-source-type","code":"4","display":"Application Server"}]})",
    R"(,"entity":[{"what":{"reference":"Patient/)",
    R"("},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"1","display":"Person"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"1","display":"Patient"}})",
    R"("},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"2","display":"System Object"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"4","display":"Domain Resource"}})",
    R"({"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"2","display":"System Object"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"24","display":"Query"},"query":")",
    R"(,{"what":{"reference":")",
};
constexpr size_t kPhraseCount = sizeof kAuditPhrases / sizeof kAuditPhrases[0];
static_assert(kPhraseCount <= 0x20 - kFirstPhraseToken, "phrase tokens are the bytes 0x02 to 0x1f");

// Phrases by first byte, longest first, so the encoder tries few at each
// position; each with its first eight bytes as a number, which rejects most
// candidates without a memcmp (every phrase is longer than eight bytes).
struct PhraseIndex {
  std::array<std::vector<uint8_t>, 256> by_first;
  std::array<uint64_t, kPhraseCount> head8{};
  PhraseIndex() {
    for (size_t k = 0; k < kPhraseCount; ++k) {
      by_first[static_cast<unsigned char>(kAuditPhrases[k][0])].push_back(static_cast<uint8_t>(k));
      std::memcpy(&head8[k], kAuditPhrases[k].data(), sizeof(uint64_t));
    }
    for (auto& list : by_first)
      std::sort(list.begin(), list.end(),
                [](uint8_t a, uint8_t b) { return kAuditPhrases[a].size() > kAuditPhrases[b].size(); });
  }
};
static_assert([] {
  for (std::string_view phrase : kAuditPhrases)
    if (phrase.size() <= sizeof(uint64_t)) return false;
  return true;
}(), "the encoder compares the first eight bytes of a phrase first");

constexpr const char* kRecordColumns = "l.seq, l.id, l.recorded, l.patients, l.body, l.prev_hash, l.hash";

void load_record(const Stmt& st, AuditRecord* out) {
  out->seq = st.int64(0);
  out->id = st.text(1);
  out->recorded_us = st.int64(2);
  out->patients = split_patients(st.text(3));
  out->json = decode_audit_body(st.text(4));
  out->prev_hash = st.text(5);
  out->hash = st.text(6);
}

Status step_done(Connection& c, Stmt& st, std::string_view what) {
  if (st.step() != SQLITE_DONE) return error(c.db(), what);
  return Status::ok();
}

// A read transaction so that several statements see one snapshot.
class Snapshot {
 public:
  explicit Snapshot(Connection& c) : c_(c) { status_ = c_.exec("BEGIN"); }
  ~Snapshot() {
    if (status_) (void)c_.exec("COMMIT");
  }
  const Status& status() const { return status_; }

 private:
  Connection& c_;
  Status status_;
};

}  // namespace

std::string encode_audit_body(std::string_view json) {
  static const PhraseIndex index;
  std::string out;
  out.reserve(json.size() / 3 + 16);
  out += kEncodedBody;
  size_t i = 0;
  while (i < json.size()) {
    const unsigned char c = static_cast<unsigned char>(json[i]);
    if (c < 0x20) {
      out += kLiteralByte;
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    const std::vector<uint8_t>& candidates = index.by_first[c];
    if (candidates.empty()) {
      // A run of bytes that start no phrase and need no escape goes in whole.
      size_t end = i + 1;
      while (end < json.size()) {
        const unsigned char d = static_cast<unsigned char>(json[end]);
        if (d < 0x20 || !index.by_first[d].empty()) break;
        ++end;
      }
      out.append(json.data() + i, end - i);
      i = end;
      continue;
    }
    bool matched = false;
    if (json.size() - i >= sizeof(uint64_t)) {
      uint64_t here;
      std::memcpy(&here, json.data() + i, sizeof here);
      for (uint8_t k : candidates) {
        std::string_view phrase = kAuditPhrases[k];
        if (here == index.head8[k] && json.size() - i >= phrase.size() &&
            std::memcmp(json.data() + i, phrase.data(), phrase.size()) == 0) {
          out += static_cast<char>(kFirstPhraseToken + k);
          i += phrase.size();
          matched = true;
          break;
        }
      }
    }
    if (!matched) {
      out += static_cast<char>(c);
      ++i;
    }
  }
  return out;
}

std::string decode_audit_body(std::string_view stored) {
  if (stored.empty() || stored[0] != kEncodedBody) return std::string(stored);
  std::string out;
  out.reserve(stored.size() * 4);
  for (size_t i = 1; i < stored.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(stored[i]);
    if (c == static_cast<unsigned char>(kLiteralByte)) {
      // A literal at the very end (only in an altered body) is dropped; the
      // chain check then reports the record as altered.
      if (i + 1 < stored.size()) out += stored[++i];
    } else if (c >= kFirstPhraseToken && c < kFirstPhraseToken + kPhraseCount) {
      out += kAuditPhrases[c - kFirstPhraseToken];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

Status check_audit_records(const std::vector<AuditRecord>& records) {
  if (records.empty()) return invalid("no audit records to append");
  if (records.size() > kMaxRecordsPerCall)
    return invalid("at most " + std::to_string(kMaxRecordsPerCall) + " audit records per append");
  std::unordered_set<std::string_view> ids;
  for (const AuditRecord& r : records) {
    if (!is_fhir_id(r.id)) return invalid("an audit record needs an id of 1 to 64 of [A-Za-z0-9-.]");
    // Refused like an id already stored: the call would keep it twice.
    if (records.size() > 1 && !ids.insert(r.id).second)
      return Status::error(ErrorCategory::Conflict, "duplicate", "storage: audit record " + r.id + " already exists");
    if (r.recorded_us <= 0) return invalid("audit record " + r.id + " has no recorded time");
    if (r.json.empty() || r.json.size() > kMaxAuditJson)
      return invalid("audit record " + r.id + " must have a body of at most 1 MiB");
    if (r.patients.size() > kMaxPatientsPerRecord) return invalid("audit record " + r.id + " names too many patients");
    for (size_t i = 0; i < r.patients.size(); ++i) {
      if (!is_fhir_id(r.patients[i])) return invalid("audit record " + r.id + " names a patient whose id is malformed");
      for (size_t j = 0; j < i; ++j)
        if (r.patients[j] == r.patients[i]) return invalid("audit record " + r.id + " names a patient twice");
    }
  }
  return Status::ok();
}

Status load_audit_chain_head(Connection& c, AuditChainHead* head) {
  sqlite3_stmt* raw = nullptr;
  if (Status s = c.prepare("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", &raw); !s) return s;
  Stmt st(raw);
  int rc = st.step();
  if (rc == SQLITE_ROW) {
    head->seq = st.int64(0);
    head->hash = st.text(1);
  } else if (rc == SQLITE_DONE) {
    head->seq = 0;
    head->hash.assign(kAuditHashSize, '\0');
  } else {
    return error(c.db(), "reading the newest audit record");
  }
  head->loaded = true;
  return Status::ok();
}

Status insert_audit_records(Connection& c, AuditChainHead* head, const std::vector<const JournalEntry*>& entries,
                            bool* batch_broken) {
  *batch_broken = false;
  if (!head->loaded)
    if (Status s = load_audit_chain_head(c, head); !s) {
      *batch_broken = true;
      return s;
    }
  sqlite3_stmt* log_raw = nullptr;
  sqlite3_stmt* patient_raw = nullptr;
  Status prepared = c.prepare(
      "INSERT INTO audit_log(seq, id, recorded, patients, body, prev_hash, hash) "
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
      &log_raw);
  if (prepared) prepared = c.prepare("INSERT OR IGNORE INTO audit_patient(patient, seq) VALUES(?1, ?2)", &patient_raw);
  if (!prepared) {
    *batch_broken = true;
    return prepared;
  }
  // The chain advances in a copy: the head moves only once every record is in.
  int64_t seq = head->seq;
  std::string prev = head->hash;
  for (size_t i = 0; i < entries.size(); ++i) {
    const AuditRecord& r = entries[i]->record;
    if (r.seq != seq + 1 || r.prev_hash != prev || r.hash.size() != kAuditHashSize) {
      *batch_broken = i > 0;
      return Status::error(ErrorCategory::Internal, "exception",
                           "storage: audit record " + std::to_string(r.seq) + " does not follow the table's newest, " +
                               std::to_string(seq));
    }
    seq = r.seq;
    prev = r.hash;
    {
      Stmt st(log_raw);
      std::string patients = join_patients(r.patients);
      st.bind(1, r.seq);
      st.bind(2, r.id);
      st.bind(3, r.recorded_us);
      st.bind(4, patients);
      st.bind_blob(5, entries[i]->body);
      st.bind_blob(6, r.prev_hash);
      st.bind_blob(7, r.hash);
      int rc = st.step();
      // A failed INSERT undoes itself (statement rollback); the batch only
      // breaks when a record of this call was already written.
      if ((rc & 0xff) == SQLITE_CONSTRAINT) {  // extended codes may be on
        *batch_broken = i > 0;
        return Status::error(ErrorCategory::Conflict, "duplicate", "storage: audit record " + r.id + " already exists");
      }
      if (rc != SQLITE_DONE) {
        *batch_broken = true;
        return error(c.db(), "appending an audit record");
      }
    }
  }
  // The patient index in its own order: a batch's rows then go into each
  // leaf page together instead of one random page per record.
  std::vector<std::pair<std::string_view, int64_t>> index_rows;
  for (const JournalEntry* e : entries)
    for (const std::string& p : e->record.patients) index_rows.emplace_back(p, e->record.seq);
  std::sort(index_rows.begin(), index_rows.end());
  for (const auto& [patient, row_seq] : index_rows) {
    Stmt st(patient_raw);
    st.bind(1, patient);
    st.bind(2, row_seq);
    if (Status s = step_done(c, st, "indexing an audit record"); !s) {
      *batch_broken = true;
      return s;
    }
  }
  head->seq = seq;
  head->hash = std::move(prev);
  return Status::ok();
}

Status store_audit_head(Connection& c, int64_t seq) {
  sqlite3_stmt* raw = nullptr;
  if (Status s = c.prepare("UPDATE storage_meta SET value = ?1 WHERE key = 'audit_head_seq'", &raw); !s) return s;
  Stmt st(raw);
  st.bind(1, seq);
  return step_done(c, st, "moving the audit head");
}

Status read_audit_record(Connection& c, const std::string& id, AuditRecord* out) {
  sqlite3_stmt* raw = nullptr;
  if (Status s = c.prepare(std::string("SELECT ") + kRecordColumns + " FROM audit_log l WHERE l.id = ?1", &raw); !s)
    return s;
  Stmt st(raw);
  st.bind(1, id);
  int rc = st.step();
  if (rc == SQLITE_ROW) {
    load_record(st, out);
    return Status::ok();
  }
  if (rc == SQLITE_DONE)
    return Status::error(ErrorCategory::NotFound, "not-found", "storage: AuditEvent/" + id + " does not exist");
  return error(c.db(), "reading an audit record");
}

Status search_audit_records(Connection& c, const AuditQuery& q, AuditPage* out) {
  out->records.clear();
  out->more = false;
  out->last_seq = 0;
  if (q.count < 1 || q.count > kMaxAuditCount)
    return invalid("audit page size must be between 1 and " + std::to_string(kMaxAuditCount));
  // One statement text per combination of bounds: a small, fixed set.
  std::string sql = std::string("SELECT ") + kRecordColumns;
  std::string order;
  if (!q.patient.empty()) {
    sql += " FROM audit_patient p JOIN audit_log l ON l.seq = p.seq WHERE p.patient = ?1";
    if (q.before_seq != 0) sql += " AND p.seq < ?2";
    order = " ORDER BY p.seq DESC";
  } else {
    sql += " FROM audit_log l WHERE 1";
    if (q.before_seq != 0) sql += " AND l.seq < ?2";
    order = " ORDER BY l.seq DESC";
  }
  if (q.since_us != 0) sql += " AND l.recorded >= ?3";
  if (q.before_us != 0) sql += " AND l.recorded < ?4";
  sql += order + " LIMIT ?5";
  sqlite3_stmt* raw = nullptr;
  if (Status s = c.prepare(sql, &raw); !s) return s;
  Stmt st(raw);
  if (!q.patient.empty()) st.bind(1, q.patient);
  if (q.before_seq != 0) st.bind(2, q.before_seq);
  if (q.since_us != 0) st.bind(3, q.since_us);
  if (q.before_us != 0) st.bind(4, q.before_us);
  st.bind(5, int64_t{q.count} + 1);  // one more tells whether a next page exists
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) {
    if (out->records.size() == static_cast<size_t>(q.count)) {
      out->more = true;
      break;
    }
    AuditRecord r;
    load_record(st, &r);
    out->last_seq = r.seq;
    out->records.push_back(std::move(r));
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return error(c.db(), "searching the audit trail");
  return Status::ok();
}

Status scan_audit_records(Connection& c, int64_t after_seq, int count, std::vector<AuditRecord>* out,
                          std::vector<int64_t>* index_mismatches) {
  out->clear();
  index_mismatches->clear();
  if (count < 1) return invalid("scan_audit needs a positive count");
  Snapshot snapshot(c);
  if (!snapshot.status()) return snapshot.status();
  sqlite3_stmt* raw = nullptr;
  {
    if (Status s = c.prepare(std::string("SELECT ") + kRecordColumns +
                                 " FROM audit_log l WHERE l.seq > ?1 ORDER BY l.seq LIMIT ?2",
                             &raw);
        !s)
      return s;
    Stmt st(raw);
    st.bind(1, after_seq);
    st.bind(2, int64_t{count});
    int rc;
    while ((rc = st.step()) == SQLITE_ROW) {
      AuditRecord r;
      load_record(st, &r);
      out->push_back(std::move(r));
    }
    if (rc != SQLITE_DONE) return error(c.db(), "reading the audit trail");
  }
  if (Status s = c.prepare("SELECT 1 FROM audit_patient WHERE patient = ?1 AND seq = ?2", &raw); !s) return s;
  for (const AuditRecord& r : *out) {
    for (const std::string& p : r.patients) {
      Stmt st(raw);
      st.bind(1, p);
      st.bind(2, r.seq);
      int rc = st.step();
      if (rc == SQLITE_DONE) {
        index_mismatches->push_back(r.seq);
        break;
      }
      if (rc != SQLITE_ROW) return error(c.db(), "reading the audit patient index");
    }
  }
  return Status::ok();
}

Status read_audit_head(Connection& c, AuditHead* out) {
  *out = AuditHead{};
  Snapshot snapshot(c);
  if (!snapshot.status()) return snapshot.status();
  sqlite3_stmt* raw = nullptr;
  {
    if (Status s = c.prepare("SELECT value FROM storage_meta WHERE key = 'audit_head_seq'", &raw); !s) return s;
    Stmt st(raw);
    int rc = st.step();
    if (rc == SQLITE_ROW)
      out->seq = st.int64(0);
    else if (rc == SQLITE_DONE)
      return Status::error(ErrorCategory::Internal, "exception", "storage: the audit head is missing");
    else
      return error(c.db(), "reading the audit head");
  }
  if (Status s = c.prepare("SELECT count(*) FROM audit_patient WHERE seq <= ?1", &raw); !s) return s;
  Stmt st(raw);
  st.bind(1, out->seq);
  if (st.step() != SQLITE_ROW) return error(c.db(), "counting the audit patient index");
  out->patient_index_rows = st.int64(0);
  return Status::ok();
}

}  // namespace espace::storage::sqlite
