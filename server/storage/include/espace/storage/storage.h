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
#include <string_view>
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
  // Removes every version of a resource and its index rows for good: no
  // history, no delete marker, the id unknown again. For data the patient no
  // longer consents to keep (the retention purge of connected-app data);
  // never offered through the FHIR API. NotFound when nothing is stored under
  // type/id. Implementations that cannot erase refuse (the default).
  virtual Status expunge(const std::string& type, const std::string& id) {
    return Status::error(fhir::ErrorCategory::NotAllowed, "not-supported",
                         "storage: " + type + "/" + id + " cannot be erased through this transaction");
  }
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

// ---- audit trail: append-only, hash-chained (one AuditEvent per request) ----
//
// Records are numbered seq = 1, 2, ... in commit order and chained:
//   content(n) = SHA-256( be64(recorded_us) || be64(len id) id
//                         || be64(#patients) (be64(len p) p)... || be64(len json) json )
//   hash(n)    = SHA-256( hash(n-1) || be64(seq) || content(n) )
// with hash(0) = 32 zero bytes (audit_content_hash, audit_chain_hash below).
// The content digest is computed before the record reaches the storage's
// single writer thread, which only hashes 72 bytes per record. Changing, removing
// or reordering a stored record breaks the chain from that record on; see
// verify_audit_chain. The JSON is hashed byte for byte as stored, so the
// writer must give it in its canonical form (our AuditTrail writes compact
// JSON with a fixed member order).

inline constexpr size_t kAuditHashSize = 32;
// Largest AuditQuery::count accepted.
inline constexpr int kMaxAuditCount = 1000;

struct AuditRecord {
  int64_t seq = 0;                    // set by append_audit
  std::string id;                     // AuditEvent.id: unique, [A-Za-z0-9-.]{1,64}
  int64_t recorded_us = 0;            // AuditEvent.recorded, microseconds since the epoch
  std::vector<std::string> patients;  // ids of the Patients the event is about (searchable)
  std::string json;                   // the AuditEvent
  std::string prev_hash, hash;        // raw 32-byte digests, set by append_audit
  // audit_content_hash(*this), when the writer has a faster SHA-256 at hand;
  // append_audit computes it when empty. Not stored: verification recomputes it.
  std::string content_hash;
};

struct AuditQuery {
  std::string patient;     // empty: records about anyone (and no one)
  int64_t since_us = 0;    // recorded >= since_us (0: no bound)
  int64_t before_us = 0;   // recorded < before_us (0: no bound)
  int64_t before_seq = 0;  // paging cursor: only records with seq < before_seq (0: from the newest)
  int count = 50;          // page size, 1..kMaxAuditCount
};

struct AuditPage {
  std::vector<AuditRecord> records;  // newest first (seq descending)
  bool more = false;                 // older matching records follow
  int64_t last_seq = 0;              // seq of the last record returned: the next page's before_seq
};

struct AuditHead {
  int64_t seq = 0;                 // seq of the newest record committed (0: none)
  int64_t patient_index_rows = 0;  // rows of the patient index for records up to seq
};

// The digest of a record's content (see above): what its text says.
std::string audit_content_hash(const AuditRecord& record);
// audit_content_hash digests audit_content_prefix(record) followed by
// record.json (for another SHA-256 implementation to do the same).
std::string audit_content_prefix(const AuditRecord& record);
// The chain hash of one record given its predecessor's (see above); uses
// record.content_hash when set.
std::string audit_chain_hash(const std::string& prev_hash, const AuditRecord& record);
// The SHA-256 digest (32 raw bytes) the chain is built with.
std::string audit_sha256(std::string_view data);

// ---- notification outbox (transactional outbox) ----
//
// Events are rows written inside the transaction of the write that raised
// them: an OutboxRule given to the storage is asked at every put which events
// that version raises, so an event commits, rolls back and survives a crash
// exactly like its write. A delivery worker reads the due events and settles
// each one (delivered, retried later, failed). One worker per database.

enum class OutboxState { Pending, Delivered, Failed };
// Largest page of due_outbox/scan_outbox.
inline constexpr int kMaxOutboxPage = 1000;

struct OutboxEvent {
  int64_t id = 0;                // set by the storage, increasing in commit order
  std::string topic;             // e.g. "document-added"
  std::string patient;           // id of the Patient the event is about ("" when none)
  std::string resource;          // "DocumentReference/abc": a reference, never content
  int64_t created_us = 0;        // commit time of the write that raised it
  OutboxState state = OutboxState::Pending;
  int attempts = 0;              // failed delivery attempts so far
  int64_t next_attempt_us = 0;   // due from then on (created_us at first)
  std::string last_error;        // why the last attempt failed
  std::string delivered_to;      // space-separated targets already served (so retries skip them)
};

// Called inside the write transaction after `written` was stored (created:
// it is the resource's first version); appends the events it raises (topic,
// patient, resource; the storage sets the rest). Runs on the writer thread:
// it must be quick and must not touch the storage.
using OutboxRule = std::function<void(const ResourceVersion& written, bool created,
                                      const std::vector<IndexEntry>& index, std::vector<OutboxEvent>* events)>;

// While one lives on a thread, Storage::write() calls made on that thread
// return once their transaction has committed, before the commit is flushed
// to disk. Only for a caller that then makes a durable write to the same
// storage on the same thread (append_audit or append_audit_then, which then
// also wait for the flush of those commits) and tells no one about the first
// write before that one is acknowledged: a request that writes and then
// records its audit event waits once, for both flushes running side by side,
// and nothing is acknowledged before it is durable. If the later write fails,
// the caller must answer as if the first one may be lost.
class DeferFlushToNextWrite {
 public:
  DeferFlushToNextWrite();
  ~DeferFlushToNextWrite();
  DeferFlushToNextWrite(const DeferFlushToNextWrite&) = delete;
  DeferFlushToNextWrite& operator=(const DeferFlushToNextWrite&) = delete;
  // Whether write() on the calling thread may return at commit.
  static bool active_on_this_thread();

