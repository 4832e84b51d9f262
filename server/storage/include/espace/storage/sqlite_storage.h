// The SQLite implementation of the storage interface (storage.h).
//
// open_sqlite() returns a SqliteStorage; code that wants the group-commit
// counters (benchmarks, tests, a metrics endpoint) can dynamic_cast to it.
//
// Layout on disk (schema version kSqliteSchemaVersion, PRAGMA user_version):
//   resource_version  one immutable row per version, seq = commit order
//   resource_current  (type, id) -> res_key, seq of the current version
//   search_index      IndexEntry rows of the current version of each resource
//                     (none for a delete marker: a deleted resource matches nothing);
//                     indexed by value and (version 2) by range; version 5 writes that partial
//                     index's WHERE as ORs (cheaper inserts than IN); version 6 ends the
//                     value index with res_key (pages of many matches read the index alone),
//                     version 7 with kind (a test on kind needs no table row); version 8
//                     indexes each resource's rows by (res_key, param, kind, value, system);
//                     version 9 ends the range index with res_key
// resource_current is indexed by (type, res_key) since version 3.
//   audit_log, audit_patient  (version 4) the append-only, hash-chained audit
//                     trail and its index by patient (sqlite_audit.cpp); records
//                     are durable in the audit journal "<path>-audit" first and
//                     reach these tables in batches (sqlite_audit_journal.h)
// Older databases are migrated when opened.
//   storage_meta      small key/value facts (last commit timestamp)
//
// Threads: one writer (group commit: every queued body in one transaction;
// if one fails, the batch runs again with a savepoint per body), whose WAL
// frames go out in a few writes per commit (sqlite_wal_gather.h); with
// overlap_fsync a few WAL sync threads that acknowledge writes once flushed;
// one checkpointer; and the audit journal's flush thread.
//
// History semantics: versions are ordered by seq (commit order), newest first.
// HistoryPage::total counts the versions matching type/id/since_us/before_us;
// before_seq is the page cursor and count the page size, neither affects total.
#pragma once

#include <cstdint>

#include "espace/storage/storage.h"

namespace espace::storage {

inline constexpr int kSqliteSchemaVersion = 9;

// Largest HistoryQuery::count accepted; bigger pages are an Invalid request.
inline constexpr int kMaxHistoryCount = 10000;

// Counters of the writer thread since the storage was opened.
struct WriteStats {
  int64_t batches = 0;          // transactions committed (or attempted)
  int64_t bodies = 0;           // write bodies run
  int64_t failed_bodies = 0;    // bodies that returned an error (rolled back to their savepoint)
  int64_t rerun_batches = 0;    // batches run again, each body in a savepoint, after one body failed
  int64_t failed_commits = 0;   // batches whose COMMIT failed
  int64_t largest_batch = 0;    // most bodies in one commit
  int64_t fsyncs = 0;           // WAL flushes by the sync threads (overlap_fsync only)
  int64_t checkpoints = 0;      // checkpoints run by the checkpoint thread
  int64_t writer_cpu_us = 0;    // CPU time the writer thread spent running batches
};

class SqliteStorage : public Storage {
 public:
  virtual WriteStats write_stats() const = 0;
  // Write bodies queued and not yet picked up by the writer thread.
  virtual int pending_writes() const = 0;
  // False when another process (a running server) holds the audit journal:
  // this storage then reads the audit table and cannot append to the trail.
  virtual bool owns_audit_journal() const = 0;
};

}  // namespace espace::storage
