// The storage interface: versioned resources, history, and durable writes.
//
// The interactions layer talks only to this interface; SQLite is the first
// implementation (sqlite_storage.h), PostgreSQL can follow. All methods are
// blocking and thread-safe: call them from worker threads, never from the
// Asio I/O threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "espace/fhir/status.h"

namespace espace::storage {

using fhir::Status;

// One version of one resource, as stored.
struct ResourceVersion {
  std::string type;            // "Patient"
  std::string id;              // logical id
  int64_t version = 0;         // 1, 2, ... (meta.versionId)
  int64_t last_updated_us = 0; // microseconds since the Unix epoch (meta.lastUpdated)
  bool deleted = false;        // a delete marker: no body
  std::string method;          // "POST", "PUT", "PATCH" or "DELETE": how this version was made (history)
  std::string json;            // the resource as FHIR JSON with meta.versionId/lastUpdated set; empty when deleted
};

// Search index rows computed by the caller when it writes a version; the
// storage keeps them for the current version only. The search issue defines
// what goes in; the storage only persists and replaces them atomically.
struct IndexEntry {
  std::string param;           // SearchParameter code, e.g. "identifier"
  std::string kind;            // "token", "string", "reference", "date", "number", "quantity", "uri"
  std::string system;          // token system / quantity system / reference type
  std::string value;           // token code, normalized string, reference id, uri
  double low = 0, high = 0;    // numeric/date ranges (dates: microseconds since epoch)
};

// Operations available inside a write transaction. Valid only during the
// callback passed to Storage::write; not thread-safe.
class WriteTxn {
 public:
  virtual ~WriteTxn() = default;
  // The current version of a resource (including a delete marker), if any.
  virtual Status current(const std::string& type, const std::string& id,
                         std::optional<ResourceVersion>* out) = 0;
  // Appends a new version and makes it current, replacing its index rows.
  // Preconditions: v.version == previous version + 1 (or 1 for a new id);
  // v.last_updated_us set by the caller.
  virtual Status put(const ResourceVersion& v, const std::vector<IndexEntry>& index) = 0;
  // The time of this commit batch (microseconds since epoch), strictly
  // greater than any earlier commit's: use it for meta.lastUpdated.
  virtual int64_t now_us() = 0;
};

struct HistoryQuery {
  std::string type;          // empty: whole system
  std::string id;            // empty: whole type (requires type)
  int64_t since_us = 0;      // 0: no lower bound (_since is inclusive)
  int64_t before_us = 0;     // 0: no upper bound (exclusive; paging anchor)
  int64_t before_seq = 0;    // 0: no upper bound; with paging, continue below this sequence
  int count = 50;            // at most this many, newest first
};

struct HistoryPage {
  std::vector<ResourceVersion> versions;  // newest first
  int64_t total = 0;                      // versions matching, ignoring count/paging
  int64_t last_seq = 0;                   // sequence of the last returned version (paging cursor)
};

class Storage {
 public:
  virtual ~Storage() = default;

  // The current version; NotFound when the id was never written, and a
  // version with deleted = true when the last version is a delete.
  virtual Status read(const std::string& type, const std::string& id, ResourceVersion* out) = 0;
  virtual Status vread(const std::string& type, const std::string& id, int64_t version,
                       ResourceVersion* out) = 0;
  virtual Status history(const HistoryQuery& q, HistoryPage* out) = 0;

  // Runs `body` inside one atomic transaction and returns once it is durable
  // (fsync'ed) or rolled back. If `body` returns an error nothing it wrote is
  // kept. Concurrent callers are grouped into one commit (group commit); each
  // caller's body runs in its own savepoint, so one failure does not affect
  // the others. `body` runs on the storage's writer thread: it must only do
  // storage work, not parsing or I/O.
  virtual Status write(const std::function<Status(WriteTxn&)>& body) = 0;

  // Ids of current, non-deleted resources of `type` whose index has a row
  // matching (param, system, value) exactly; used by conditional interactions
  // until the search engine lands. system empty matches any system.
  virtual Status find_by_token(const std::string& type, const std::string& param,
                               const std::string& system, const std::string& value,
                               std::vector<std::string>* ids) = 0;
};

struct SqliteOptions {
  std::string path;                  // database file; created if missing
  int reader_connections = 8;        // pooled read-only connections
  int max_batch = 256;               // at most this many write bodies per commit
  bool synchronous_full = true;      // fsync on every commit (durability across power loss)
  // With synchronous_full: fsync the WAL on separate sync threads, so the
  // writer starts the next batch while earlier commits are being flushed.
  // A write is still acknowledged only after an fsync that began after its
  // COMMIT; other readers may see it up to one fsync earlier. False: SQLite's
  // own synchronous=FULL, one fsync inside each COMMIT.
  bool overlap_fsync = true;
};

Status open_sqlite(const SqliteOptions& opts, std::unique_ptr<Storage>* out);

}  // namespace espace::storage
