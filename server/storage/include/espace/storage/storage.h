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

// ---- search (hl7.org/fhir/R4/search.html) ----
//
// A storage-neutral search plan built by the interactions layer from the
// SearchParameter definitions; a storage implementation translates it into
// its own query language (SQLite: one SQL statement, sqlite_search.cpp).
// Index rows are matched per the IndexEntry layout documented in
// server/interactions/src/search/registry.h.

struct SearchQuery;

// How an IndexTest compares the value column.
enum class TextOp { Any, Equal, StartsWith, Contains, EndsWith, IsPrefixOf };

// A comparison of a row's low or high column with a number.
struct Bound {
  enum class Column { Low, High } column = Column::Low;
  enum class Op { Lt, Le, Gt, Ge, Eq } op = Op::Eq;
  double number = 0;
};

// Holds when one index row of the resource has this param and kind and
// passes every test given.
struct IndexTest {
  std::string param;
  std::string kind;                       // empty: any kind
  std::optional<std::string> system;      // equality on the system column
  TextOp value_op = TextOp::Any;
  std::string value;
  std::vector<Bound> bounds;              // all must hold (AND)
  // Chaining: the row's (system, value) must name a current resource of type
  // `system` whose id matches `target` (target->type names the type).
  std::shared_ptr<const SearchQuery> target;
};

struct Condition {
  enum class Kind {
    AnyOf,        // at least one test of any_of holds (OR over values)
    Id,           // the logical id is one of ids
    LastUpdated,  // any_of[i].bounds hold on the version's last_updated (Low and High both mean that column)
    Missing,      // no index row for missing_param (negate: at least one)
    Has,          // reverse chaining: a resource of has_type whose has_param references
                  // this one matches has_query
  } kind = Kind::AnyOf;
  std::vector<IndexTest> any_of;
  std::vector<std::string> ids;
  std::string missing_param;
  std::string has_type, has_param;
  std::shared_ptr<const SearchQuery> has_query;
  bool negate = false;  // the whole condition is negated (:not, ne, :missing=false)
};

struct SortKey {
  enum class Source { Index, Id, LastUpdated } source = Source::Index;
  std::string param;
  bool numeric = false;   // sort on the low/high columns instead of value
  bool descending = false;
};

// _include / _revinclude: rows of `param` (a reference parameter) of
// resources of `source_type` ("*" param: every reference parameter).
struct IncludeSpec {
  std::string source_type;
  std::string param;        // "*" for all
  std::string target_type;  // empty: any
  bool reverse = false;     // _revinclude
  bool iterate = false;
};

struct SearchQuery {
  std::string type;               // empty: every type (system search)
  std::vector<std::string> types; // system search restricted by _type (empty: all)
  std::vector<Condition> all_of;  // AND
  std::vector<SortKey> sort;      // empty: creation order
  int count = 50;                 // page size (0: no entries, totals only)
  int64_t offset = 0;             // rows to skip (paging with explicit sorts)
  int64_t after_key = 0;          // keyset cursor for creation order: resources created after this key
  int64_t before_key = 0;         // ... or the page just before this key (previous links)
  bool want_total = false;
  // Planner hint: with creation order and no condition matching fewer index
  // rows than this, walk resources in order instead of collecting matches.
  int64_t walk_threshold = 5000;
  std::vector<IncludeSpec> includes;
  int max_included = 1000;        // bound on included resources per page
};

struct SearchMatch {
  ResourceVersion resource;
  int64_t key = 0;   // creation-order key (cursor for the next page)
};

struct SearchPage {
  std::vector<SearchMatch> matches;     // in result order
  std::vector<ResourceVersion> included;
  bool more = false;                    // another page follows (with before_key: precedes)
  int64_t total = -1;                   // with want_total
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

  // Runs a search plan against the current versions, all in one snapshot.
  virtual Status search(const SearchQuery& q, SearchPage* out) = 0;
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
