// The audit table of the SQLite storage (storage.h, AuditRecord); private to
// the storage library. sqlite_storage.cpp owns the connections and threads
// and calls these.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "espace/storage/storage.h"
#include "sqlite_connection.h"

namespace espace::storage::sqlite {

// Schema version 4: the append-only audit log, its patient index and the
// committed head (storage_meta 'audit_head_seq').
extern const char* const kAuditSchema;

// Checks records before they reach the journal (ids, ids repeated within the
// call: Conflict, patients, sizes).
Status check_audit_records(const std::vector<AuditRecord>& records);
// The newest record of the chain as the writer thread sees it, kept in
// memory between batches so appending needs no lookup; reset (loaded=false)
// whenever a transaction that may have moved it rolls back.
struct AuditChainHead {
  bool loaded = false;
  int64_t seq = 0;
  std::string hash;  // raw digest of record seq (zeros before the first)
};
Status load_audit_chain_head(Connection& c, AuditChainHead* head);
// A record as the audit journal and the audit table hold it: seq, id,
// recorded_us, patients, prev_hash and hash set; `body` is the stored form
// of its JSON (encode_audit_body; record.json is left empty).
struct JournalEntry {
  AuditRecord record;
  std::string body;
  int64_t journaled_us = 0;  // when its flush returned: its wait for the table counts from here
};

// Inside a write transaction (the writer thread): inserts records already
// chained after `head` (seq, prev_hash and hash set, by the audit journal)
// and advances it; a record that does not follow is refused. No savepoint: a
// failure in the first record is undone by SQLite's statement rollback; any
// other failure, or one after a record of the call was written, sets
// *batch_broken — the whole transaction must then roll back.
Status insert_audit_records(Connection& c, AuditChainHead* head, const std::vector<const JournalEntry*>& entries,
                            bool* batch_broken);
// The stored form of an AuditEvent's JSON (the body column): the fragments
// every event repeats (member names, code systems, fixed codings) replaced by
// one byte each, so that a record takes a third to a fifth of the pages. The
// chain hashes the JSON itself, never this form. Bodies stored before this
// (raw JSON, first byte '{') are read as they are.
std::string encode_audit_body(std::string_view json);
std::string decode_audit_body(std::string_view stored);
// Records the committed head (storage_meta 'audit_head_seq'); once per
// transaction that appended records.
Status store_audit_head(Connection& c, int64_t seq);
// Reads on a reader connection.
Status read_audit_record(Connection& c, const std::string& id, AuditRecord* out);
Status search_audit_records(Connection& c, const AuditQuery& q, AuditPage* out);
Status scan_audit_records(Connection& c, int64_t after_seq, int count, std::vector<AuditRecord>* out,
                          std::vector<int64_t>* index_mismatches);
Status read_audit_head(Connection& c, AuditHead* out);

}  // namespace espace::storage::sqlite