 private:
  bool previous_;
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
  // (fsync'ed; only committed under DeferFlushToNextWrite) or rolled back. If `body` returns an error nothing it wrote is
  // kept. Concurrent callers are grouped into one commit (group commit); one
  // body's failure does not affect the others. `body` runs on the storage's
  // writer thread: it must only do storage work, not parsing or I/O. It may
  // run more than once (after another body of its commit failed, the commit
  // starts over), so it must set its outputs afresh on every run.
  virtual Status write(const std::function<Status(WriteTxn&)>& body) = 0;

  // Ids of current, non-deleted resources of `type` whose index has a row
  // matching (param, system, value) exactly; used by conditional interactions
  // until the search engine lands. system empty matches any system.
  virtual Status find_by_token(const std::string& type, const std::string& param,
                               const std::string& system, const std::string& value,
                               std::vector<std::string>* ids) = 0;

  // Runs a search plan against the current versions, all in one snapshot.
  virtual Status search(const SearchQuery& q, SearchPage* out) = 0;

  // For caches of facts derived from stored resources: a number that changes
  // after every committed write that may have put a version of `type`
  // (several types may share a number, so it can also change for others).
  // It changes after the write is visible to readers and before the write is
  // acknowledged, so a value read before loading facts, and equal later,
  // proves that no such write was acknowledged in between. Numbers of two
  // storage instances never coincide. False (the default, and for decorators
  // that do not forward it): no such number, do not cache.
  virtual bool write_generation(std::string_view type, uint64_t* out) const;

  // ---- audit trail (see AuditRecord). The defaults answer NotAllowed, for
  // storages (and decorators) without an audit table. ----

  // Appends the records in order, assigning seq, prev_hash and hash to each,
  // and returns once they are durable (the contract of write(): group
  // committed with the other writes of the moment). recorded_us, id, patients
  // and json are kept exactly as given; an id already stored is a Conflict
  // and nothing of the call is kept. AuditEvents are never stored as
  // resources: put() of type AuditEvent is refused (NotAllowed).
  virtual Status append_audit(std::vector<AuditRecord>* records);
  // append_audit without waiting: `done` gets its result once the records
  // are durable or have failed, on a storage thread (or on the calling
  // thread, before this returns, when the call fails at once). `done` must
  // be quick and must not call back into the storage's writes. The default
  // calls append_audit and then `done`.
  virtual void append_audit_then(std::vector<AuditRecord> records, std::function<void(Status)> done);
  // The record with this AuditEvent id, or NotFound.
  virtual Status read_audit(const std::string& id, AuditRecord* out);
  // One page of the records matching q, newest first.
  virtual Status search_audit(const AuditQuery& q, AuditPage* out);
  // Iteration for verification: up to `count` records with seq > after_seq
  // in seq order, as stored (no check). Records whose patients lack their
  // row in the patient index are listed in *index_mismatches (seqs).
  virtual Status scan_audit(int64_t after_seq, int count, std::vector<AuditRecord>* out,
                            std::vector<int64_t>* index_mismatches);
  // Facts kept apart from the records, so that removing the newest records
  // or rows of the patient index is noticed.
  virtual Status audit_head(AuditHead* out);

  // ---- notification outbox (see OutboxEvent). Defaults answer NotAllowed. ----

  // Up to `max` (1..kMaxOutboxPage) pending events with next_attempt_us <= now_us, soonest first.
  virtual Status due_outbox(int64_t now_us, int max, std::vector<OutboxEvent>* out);
  // Stores state, attempts, next_attempt_us, last_error and delivered_to of
  // the event with event.id (durable like any write); NotFound when unknown.
  virtual Status settle_outbox(const OutboxEvent& event);
  // Up to `count` (1..kMaxOutboxPage) events of any state with id > after_id, in id order.
  virtual Status scan_outbox(int64_t after_id, int count, std::vector<OutboxEvent>* out);
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
  // Which writes raise outbox events (empty: none).
  OutboxRule outbox_rule;
  // Audit records are durable in the audit journal ("<path>-audit") first
  // and reach the searchable audit table in batches: once this many wait, or
  // once the oldest has waited this long (readers of the table never wait
  // for either: they bring the table up to date first). Large batches: each
  // commit dirties about one page of the patient index per patient it names,
  // whatever the number of records, and empties every reader's page cache.
  size_t audit_table_batch = 16384;
  int64_t audit_table_delay_us = 1'000'000;
};

Status open_sqlite(const SqliteOptions& opts, std::unique_ptr<Storage>* out);

// The result of checking the whole audit chain.
struct AuditVerification {
  bool intact = false;
  int64_t records = 0;      // records checked
  int64_t first_bad = 0;    // seq of the first record that breaks the chain (0 when intact)
  std::string problem;      // what is wrong there, e.g. "altered: ...", "removed: ..."
  std::string head_hash;    // hex hash of the last good record (publish it to anchor the chain)
};

// Recomputes the chain from the first record to the head committed when it
// starts (audit_head, then scan_audit; later records are left alone).
// Ok with *out filled whether or not the chain is intact; an error only when
// the storage cannot be read.
Status verify_audit_chain(Storage& storage, AuditVerification* out);

}  // namespace espace::storage
