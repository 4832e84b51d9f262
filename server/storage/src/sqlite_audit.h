// The audit table of the SQLite storage (storage.h, AuditRecord); private to
// the storage library. sqlite_storage.cpp owns the connections and threads
// and calls these.
#pragma once

#include <vector>

#include "espace/storage/storage.h"
#include "sqlite_connection.h"

namespace espace::storage::sqlite {

// Schema version 4: the append-only audit log, its patient index and the
// committed head (storage_meta 'audit_head_seq').
extern const char* const kAuditSchema;

// Checks records before they reach the writer thread (ids, patients, sizes).
Status check_audit_records(const std::vector<AuditRecord>& records);
// Inside a write transaction (the writer thread): chains and inserts the
// records after the newest stored one and moves the head.
Status insert_audit_records(Connection& c, std::vector<AuditRecord>* records);
// Reads on a reader connection.
Status read_audit_record(Connection& c, const std::string& id, AuditRecord* out);
Status search_audit_records(Connection& c, const AuditQuery& q, AuditPage* out);
Status scan_audit_records(Connection& c, int64_t after_seq, int count, std::vector<AuditRecord>* out,
                          std::vector<int64_t>* index_mismatches);
Status read_audit_head(Connection& c, AuditHead* out);

}  // namespace espace::storage::sqlite
