// The audit table of the SQLite storage.
//
// Why a table of its own rather than AuditEvent resources: an audit record is
// written for every request, reads included, so it must cost little — one
// row (plus one index row per patient), no versions, no search index rows —
// and it must never change, which the resource tables allow.
#include "sqlite_audit.h"

#include <string_view>

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

constexpr const char* kRecordColumns = "l.seq, l.id, l.recorded, l.patients, l.body, l.prev_hash, l.hash";

void load_record(const Stmt& st, AuditRecord* out) {
  out->seq = st.int64(0);
  out->id = st.text(1);
  out->recorded_us = st.int64(2);
  out->patients = split_patients(st.text(3));
  out->json = st.text(4);
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

Status check_audit_records(const std::vector<AuditRecord>& records) {
  if (records.empty()) return invalid("no audit records to append");
  if (records.size() > kMaxRecordsPerCall)
    return invalid("at most " + std::to_string(kMaxRecordsPerCall) + " audit records per append");
  for (const AuditRecord& r : records) {
    if (!is_fhir_id(r.id)) return invalid("an audit record needs an id of 1 to 64 of [A-Za-z0-9-.]");
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

Status insert_audit_records(Connection& c, AuditChainHead* head, std::vector<AuditRecord>* records,
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
  for (AuditRecord& r : *records) {
    r.seq = ++seq;
    r.prev_hash = prev;
    r.hash = audit_chain_hash(prev, r);
    prev = r.hash;
    {
      Stmt st(log_raw);
      std::string patients = join_patients(r.patients);
      st.bind(1, r.seq);
      st.bind(2, r.id);
      st.bind(3, r.recorded_us);
      st.bind(4, patients);
      st.bind_blob(5, r.json);
      st.bind_blob(6, r.prev_hash);
      st.bind_blob(7, r.hash);
      int rc = st.step();
      // A failed INSERT undoes itself (statement rollback); the batch only
      // breaks when a record of this call was already written.
      if ((rc & 0xff) == SQLITE_CONSTRAINT) {  // extended codes may be on
        *batch_broken = &r != &records->front();
        return Status::error(ErrorCategory::Conflict, "duplicate", "storage: audit record " + r.id + " already exists");
      }
      if (rc != SQLITE_DONE) {
        *batch_broken = true;
        return error(c.db(), "appending an audit record");
      }
    }
    for (const std::string& p : r.patients) {
      Stmt st(patient_raw);
      st.bind(1, p);
      st.bind(2, r.seq);
      if (Status s = step_done(c, st, "indexing an audit record"); !s) {
        *batch_broken = true;
        return s;
      }
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
