// SQLite storage: one writer thread doing group commits, a pool of readers.
//
// Why one writer thread: SQLite allows one writer at a time anyway, and the
// expensive part of a durable write is the fsync at COMMIT. Running every
// queued write body in one transaction (each in its own savepoint) pays that
// fsync once per batch instead of once per write. Audit records, one per
// request, are made durable by the audit journal (sqlite_audit_journal.h)
// and reach the audit table in large batches: no savepoint, the committed
// head stored once per batch.
//
// Readers do not memory-map the file: SQLite drops a reader's mapping at the
// start of every read transaction after a commit, and when every request
// committed its audit record that munmap/fault cycle cost more than the read
// (measured then; commits are rarer now that records go through the journal).
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <iterator>
#include <mutex>
#include <thread>

#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "espace/storage/sqlite_storage.h"
#include "sqlite_audit.h"
#include "sqlite_audit_journal.h"
#include "sqlite_outbox.h"
#include "sqlite_connection.h"
#include "sqlite_page_cache.h"
#include "sqlite_search.h"
#include "sqlite_wal_gather.h"

namespace espace::storage {

namespace {

// The newest commit of a DeferFlushToNextWrite write made on this thread and
// not yet covered by an audit append (which then waits for its flush too).
struct UnflushedCommit {
  const void* storage = nullptr;
  int64_t commit = 0;
};
thread_local UnflushedCommit t_unflushed_commit;

using fhir::ErrorCategory;
using sqlite::Connection;
using sqlite::Stmt;

constexpr int kBusyTimeoutMs = 10000;
// WAL size (in pages) that wakes the background checkpointer. It copies
// pages while commits go on, so it rarely reaches the end of a growing log
// and the log cannot start over; at kWriterCheckpointFrames the writer
// finishes the job itself between commits (little is left to copy by then)
// so that the next transaction rewinds the log. A checkpoint copies a page
// once however many commits rewrote it since the last one, so a longer
// stretch copies fewer pages per write: at 6000 instead of 1000 the
// checkpointer's CPU per created Patient fell from about 94 to 35 us. Raising
// kWriterCheckpointFrames too (a longer log) doubled the creates' p99.
constexpr int kCheckpointFrames = 6000;
constexpr int kWriterCheckpointFrames = 10000;
// Threads issuing fsyncs of the WAL, and how many committed batches may wait
// for a flush before the writer pauses. The writer runs one batch while the
// previous one is flushed; letting it run further ahead only makes batches
// smaller, and small batches cost more CPU per write (each commit rewrites
// the same hot pages).
constexpr int kSyncThreads = 2;
constexpr int kFileChunkBytes = 16 << 20;
constexpr int64_t kMaxUnflushedBatches = 2;
// Batches that give each body its own savepoint after one whose optimistic
// run failed (run_batch).
constexpr int kIsolatedBatchesAfterFailure = 8;

// Every resource gets a numeric key (res_key) when first created, in
// creation order, so the per-resource indexes below grow at their right edge
// for creates instead of at random places: fewer distinct pages per commit,
// and pages are what a commit writes.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE resource_version(
  seq          INTEGER PRIMARY KEY,
  res_key      INTEGER NOT NULL,
  version      INTEGER NOT NULL,
  type         TEXT NOT NULL,
  id           TEXT NOT NULL,
  last_updated INTEGER NOT NULL,
  deleted      INTEGER NOT NULL,
  method       TEXT NOT NULL,
  body         BLOB,
  UNIQUE(res_key, version)
);
-- last_updated is in the index so _since filters and counts need no row lookups.
CREATE INDEX resource_version_by_type ON resource_version(type, seq, last_updated);
CREATE TABLE resource_current(
  type    TEXT NOT NULL,
  id      TEXT NOT NULL,
  res_key INTEGER NOT NULL,
  seq     INTEGER NOT NULL,
  version INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  PRIMARY KEY(type, id)
) WITHOUT ROWID;
CREATE TABLE search_index(
  res_key INTEGER NOT NULL,
  type    TEXT NOT NULL,
  id      TEXT NOT NULL,
  param   TEXT NOT NULL,
  kind    TEXT NOT NULL,
  system  TEXT NOT NULL,
  value   TEXT NOT NULL,
  low     REAL NOT NULL,
  high    REAL NOT NULL
);
CREATE INDEX search_index_by_resource ON search_index(res_key);
CREATE INDEX search_index_by_value ON search_index(type, param, value, system);
CREATE TABLE storage_meta(
  key   TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO storage_meta(key, value) VALUES('last_commit_us', 0);
)sql";

// Version 2: search on ranges (dates, numbers, quantities) reads this index
// alone, from the bound on low, without visiting the table. Partial, so the
// many string/token/reference rows cost writes nothing here; range queries
// repeat its WHERE term word for word (sqlite_search.cpp) to use it.
constexpr const char* kSchemaV2 = R"sql(
CREATE INDEX search_index_by_range ON search_index(type, param, low, high, id, kind)
  WHERE kind IN ('date', 'number', 'quantity', 'composite');
)sql";

// Version 3: resources of a type in creation order, for searches that walk
// them page by page.
constexpr const char* kSchemaV3 = R"sql(
CREATE INDEX resource_current_by_key ON resource_current(type, res_key);
)sql";

// Version 5: the same partial range index with its WHERE written as ORs. With
// `kind IN (...)` SQLite builds a temporary table for the list on every
// inserted index row (to test the row against the index's WHERE), which
// cost about a quarter of each row insert; equalities joined by OR do not.
constexpr const char* kSchemaV5 = R"sql(
DROP INDEX search_index_by_range;
CREATE INDEX search_index_by_range ON search_index(type, param, low, high, id, kind)
  WHERE kind = 'date' OR kind = 'number' OR kind = 'quantity' OR kind = 'composite';
)sql";

// Version 6: the value index ends with res_key, so a search that matches
// many rows and keeps one page of them (ordered by res_key) reads index
// entries alone instead of one table row per match: a `_count=10` page of a
// common family name no longer costs in proportion to the matches. The key
// adds a few bytes per entry and no B-tree of its own.
constexpr const char* kSchemaV6 = R"sql(
DROP INDEX search_index_by_value;
CREATE INDEX search_index_by_value ON search_index(type, param, value, system, res_key);
)sql";

// Version 7: the value index also ends with kind. Every search names the
// kind (a param's rows may be of several: a token's :text rows, a
// reference's identifiers), and without it in the index each matching entry
// cost a lookup of its table row: `family=` or `gender=` over 28,000
// Patients took about four times as long.
constexpr const char* kSchemaV7 = R"sql(
DROP INDEX search_index_by_value;
CREATE INDEX search_index_by_value ON search_index(type, param, value, system, res_key, kind);
)sql";

// Version 8: the per-resource index holds each row's param, kind, value and
// system. A search with several conditions tests the rest on each candidate
// of the first (EXISTS ... WHERE res_key = ?), which read the candidate's
// every table row (some 20 for a Patient); now the index answers alone. The
// entries are longer, but they are appended in res_key order.
constexpr const char* kSchemaV8 = R"sql(
DROP INDEX search_index_by_resource;
CREATE INDEX search_index_by_resource ON search_index(res_key, param, kind, value, system);
)sql";

// Version 9: the range index also ends with res_key, so a search driven by
// a date (or number, quantity) range reads its candidates' keys from the
// index instead of one table row each. Same WHERE, word for word, as
// version 5 (sqlite_search.cpp repeats it to use the index).
constexpr const char* kSchemaV9 = R"sql(
DROP INDEX search_index_by_range;
CREATE INDEX search_index_by_range ON search_index(type, param, low, high, id, kind, res_key)
  WHERE kind = 'date' OR kind = 'number' OR kind = 'quantity' OR kind = 'composite';
)sql";

constexpr const char* kVersionColumns =
    "SELECT type, id, version, last_updated, deleted, method, body, seq FROM resource_version";

int64_t wall_clock_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Storage::write_generation: one counter per slot, types hashed onto slots.
constexpr size_t kGenerationSlots = 64;
size_t generation_slot(std::string_view type) { return std::hash<std::string_view>{}(type) % kGenerationSlots; }
// Each storage instance counts from its own base, so numbers never coincide.
std::atomic<uint64_t> storage_instances{0};

Status invalid(std::string msg) {
  return Status::error(ErrorCategory::Invalid, "invalid", "storage: " + std::move(msg));
}

Status internal(std::string msg) {
  return Status::error(ErrorCategory::Internal, "exception", "storage: " + std::move(msg));
}

// Steps a statement that returns no rows.
Status run(Connection& c, const std::string& sql) {
  sqlite3_stmt* raw = nullptr;
  if (Status s = c.prepare(sql, &raw); !s) return s;
  Stmt st(raw);
  int rc = st.step();
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return sqlite::error(c.db(), sql);
  return Status::ok();
}

// Reads the version columns (kVersionColumns order) of the current row.
void load_version(const Stmt& st, ResourceVersion* out) {
  out->type = st.text(0);
  out->id = st.text(1);
  out->version = st.int64(2);
  out->last_updated_us = st.int64(3);
  out->deleted = st.int64(4) != 0;
  out->method = st.text(5);
  out->json = out->deleted ? std::string() : st.text(6);
}

// Fixed-size pool of read-only connections; a thread holds one for the
// duration of a call.
class ReaderPool {
 public:
  Status open(const std::string& path, int count) {
    for (int i = 0; i < count; ++i) {
      auto c = std::make_unique<Connection>();
      if (Status s = c->open(path, SQLITE_OPEN_READONLY); !s) return s;
      sqlite3_busy_timeout(c->db(), kBusyTimeoutMs);
      // Readers cache less than the writer. They do not memory-map the file:
      // SQLite drops a reader's mapping at its first read after any commit.
      // Measured again now that reads alone commit rarely (audit hand-overs,
      // once a second): searches ran ~20 % faster mapped, but 37 % slower
      // beside 4 connections of creates.
      if (Status s = c->exec("PRAGMA cache_size=-16384; PRAGMA mmap_size=0; PRAGMA query_only=1;"); !s)
        return s;
      free_.push_back(c.get());
      all_.push_back(std::move(c));
    }
    return Status::ok();
  }

  class Lease {
   public:
    Lease(ReaderPool& pool) : pool_(pool), conn_(pool.take()) {}
    ~Lease() { pool_.give_back(conn_); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Connection& operator*() const { return *conn_; }
    Connection* operator->() const { return conn_; }

   private:
    ReaderPool& pool_;
    Connection* conn_;
  };

 private:
  Connection* take() {
    std::unique_lock lock(mutex_);
    available_.wait(lock, [&] { return !free_.empty(); });
    Connection* c = free_.back();
    free_.pop_back();
    return c;
  }
  void give_back(Connection* c) {
    {
      std::lock_guard lock(mutex_);
      free_.push_back(c);
    }
    available_.notify_one();
  }

  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<Connection*> free_;
  std::vector<std::unique_ptr<Connection>> all_;
};

// Keeps a read transaction open on a reader so several statements see one
// snapshot; ends it on scope exit.
class ReadSnapshot {
 public:
  explicit ReadSnapshot(Connection& c) : c_(c) { status_ = run(c_, "BEGIN"); }
  ~ReadSnapshot() {
    if (status_) run(c_, "COMMIT");
  }
  const Status& status() const { return status_; }

 private:
  Connection& c_;
  Status status_;
};

// The WriteTxn handed to one write body. Lives for one batch; `active_`
// guards against a body keeping the reference past its callback.
class SqliteWriteTxn final : public WriteTxn {
 public:
  SqliteWriteTxn(Connection& c, int64_t now, int64_t& next_res_key, const OutboxRule& outbox_rule)
      : c_(c), now_(now), next_res_key_(next_res_key), outbox_rule_(outbox_rule) {}

  // Generation slots (Storage::write_generation) of the types this batch put.
  uint64_t touched_slots() const { return touched_slots_; }

  // A batch rolled back to run again starts its record afresh.
  void forget_touched_slots() { touched_slots_ = 0; }

  void begin_body() {
    active_ = true;
    broken_ = Status::ok();
  }
  // An error that must roll the body back even if the body ignored it: a
  // put that failed after it had started changing tables.
  Status end_body() {
    active_ = false;
    return broken_;
  }

  Status current(const std::string& type, const std::string& id,
                 std::optional<ResourceVersion>* out) override {
    if (!active_) return internal("WriteTxn used outside its write body");
    out->reset();
    sqlite3_stmt* raw = nullptr;
    if (Status s = c_.prepare(
            "SELECT v.type, v.id, v.version, v.last_updated, v.deleted, v.method, v.body, v.seq "
            "FROM resource_current c JOIN resource_version v ON v.seq = c.seq "
            "WHERE c.type = ?1 AND c.id = ?2",
            &raw);
        !s)
      return s;
    Stmt st(raw);
    st.bind(1, type);
    st.bind(2, id);
    int rc = st.step();
    if (rc == SQLITE_ROW) {
      ResourceVersion v;
      load_version(st, &v);
      *out = std::move(v);
      return Status::ok();
    }
    if (rc == SQLITE_DONE) return Status::ok();
    return sqlite::error(c_.db(), "reading the current version");
  }

  Status put(const ResourceVersion& v, const std::vector<IndexEntry>& index) override {
    if (!active_) return internal("WriteTxn used outside its write body");
    if (v.type.empty() || v.id.empty()) return invalid("a version needs a type and an id");
    if (v.method.empty()) return invalid("a version needs the method that made it");
    // AuditEvents are written by the server's audit trail only, to its own table.
    if (v.type == "AuditEvent")
      return Status::error(ErrorCategory::NotAllowed, "not-supported",
                           "AuditEvent resources are written by the server only");
    if (v.deleted != v.json.empty())
      return invalid(v.deleted ? "a delete marker has no body" : "a version that is not a delete needs a body");
    touched_slots_ |= uint64_t{1} << generation_slot(v.type);

    int64_t previous = 0;
    int64_t res_key = 0;
    {
      sqlite3_stmt* raw = nullptr;
      if (Status s = c_.prepare("SELECT version, res_key FROM resource_current WHERE type = ?1 AND id = ?2", &raw);
          !s)
        return s;
      Stmt st(raw);
      st.bind(1, v.type);
      st.bind(2, v.id);
      int rc = st.step();
      if (rc == SQLITE_ROW) {
        previous = st.int64(0);
        res_key = st.int64(1);
      } else if (rc != SQLITE_DONE) {
        return sqlite::error(c_.db(), "reading the current version");
      }
    }
    if (v.version != previous + 1) {
      return Status::error(ErrorCategory::Conflict, "conflict",
                           "storage: " + v.type + "/" + v.id + " version " + std::to_string(v.version) +
                               " cannot follow version " + std::to_string(previous) +
                               " (versions are immutable and numbered 1, 2, ...)");
    }

    // From here on tables change; a failure leaves them half-updated, so it
    // also marks the body as broken.
    bool exists = res_key != 0;
    // Keys are never reused: one taken by a rolled-back body is just skipped.
    if (!exists) res_key = next_res_key_++;
    Status s = append(v, index, res_key, exists);
    // The events this write raises commit or roll back with it.
    if (s && outbox_rule_) s = sqlite::record_outbox_events(c_, outbox_rule_, v, !exists, index, now_);
    if (!s) broken_ = s;
    return s;
  }

  int64_t now_us() override { return now_; }

  Status expunge(const std::string& type, const std::string& id) override {
    if (!active_) return internal("WriteTxn used outside its write body");
    if (type == "AuditEvent")
      return Status::error(ErrorCategory::NotAllowed, "not-supported", "the audit trail is never erased");
    sqlite3_stmt* raw = nullptr;
    int64_t res_key = 0;
    {
      if (Status s = c_.prepare("SELECT res_key FROM resource_current WHERE type = ?1 AND id = ?2", &raw); !s)
        return s;
      Stmt st(raw);
      st.bind(1, type);
      st.bind(2, id);
      int rc = st.step();
      if (rc == SQLITE_DONE)
        return Status::error(ErrorCategory::NotFound, "not-found", "storage: nothing stored as " + type + "/" + id);
      if (rc != SQLITE_ROW) return sqlite::error(c_.db(), "reading the current version");
      res_key = st.int64(0);
    }
    touched_slots_ |= uint64_t{1} << generation_slot(type);
    // Versions, current row and index rows go together or not at all: a
    // failure part-way marks the body as broken (rolled back).
    for (const char* sql : {"DELETE FROM search_index WHERE res_key = ?1", "DELETE FROM resource_version WHERE res_key = ?1",
                            "DELETE FROM resource_current WHERE res_key = ?1 AND type = ?2"}) {
      if (Status s = c_.prepare(sql, &raw); !s) return broken_ = s;
      Stmt st(raw);
      st.bind(1, res_key);
      if (std::string_view(sql).find("?2") != std::string_view::npos) st.bind(2, type);
      if (st.step() != SQLITE_DONE) return broken_ = sqlite::error(c_.db(), "erasing a resource");
    }
    return Status::ok();
  }

  // For the audit table, which writes inside the same transaction.
  Connection& connection() { return c_; }

 private:
  Status append(const ResourceVersion& v, const std::vector<IndexEntry>& index, int64_t res_key, bool exists) {
    sqlite3_stmt* raw = nullptr;
    int64_t seq = 0;
    {
      if (Status s = c_.prepare(
              "INSERT INTO resource_version(type, id, version, last_updated, deleted, method, body, res_key) "
              "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
              &raw);
          !s)
        return s;
      Stmt st(raw);
      st.bind(1, v.type);
      st.bind(2, v.id);
      st.bind(3, v.version);
      st.bind(4, v.last_updated_us);
      st.bind(5, int64_t{v.deleted ? 1 : 0});
      st.bind(6, v.method);
      if (v.deleted)
        st.bind_null(7);
      else
        st.bind_blob(7, v.json);
      st.bind(8, res_key);
      if (st.step() != SQLITE_DONE) return sqlite::error(c_.db(), "storing a version");
      seq = sqlite3_last_insert_rowid(c_.db());
    }
    if (exists) {
      {
        if (Status s = c_.prepare(
                "UPDATE resource_current SET seq = ?3, version = ?4, deleted = ?5 WHERE type = ?1 AND id = ?2",
                &raw);
            !s)
          return s;
        Stmt st(raw);
        st.bind(1, v.type);
        st.bind(2, v.id);
        st.bind(3, seq);
        st.bind(4, v.version);
        st.bind(5, int64_t{v.deleted ? 1 : 0});
        if (st.step() != SQLITE_DONE) return sqlite::error(c_.db(), "updating the current version");
      }
      {
        if (Status s = c_.prepare("DELETE FROM search_index WHERE res_key = ?1", &raw); !s) return s;
        Stmt st(raw);
        st.bind(1, res_key);
        if (st.step() != SQLITE_DONE) return sqlite::error(c_.db(), "removing old index rows");
      }
    } else {
      if (Status s = c_.prepare(
              "INSERT INTO resource_current(type, id, seq, version, deleted, res_key) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
              &raw);
          !s)
        return s;
      Stmt st(raw);
      st.bind(1, v.type);
      st.bind(2, v.id);
      st.bind(3, seq);
      st.bind(4, v.version);
      st.bind(5, int64_t{v.deleted ? 1 : 0});
      st.bind(6, res_key);
      if (st.step() != SQLITE_DONE) return sqlite::error(c_.db(), "storing the current version");
    }
    // A deleted resource matches no search, so a delete marker keeps no rows.
    if (index.empty() || v.deleted) return Status::ok();
    if (Status s = c_.prepare(
            "INSERT INTO search_index(type, id, param, kind, system, value, low, high, res_key) "
            "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            &raw);
        !s)
      return s;
    for (const IndexEntry& e : index) {
      Stmt st(raw);
      st.bind(1, v.type);
      st.bind(2, v.id);
      st.bind(3, e.param);
      st.bind(4, e.kind);
      st.bind(5, e.system);
      st.bind(6, e.value);
      st.bind(7, e.low);
      st.bind(8, e.high);
      st.bind(9, res_key);
      if (st.step() != SQLITE_DONE) return sqlite::error(c_.db(), "storing index rows");
    }
    return Status::ok();
  }

  Connection& c_;
  int64_t now_;
  int64_t& next_res_key_;
  const OutboxRule& outbox_rule_;
  bool active_ = false;
  Status broken_;
  uint64_t touched_slots_ = 0;
};

class SqliteStorageImpl final : public SqliteStorage {
 public:
  explicit SqliteStorageImpl(const SqliteOptions& opts) : opts_(opts) {
    const uint64_t base = (storage_instances.fetch_add(1) + 1) << 40;
    for (auto& g : generations_) g.store(base);
  }

  // Stops in pipeline order: the writer drains the queue, the sync threads
  // acknowledge everything committed, then the checkpointer ends.
  ~SqliteStorageImpl() override {
    // The journal hands its last records to the table through the writer.
    journal_.stop();
    if (writer_thread_.joinable()) {
      {
        std::lock_guard lock(queue_mutex_);
        stopping_ = true;
      }
      queue_cv_.notify_all();
      writer_thread_.join();
    }
    {
      std::lock_guard lock(sync_mutex_);
      sync_stopping_ = true;
    }
    sync_cv_.notify_all();
    for (auto& t : sync_threads_) t.join();
    {
      std::lock_guard lock(checkpoint_mutex_);
      checkpoint_stopping_ = true;
    }
    checkpoint_cv_.notify_all();
    if (checkpoint_thread_.joinable()) checkpoint_thread_.join();
    if (wal_fd_ >= 0) ::close(wal_fd_);
  }

  Status open() {
    // The writer alone writes the log: its frames go out in a few calls per commit.
    if (Status s = writer_.open(opts_.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, sqlite::wal_gathering_vfs()); !s)
      return s;
    sqlite3_busy_timeout(writer_.db(), kBusyTimeoutMs);
    if (Status s = set_journal_wal(); !s) return s;
    // With overlapped fsyncs SQLite itself does not sync at COMMIT (NORMAL);
    // the sync threads do, before anyone is told the write succeeded.
    own_fsync_ = opts_.synchronous_full && opts_.overlap_fsync;
    std::string pragmas = opts_.synchronous_full && !own_fsync_ ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;";
    // The writer caches generously: index pages of recent writes stay hot.
    pragmas += "PRAGMA foreign_keys=OFF; PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY;"
               "PRAGMA journal_size_limit=67108864;";
    if (Status s = writer_.exec(pragmas); !s) return s;
    if (Status s = ensure_schema(); !s) return s;
    if (Status s = load_last_commit(); !s) return s;
    if (Status s = readers_.open(opts_.path, opts_.reader_connections); !s) return s;
    if (own_fsync_) {
      // The WAL file lives as long as the writer connection; fsync through
      // any descriptor flushes the file's data.
      wal_fd_ = ::open((opts_.path + "-wal").c_str(), O_RDWR | O_CLOEXEC);
      if (wal_fd_ < 0) return internal("cannot open the write-ahead log to sync it");
    }
    // Checkpoints (copying the WAL into the database, two fsyncs) run on
    // their own connection and thread so they do not stall commits.
    if (Status s = checkpointer_.open(opts_.path, SQLITE_OPEN_READWRITE); !s) return s;
    sqlite3_busy_timeout(checkpointer_.db(), kBusyTimeoutMs);
    if (Status s = checkpointer_.exec(opts_.synchronous_full ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;");
        !s)
      return s;
    // The database file grows by checkpoints; growing it in large steps means
    // readers re-map their memory-mapped view rarely instead of after most
    // checkpoints (a munmap per reader each time).
    for (Connection* c : {&writer_, &checkpointer_}) {
      int chunk = kFileChunkBytes;
      sqlite3_file_control(c->db(), "main", SQLITE_FCNTL_CHUNK_SIZE, &chunk);
    }
    sqlite3_wal_hook(writer_.db(), &SqliteStorageImpl::on_wal_commit, this);  // replaces auto-checkpoint
    checkpoint_thread_ = std::thread([this] { checkpoint_loop(); });
    if (own_fsync_)
      for (int i = 0; i < kSyncThreads; ++i) sync_threads_.emplace_back([this] { sync_loop(); });
    if (Status s = open_audit_journal(); !s) return s;
    writer_thread_ = std::thread([this] { writer_loop(); });
    writer_thread_id_ = writer_thread_.get_id();
    return start_audit_journal();
  }

  // Takes the audit journal and moves into the table what a crash left in it
  // (before the writer thread runs: the writer connection is still ours).
  Status open_audit_journal() {
    bool owned = false;
    if (Status s = journal_.lock(opts_.path + "-audit", &owned); !s) return s;
    if (!owned) return Status::ok();  // another process writes the trail; we only read the table
    if (Status s = sqlite::load_audit_chain_head(writer_, &audit_head_); !s) return s;
    std::vector<sqlite::JournalEntry> left;
    if (Status s = sqlite::read_journal(journal_.fd(), audit_head_, &left); !s) return s;
    if (left.empty()) return Status::ok();
    std::vector<const sqlite::JournalEntry*> entries;
    for (const sqlite::JournalEntry& e : left) entries.push_back(&e);
    bool broken = false;
    Status s = run(writer_, "BEGIN IMMEDIATE");
    if (s) s = sqlite::insert_audit_records(writer_, &audit_head_, entries, &broken);
    if (s) s = sqlite::store_audit_head(writer_, audit_head_.seq);
    if (s) s = run(writer_, "COMMIT");
    if (!s) {
      if (!sqlite3_get_autocommit(writer_.db())) run(writer_, "ROLLBACK");
      return s;
    }
    // Durable before the journal is emptied.
    if (own_fsync_ && ::fdatasync(wal_fd_) != 0) return internal("cannot flush the replayed audit records");
    return Status::ok();
  }

  Status start_audit_journal() {
    if (journal_.fd() < 0) return Status::ok();
    if (!audit_head_.loaded)
      if (Status s = sqlite::load_audit_chain_head(writer_, &audit_head_); !s) return s;
    sqlite::AuditJournalHooks hooks;
    hooks.find_in_table = [this](const std::vector<const std::string*>& ids, std::unordered_set<std::string>* taken) {
      ReaderPool::Lease c(readers_);
      // One read transaction for the batch, not one (with its file locks) per id.
      if (Status s = c->exec("BEGIN"); !s) return s;
      struct End {
        Connection& c;
        ~End() { (void)c.exec("COMMIT"); }
      } end{*c};
      sqlite3_stmt* raw = nullptr;
      if (Status s = c->prepare("SELECT 1 FROM audit_log WHERE id = ?1", &raw); !s) return s;
      for (const std::string* id : ids) {
        Stmt st(raw);
        st.bind(1, *id);
        int rc = st.step();
        if (rc == SQLITE_ROW) taken->insert(*id);
        else if (rc != SQLITE_DONE) return sqlite::error(c->db(), "looking up an audit record id");
      }
      return Status::ok();
    };
    hooks.add_to_table = [this](std::vector<const sqlite::JournalEntry*> entries, std::function<void(Status)> done) {
      auto p = std::make_unique<Pending>();
      p->audit = std::move(entries);
      p->then = std::move(done);
      if (Status s = enqueue(*p); !s) return p->then(std::move(s));
      p.release();  // finished, and deleted, by the writer or a sync thread
    };
    hooks.wait_commit_durable = [this](int64_t commit) {
      if (!own_fsync_) return true;  // committed is durable (or nothing ever is: no fsync)
      std::unique_lock lock(sync_mutex_);
      durable_cv_.wait(lock, [&] { return durable_upto_ >= commit || sync_failed_; });
      return durable_upto_ >= commit;
    };
    std::string largest_id;
    {
      ReaderPool::Lease c(readers_);
      sqlite3_stmt* raw = nullptr;
      if (Status s = c->prepare("SELECT max(id) FROM audit_log", &raw); !s) return s;  // the id index's last entry
      Stmt st(raw);
      if (st.step() != SQLITE_ROW) return sqlite::error(c->db(), "reading the largest audit record id");
      largest_id = st.text(0);  // "" for NULL: the table is empty
    }
    // The writer thread owns audit_head_ from now on; the journal keeps its own.
    return journal_.start(audit_head_, std::move(largest_id), opts_.synchronous_full, opts_.audit_table_batch,
                          opts_.audit_table_delay_us, std::move(hooks));
  }

  // ---- reads ----

  Status read(const std::string& type, const std::string& id, ResourceVersion* out) override {
    if (type.empty() || id.empty()) return invalid("read needs a type and an id");
    ReaderPool::Lease c(readers_);
    sqlite3_stmt* raw = nullptr;
    if (Status s = c->prepare(
            "SELECT v.type, v.id, v.version, v.last_updated, v.deleted, v.method, v.body, v.seq "
            "FROM resource_current c JOIN resource_version v ON v.seq = c.seq "
            "WHERE c.type = ?1 AND c.id = ?2",
            &raw);
        !s)
      return s;
    Stmt st(raw);
    st.bind(1, type);
    st.bind(2, id);
    int rc = st.step();
    if (rc == SQLITE_ROW) {
      load_version(st, out);
      return Status::ok();
    }
    if (rc == SQLITE_DONE) return not_found(type, id);
    return sqlite::error(c->db(), "reading a resource");
  }

  Status vread(const std::string& type, const std::string& id, int64_t version, ResourceVersion* out) override {
    if (type.empty() || id.empty()) return invalid("vread needs a type and an id");
    ReaderPool::Lease c(readers_);
    sqlite3_stmt* raw = nullptr;
    if (Status s = c->prepare(
            "SELECT v.type, v.id, v.version, v.last_updated, v.deleted, v.method, v.body, v.seq "
            "FROM resource_current c JOIN resource_version v ON v.res_key = c.res_key AND v.version = ?3 "
            "WHERE c.type = ?1 AND c.id = ?2",
            &raw);
        !s)
      return s;
    Stmt st(raw);
    st.bind(1, type);
    st.bind(2, id);
    st.bind(3, version);
    int rc = st.step();
    if (rc == SQLITE_ROW) {
      load_version(st, out);
      return Status::ok();
    }
    if (rc == SQLITE_DONE)
      return Status::error(ErrorCategory::NotFound, "not-found",
                           "storage: " + type + "/" + id + " has no version " + std::to_string(version));
    return sqlite::error(c->db(), "reading a version");
  }

  Status history(const HistoryQuery& q, HistoryPage* out) override {
    out->versions.clear();
    out->total = 0;
    out->last_seq = 0;
    if (!q.id.empty() && q.type.empty()) return invalid("instance history needs a type");
    if (q.count < 0 || q.count > kMaxHistoryCount)
      return invalid("history page size must be between 0 and " + std::to_string(kMaxHistoryCount));

    // The filter text depends only on which bounds are present, so the set
    // of distinct statements (and cached prepared statements) stays small.
    std::string where;
    auto add = [&where](const char* clause) {
      where += where.empty() ? " WHERE " : " AND ";
      where += clause;
    };
    if (!q.id.empty())
      add("res_key = (SELECT res_key FROM resource_current WHERE type = ?1 AND id = ?2)");
    else if (!q.type.empty())
      add("type = ?1");
    if (q.since_us != 0) add("last_updated >= ?3");
    if (q.before_us != 0) add("last_updated < ?4");
    std::string page_where = where;
    if (q.before_seq != 0) {
      page_where += page_where.empty() ? " WHERE " : " AND ";
      page_where += "seq < ?5";
    }
    // For one instance, version order is commit order and follows the
    // UNIQUE(res_key, version) index; elsewhere seq order follows an index.
    std::string order = q.id.empty() ? " ORDER BY seq DESC" : " ORDER BY version DESC";
    auto bind_all = [&q](Stmt& st) {
      if (!q.type.empty()) st.bind(1, q.type);
      if (!q.id.empty()) st.bind(2, q.id);
      if (q.since_us != 0) st.bind(3, q.since_us);
      if (q.before_us != 0) st.bind(4, q.before_us);
      if (q.before_seq != 0) st.bind(5, q.before_seq);
    };

    ReaderPool::Lease c(readers_);
    ReadSnapshot snapshot(*c);  // page and total from the same snapshot
    if (!snapshot.status()) return snapshot.status();

    sqlite3_stmt* raw = nullptr;
    if (q.count > 0) {
      if (Status s = c->prepare(kVersionColumns + page_where + order + " LIMIT ?6", &raw); !s) return s;
      Stmt st(raw);
      bind_all(st);
      st.bind(6, int64_t{q.count});
      int rc;
      while ((rc = st.step()) == SQLITE_ROW) {
        ResourceVersion v;
        load_version(st, &v);
        out->versions.push_back(std::move(v));
        out->last_seq = st.int64(7);
      }
      if (rc != SQLITE_DONE) return sqlite::error(c->db(), "reading history");
    }
    if (Status s = c->prepare("SELECT count(*) FROM resource_version" + where, &raw); !s) return s;
    Stmt st(raw);
    bind_all(st);
    if (st.step() != SQLITE_ROW) return sqlite::error(c->db(), "counting history");
    out->total = st.int64(0);
    return Status::ok();
  }

  Status find_by_token(const std::string& type, const std::string& param, const std::string& system,
                       const std::string& value, std::vector<std::string>* ids) override {
    ids->clear();
    if (type.empty() || param.empty()) return invalid("a token lookup needs a type and a parameter");
    ReaderPool::Lease c(readers_);
    std::string sql =
        "SELECT DISTINCT id FROM search_index WHERE type = ?1 AND param = ?2 AND value = ?3";
    if (!system.empty()) sql += " AND system = ?4";
    sql += " ORDER BY id";
    sqlite3_stmt* raw = nullptr;
    if (Status s = c->prepare(sql, &raw); !s) return s;
    Stmt st(raw);
    st.bind(1, type);
    st.bind(2, param);
    st.bind(3, value);
    if (!system.empty()) st.bind(4, system);
    int rc;
    while ((rc = st.step()) == SQLITE_ROW) ids->push_back(st.text(0));
    if (rc != SQLITE_DONE) return sqlite::error(c->db(), "looking up a token");
    return Status::ok();
  }

  bool write_generation(std::string_view type, uint64_t* out) const override {
    *out = generations_[generation_slot(type)].load(std::memory_order_acquire);
    return true;
  }

  Status search(const SearchQuery& q, SearchPage* out) override {
    ReaderPool::Lease c(readers_);
    return sqlite::run_search(*c, q, out);
  }

  // ---- audit trail (sqlite_audit.cpp) ----

  Status append_audit(std::vector<AuditRecord>* records) override {
    struct Wait {
      std::mutex mutex;
      std::condition_variable cv;
      bool finished = false;
      Status result;
    } w;
    to_journal(std::move(*records), [&](Status s, std::vector<AuditRecord>& chained) {
      std::lock_guard lock(w.mutex);
      *records = std::move(chained);
      w.result = std::move(s);
      w.finished = true;
      w.cv.notify_one();
    });
    std::unique_lock lock(w.mutex);
    w.cv.wait(lock, [&] { return w.finished; });
    // Nothing was kept: seq and hashes given in the journal mean nothing.
    if (!w.result)
      for (AuditRecord& r : *records) {
        r.seq = 0;
        r.prev_hash.clear();
        r.hash.clear();
      }
    return std::move(w.result);
  }

  void append_audit_then(std::vector<AuditRecord> records, std::function<void(Status)> done) override {
    to_journal(std::move(records),
               [done = std::move(done)](Status s, std::vector<AuditRecord>&) mutable { done(std::move(s)); });
  }

  // The records go to the audit journal; `done` runs once they are durable
  // there (and so is any write this thread had answered at commit).
  void to_journal(std::vector<AuditRecord> records, sqlite::AuditJournal::Done done) {
    if (Status s = sqlite::check_audit_records(records); !s) return done(std::move(s), records);
    // The long hashing and the encoding of the bodies are done on the caller's thread.
    std::vector<std::string> bodies;
    bodies.reserve(records.size());
    for (AuditRecord& r : records) {
      if (r.content_hash.size() != kAuditHashSize) r.content_hash = audit_content_hash(r);
      bodies.push_back(sqlite::encode_audit_body(r.json));
    }
    int64_t after_commit = 0;
    if (t_unflushed_commit.storage == this) {
      after_commit = t_unflushed_commit.commit;
      t_unflushed_commit = UnflushedCommit{};
    }
    journal_.append(std::move(records), std::move(bodies), after_commit, std::move(done));
  }

  Status read_audit(const std::string& id, AuditRecord* out) override {
    if (Status s = journal_.catch_up(); !s) return s;
    ReaderPool::Lease c(readers_);
    return sqlite::read_audit_record(*c, id, out);
  }

  Status search_audit(const AuditQuery& q, AuditPage* out) override {
    if (Status s = journal_.catch_up(); !s) return s;
    ReaderPool::Lease c(readers_);
    return sqlite::search_audit_records(*c, q, out);
  }

  Status scan_audit(int64_t after_seq, int count, std::vector<AuditRecord>* out,
                    std::vector<int64_t>* index_mismatches) override {
    if (Status s = journal_.catch_up(); !s) return s;
    ReaderPool::Lease c(readers_);
    return sqlite::scan_audit_records(*c, after_seq, count, out, index_mismatches);
  }

  Status audit_head(AuditHead* out) override {
    if (Status s = journal_.catch_up(); !s) return s;
    ReaderPool::Lease c(readers_);
    return sqlite::read_audit_head(*c, out);
  }

  // ---- notification outbox (sqlite_outbox.cpp) ----

  Status due_outbox(int64_t now_us, int max, std::vector<OutboxEvent>* out) override {
    ReaderPool::Lease c(readers_);
    return sqlite::due_outbox_events(*c, now_us, max, out);
  }

  Status settle_outbox(const OutboxEvent& event) override {
    return write([&](WriteTxn& txn) {
      return sqlite::update_outbox_event(static_cast<SqliteWriteTxn&>(txn).connection(), event);
    });
  }

  Status scan_outbox(int64_t after_id, int count, std::vector<OutboxEvent>* out) override {
    ReaderPool::Lease c(readers_);
    return sqlite::scan_outbox_events(*c, after_id, count, out);
  }

  // ---- writes ----

  Status write(const std::function<Status(WriteTxn&)>& body) override {
    Pending p;
    p.body = &body;
    p.answer_at_commit = DeferFlushToNextWrite::active_on_this_thread();
    Status s = enqueue_and_wait(p);
    // The audit record that follows waits for this commit's flush as well.
    if (p.commit_number > 0) t_unflushed_commit = UnflushedCommit{this, p.commit_number};
    return s;
  }

  WriteStats write_stats() const override {
    WriteStats s;
    s.batches = batches_.load();
    s.bodies = bodies_.load();
    s.failed_bodies = failed_bodies_.load();
    s.failed_commits = failed_commits_.load();
    s.largest_batch = largest_batch_.load();
    s.rerun_batches = rerun_batches_.load();
    s.fsyncs = fsyncs_.load();
    s.checkpoints = checkpoints_.load();
    s.writer_cpu_us = writer_cpu_us_.load();
    return s;
  }

  bool owns_audit_journal() const override { return journal_.started(); }

  int pending_writes() const override {
    std::lock_guard lock(queue_mutex_);
    return static_cast<int>(queue_.size());
  }

 private:
  // One queued write: a body, or a batch of the audit journal's records for
  // the audit table (appended without a savepoint per record).
  // The caller sleeps on `wake` without spinning: a semaphore's spin-then-
  // yield wait costs more than the write itself when dozens of requests wait.
  struct Pending {
    const std::function<Status(WriteTxn&)>* body = nullptr;
    std::vector<const sqlite::JournalEntry*> audit;  // owned by the journal until `then` has run
    bool answer_at_commit = false;  // DeferFlushToNextWrite: the caller's next write waits for the flush
    int64_t commit_number = 0;      // answer_at_commit: the commit (committed_seq_) not yet flushed
    Status result;
    std::mutex mutex;
    std::condition_variable wake;
    bool done = false;
    // Nobody waits (the audit journal's hand-overs): the Pending is deleted
    // by finish(), which then hands the result to `then`.
    std::function<void(Status)> then;

    void wait() {
      std::unique_lock lock(mutex);
      wake.wait(lock, [&] { return done; });
    }
    // Notifying under the lock: the waiter cannot return (and destroy this)
    // before the notification is finished.
    void finish(Status s) {
      if (then) {
        std::function<void(Status)> call = std::move(then);
        delete this;
        call(std::move(s));
        return;
      }
      std::lock_guard lock(mutex);
      result = std::move(s);
      done = true;
      wake.notify_one();
    }
  };

  Status enqueue_and_wait(Pending& p) {
    if (Status s = enqueue(p); !s) return s;
    p.wait();
    return std::move(p.result);
  }

  // Hands `p` to the writer thread; on an error it was not queued.
  Status enqueue(Pending& p) {
    if (std::this_thread::get_id() == writer_thread_id_)
      return internal("write() called from inside a write body would wait for itself");
    if (sync_failed_.load())
      return internal("an earlier fsync of the write-ahead log failed; writes are refused until restart");
    bool wake_writer;
    {
      std::lock_guard lock(queue_mutex_);
      if (stopping_)
        return Status::error(ErrorCategory::Unavailable, "transient", "storage: shutting down");
      queue_.push_back(&p);
      // The writer only sleeps on an empty queue; it drains the rest itself.
      wake_writer = writer_idle_;
    }
    if (wake_writer) queue_cv_.notify_one();
    return Status::ok();
  }

  static Status not_found(const std::string& type, const std::string& id) {
    return Status::error(ErrorCategory::NotFound, "not-found", "storage: " + type + "/" + id + " does not exist");
  }

  Status set_journal_wal() {
    sqlite3_stmt* raw = nullptr;
    if (Status s = writer_.prepare("PRAGMA journal_mode=WAL", &raw); !s) return s;
    Stmt st(raw);
    if (st.step() != SQLITE_ROW || st.text(0) != "wal")
      return internal("the database cannot use write-ahead logging (journal_mode=WAL refused)");
    return Status::ok();
  }

  Status ensure_schema() {
    if (Status s = run(writer_, "BEGIN IMMEDIATE"); !s) return s;
    Status s = create_or_check_schema();
    if (s) s = writer_.exec(sqlite::kOutboxSchema);
    if (s)
      s = run(writer_, "COMMIT");
    if (!s && !sqlite3_get_autocommit(writer_.db())) run(writer_, "ROLLBACK");
    return s;
  }

  Status create_or_check_schema() {
    int64_t version = 0;
    {
      sqlite3_stmt* raw = nullptr;
      if (Status s = writer_.prepare("PRAGMA user_version", &raw); !s) return s;
      Stmt st(raw);
      if (st.step() != SQLITE_ROW) return sqlite::error(writer_.db(), "reading the schema version");
      version = st.int64(0);
    }
    if (version == kSqliteSchemaVersion) return Status::ok();
    if (version > kSqliteSchemaVersion)
      return internal("database schema version " + std::to_string(version) +
                      " is newer than this server understands (" + std::to_string(kSqliteSchemaVersion) + ")");
    if (version == 0) {
      int64_t tables = 0;
      {
        sqlite3_stmt* raw = nullptr;
        if (Status s = writer_.prepare("SELECT count(*) FROM sqlite_schema", &raw); !s) return s;
        Stmt st(raw);
        if (st.step() != SQLITE_ROW) return sqlite::error(writer_.db(), "reading the schema");
        tables = st.int64(0);
      }
      if (tables != 0) return internal("the database file holds tables that are not an espace schema");
      if (Status s = writer_.exec(kSchemaV1); !s) return s;
      version = 1;
    }
    // Migrations, one version at a time, inside the caller's transaction:
    // the SQL that takes version i + 1 to version i + 2.
    static const char* const kMigrations[] = {kSchemaV2, kSchemaV3, sqlite::kAuditSchema, kSchemaV5,
                                              kSchemaV6, kSchemaV7, kSchemaV8, kSchemaV9};
    static_assert(std::size(kMigrations) == kSqliteSchemaVersion - 1, "one migration per schema version after 1");
    for (; version < kSqliteSchemaVersion; ++version)
      if (Status s = writer_.exec(kMigrations[version - 1]); !s) return s;
    return writer_.exec("PRAGMA user_version=" + std::to_string(kSqliteSchemaVersion));
  }

  Status load_last_commit() {
    sqlite3_stmt* raw = nullptr;
    if (Status s = writer_.prepare("SELECT value FROM storage_meta WHERE key = 'last_commit_us'", &raw); !s)
      return s;
    Stmt st(raw);
    if (st.step() != SQLITE_ROW) return sqlite::error(writer_.db(), "reading the last commit time");
    last_commit_us_ = st.int64(0);
    sqlite3_stmt* key_raw = nullptr;
    if (Status s = writer_.prepare("SELECT max(res_key) FROM resource_version", &key_raw); !s) return s;
    Stmt key(key_raw);
    if (key.step() != SQLITE_ROW) return sqlite::error(writer_.db(), "reading the newest resource key");
    next_res_key_ = key.int64(0) + 1;
    return Status::ok();
  }

  void writer_loop() {
    pthread_setname_np(pthread_self(), "espace-writer");
    std::vector<Pending*> batch;
    batch.reserve(static_cast<size_t>(opts_.max_batch));
    for (;;) {
      batch.clear();
      if (own_fsync_) {
        std::unique_lock lock(sync_mutex_);
        flushed_cv_.wait(lock, [&] { return committed_seq_ - durable_upto_ < kMaxUnflushedBatches || sync_failed_; });
      }
      {
        std::unique_lock lock(queue_mutex_);
        writer_idle_ = true;
        queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        writer_idle_ = false;
        if (queue_.empty()) return;  // stopping, and everything queued has been written
        while (!queue_.empty() && batch.size() < static_cast<size_t>(opts_.max_batch)) {
          batch.push_back(queue_.front());
          queue_.pop_front();
        }
      }
      timespec cpu0{}, cpu1{};
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
      run_batch(batch);
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
      writer_cpu_us_.fetch_add((cpu1.tv_sec - cpu0.tv_sec) * 1000000 + (cpu1.tv_nsec - cpu0.tv_nsec) / 1000);
    }
  }

  // Runs a batch in one transaction. Bodies first run side by side with no
  // savepoint of their own: a savepoint makes SQLite copy every page a body
  // touches into its sub-journal, which cost the writer about a fifth of its
  // time. If one fails, the whole transaction is rolled back and the batch
  // runs again with a savepoint per body, so only the failed one is undone
  // (Storage::write: a body may run more than once). The next
  // kIsolatedBatchesAfterFailure batches keep their savepoints, so a stream of
  // failing writes does not make every batch run twice.
  void run_batch(const std::vector<Pending*>& batch) {
    std::vector<Status> results(batch.size());
    const int64_t now = std::max(wall_clock_us(), last_commit_us_ + 1);
    const sqlite::AuditChainHead head_before = audit_head_;
    bool isolate = isolated_batches_left_ > 0;
    if (isolate) --isolated_batches_left_;
    SqliteWriteTxn txn(writer_, now, next_res_key_, opts_.outbox_rule);
    int64_t failed = 0;
    Status batch_status = run_bodies(batch, isolate, txn, &results, &failed);
    if (batch_status && !isolate && failed > 0) {
      // Some errors (a full disk) make SQLite roll the transaction back itself.
      if (!sqlite3_get_autocommit(writer_.db())) batch_status = run(writer_, "ROLLBACK");
      audit_head_ = head_before;
      isolated_batches_left_ = kIsolatedBatchesAfterFailure;
      rerun_batches_.fetch_add(1);
      txn.forget_touched_slots();
      for (Status& r : results) r = Status::ok();
      failed = 0;
      if (batch_status) batch_status = run_bodies(batch, true, txn, &results, &failed);
    }
    const int64_t audit_seq_before = head_before.loaded ? head_before.seq : -1;
    // The committed head moves once per transaction, not once per record.
    if (batch_status && audit_head_.loaded && audit_head_.seq != audit_seq_before)
      batch_status = sqlite::store_audit_head(writer_, audit_head_.seq);
    if (batch_status) {
      batch_status = run(writer_, "COMMIT");
      if (batch_status) {
        last_commit_us_ = now;
        // Visible to readers now, acknowledged later: caches see the change
        // before anyone is told the write happened.
        for (size_t slot = 0; slot < kGenerationSlots; ++slot)
          if (txn.touched_slots() & (uint64_t{1} << slot)) generations_[slot].fetch_add(1, std::memory_order_release);
      }
    }
    if (!batch_status) {
      if (!sqlite3_get_autocommit(writer_.db())) run(writer_, "ROLLBACK");
      audit_head_.loaded = false;  // it may have moved in the rolled-back transaction
      failed_commits_.fetch_add(1);
      Status everyone = internal("the commit failed, nothing was written: " + batch_status.message());
      for (Status& r : results)
        if (r) r = everyone;
    }
    batches_.fetch_add(1);
    bodies_.fetch_add(static_cast<int64_t>(batch.size()));
    failed_bodies_.fetch_add(failed);
    if (static_cast<int64_t>(batch.size()) > largest_batch_.load()) largest_batch_.store(static_cast<int64_t>(batch.size()));
    if (own_fsync_ && batch_status) {
      // Bodies whose caller waits for the flush of its next write instead are
      // answered now; the rest wait for a flush covering this commit.
      std::vector<Pending*> flushed_later;
      std::vector<Status> later_results;
      flushed_later.reserve(batch.size());
      later_results.reserve(batch.size());
      for (size_t i = 0; i < batch.size(); ++i) {
        if (batch[i]->answer_at_commit) {
          batch[i]->commit_number = committed_seq_ + 1;  // the writer alone moves committed_seq_
          batch[i]->finish(std::move(results[i]));
        } else {
          flushed_later.push_back(batch[i]);
          later_results.push_back(std::move(results[i]));
        }
      }
      std::lock_guard lock(sync_mutex_);
      if (!sync_failed_.load()) {
        awaiting_sync_.push_back(CommittedBatch{++committed_seq_, std::move(flushed_later), std::move(later_results)});
        sync_cv_.notify_one();
        return;
      }
      Status unsure = internal("the write-ahead log cannot be synced; this write may not be durable");
      for (Status& r : later_results)
        if (r) r = unsure;
      acknowledge(flushed_later, later_results);
      return;
    }
    acknowledge(batch, results);
  }

  // Begins the batch's transaction and runs its bodies and audit hand-overs.
  // Unless `isolate`, it stops at the first body that fails, whose changes
  // only a rollback of the whole transaction undoes. Returns what left the
  // transaction unusable; the bodies' own results land in *results.
  Status run_bodies(const std::vector<Pending*>& batch, bool isolate, SqliteWriteTxn& txn,
                    std::vector<Status>* results, int64_t* failed) {
    Status batch_status = run(writer_, "BEGIN IMMEDIATE");
    if (batch_status) {
      sqlite3_stmt* raw = nullptr;
      batch_status = writer_.prepare("UPDATE storage_meta SET value = ?1 WHERE key = 'last_commit_us'", &raw);
      if (batch_status) {
        Stmt st(raw);
        st.bind(1, txn.now_us());
        if (st.step() != SQLITE_DONE) batch_status = sqlite::error(writer_.db(), "recording the commit time");
      }
    }
    for (size_t i = 0; i < batch.size() && batch_status; ++i) {
      if (!batch[i]->body) {
        Status s = run_audit(batch[i]->audit, &batch_status);
        if (!s) ++*failed;
        (*results)[i] = std::move(s);
        continue;
      }
      if (isolate) {
        if (Status s = run(writer_, "SAVEPOINT body"); !s) return s;
      }
      txn.begin_body();
      Status s;
      try {
        s = (*batch[i]->body)(txn);
      } catch (const std::exception&) {
        s = internal("a write body threw an exception; its changes were rolled back");
      } catch (...) {
        s = internal("a write body threw; its changes were rolled back");
      }
      Status broken = txn.end_body();
      if (s && !broken) s = broken;
      if (!s) ++*failed;
      (*results)[i] = std::move(s);
      if (!isolate) {
        if (*failed) return batch_status;
        continue;
      }
      if (!(*results)[i]) {
        if (Status r = run(writer_, "ROLLBACK TO body"); !r) return r;
      }
      if (Status r = run(writer_, "RELEASE body"); !r) return r;
    }
    return batch_status;
  }

  // Appends one hand-over of audit records inside the batch. A single record needs
  // no savepoint (a failed INSERT undoes itself); several share one so that
  // a hand-over is all or nothing. Errors that leave the transaction unusable
  // land in *batch_status.
  Status run_audit(const std::vector<const sqlite::JournalEntry*>& entries, Status* batch_status) {
    const bool several = entries.size() > 1;
    sqlite::AuditChainHead saved;
    if (several) {
      if (Status s = run(writer_, "SAVEPOINT audit"); !s) {
        *batch_status = s;
        return s;
      }
      saved = audit_head_;
    }
    bool broken = false;
    Status s = sqlite::insert_audit_records(writer_, &audit_head_, entries, &broken);
    if (several) {
      Status r = s ? Status::ok() : run(writer_, "ROLLBACK TO audit");
      if (r) r = run(writer_, "RELEASE audit");
      if (!s) audit_head_ = std::move(saved);
      if (!r) *batch_status = r;
    } else if (broken) {
      *batch_status = s;
    }
    return s;
  }

  // After finish() the caller may return and destroy its Pending.
  static void acknowledge(const std::vector<Pending*>& batch, std::vector<Status>& results) {
    for (size_t i = 0; i < batch.size(); ++i) batch[i]->finish(std::move(results[i]));
  }

  // Each sync thread flushes the WAL as of the newest commit no flush has
  // covered yet, then acknowledges every batch committed before that flush
  // began. Flushes from several threads overlap.
  void sync_loop() {
    pthread_setname_np(pthread_self(), "espace-sync");
    std::unique_lock lock(sync_mutex_);
    for (;;) {
      sync_cv_.wait(lock, [&] { return sync_stopping_ || committed_seq_ > sync_started_upto_; });
      if (committed_seq_ <= sync_started_upto_) return;  // stopping; others flush what they started
      int64_t target = committed_seq_;
      sync_started_upto_ = target;
      lock.unlock();
      int rc = ::fdatasync(wal_fd_);
      lock.lock();
      fsyncs_.fetch_add(1);
      std::vector<CommittedBatch> done;
      if (rc != 0) {
        // After a failed fsync the kernel may have dropped the dirty pages;
        // nothing written since can be trusted to be durable.
        sync_failed_ = true;
        while (!awaiting_sync_.empty()) {
          done.push_back(std::move(awaiting_sync_.front()));
          awaiting_sync_.pop_front();
        }
        Status failure = internal("fsync of the write-ahead log failed; this write may not be durable");
        for (CommittedBatch& b : done)
          for (Status& r : b.results)
            if (r) r = failure;
      } else {
        durable_upto_ = std::max(durable_upto_, target);
        while (!awaiting_sync_.empty() && awaiting_sync_.front().seq <= durable_upto_) {
          done.push_back(std::move(awaiting_sync_.front()));
          awaiting_sync_.pop_front();
        }
      }
      lock.unlock();
      flushed_cv_.notify_one();
      durable_cv_.notify_all();
      for (CommittedBatch& b : done) acknowledge(b.pending, b.results);
      lock.lock();
    }
  }

  // Runs on the writer thread after each commit.
  static int on_wal_commit(void* self_ptr, sqlite3* db, const char*, int frames) {
    auto* self = static_cast<SqliteStorageImpl*>(self_ptr);
    if (frames >= kWriterCheckpointFrames) {
      // Busy (the background checkpointer is running) is fine: next commit retries.
      sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      self->checkpoints_.fetch_add(1);
      self->frames_at_last_wakeup_ = 0;
    } else if (frames >= self->frames_at_last_wakeup_ + kCheckpointFrames || frames < self->frames_at_last_wakeup_) {
      // Once per kCheckpointFrames of growth, not after every commit.
      self->frames_at_last_wakeup_ = frames;
      {
        std::lock_guard lock(self->checkpoint_mutex_);
        self->checkpoint_frames_ = frames;
      }
      self->checkpoint_cv_.notify_one();
    }
    return SQLITE_OK;
  }

  void checkpoint_loop() {
    pthread_setname_np(pthread_self(), "espace-ckpt");
    std::unique_lock lock(checkpoint_mutex_);
    for (;;) {
      checkpoint_cv_.wait(lock, [&] { return checkpoint_stopping_ || checkpoint_frames_ > 0; });
      if (checkpoint_stopping_) return;
      checkpoint_frames_ = 0;
      lock.unlock();
      // PASSIVE never blocks the writer or readers.
      sqlite3_wal_checkpoint_v2(checkpointer_.db(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      checkpoints_.fetch_add(1);
      lock.lock();
    }
  }

  SqliteOptions opts_;
  Connection writer_;  // used only by the writer thread once it runs
  ReaderPool readers_;
  int64_t last_commit_us_ = 0;
  int64_t next_res_key_ = 1;

  mutable std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<Pending*> queue_;
  bool writer_idle_ = false;  // the writer waits on queue_cv_ (an empty queue)
  bool stopping_ = false;
  sqlite::AuditChainHead audit_head_;  // writer thread only (and open())
  sqlite::AuditJournal journal_;
  std::thread writer_thread_;
  std::thread::id writer_thread_id_;

  // Sync stage (own_fsync_): committed batches waiting for a WAL flush.
  struct CommittedBatch {
    int64_t seq;
    std::vector<Pending*> pending;
    std::vector<Status> results;
  };
  bool own_fsync_ = false;
  int wal_fd_ = -1;
  std::mutex sync_mutex_;
  std::condition_variable sync_cv_;
  std::condition_variable flushed_cv_;  // the writer waits here when too far ahead
  std::condition_variable durable_cv_;  // the audit journal waits here for a commit's flush
  std::deque<CommittedBatch> awaiting_sync_;
  int64_t committed_seq_ = 0;       // batches committed so far
  int64_t sync_started_upto_ = 0;   // newest batch covered by a flush in progress or done
  int64_t durable_upto_ = 0;        // newest batch covered by a finished flush
  bool sync_stopping_ = false;
  std::atomic<bool> sync_failed_{false};
  std::vector<std::thread> sync_threads_;

  Connection checkpointer_;
  std::mutex checkpoint_mutex_;
  std::condition_variable checkpoint_cv_;
  int checkpoint_frames_ = 0;  // WAL size reported by the last commit that asked for a checkpoint
  int frames_at_last_wakeup_ = 0;  // writer thread only
  int isolated_batches_left_ = 0;  // writer thread only (run_batch)
  bool checkpoint_stopping_ = false;
  std::thread checkpoint_thread_;

  std::array<std::atomic<uint64_t>, kGenerationSlots> generations_;
  std::atomic<int64_t> batches_{0}, bodies_{0}, failed_bodies_{0}, failed_commits_{0}, largest_batch_{0};
  std::atomic<int64_t> rerun_batches_{0};
  std::atomic<int64_t> fsyncs_{0}, checkpoints_{0}, writer_cpu_us_{0};
};

}  // namespace

bool Storage::write_generation(std::string_view, uint64_t*) const { return false; }

Status open_sqlite(const SqliteOptions& opts, std::unique_ptr<Storage>* out) {
  out->reset();
  if (opts.path.empty()) return invalid("no database path given");
  if (opts.reader_connections < 1 || opts.reader_connections > 256)
    return invalid("reader_connections must be between 1 and 256");
  if (opts.max_batch < 1) return invalid("max_batch must be at least 1");
  // Memory statistics cost a global mutex on every SQLite allocation; the
  // page cache layer spares the writer a walk of its whole cache at every
  // COMMIT (sqlite_page_cache.h). Both only take effect if nothing in the
  // process has used SQLite yet.
  static std::once_flag configure_once;
  std::call_once(configure_once, [] {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    sqlite::install_page_cache_layer();
  });
  auto storage = std::make_unique<SqliteStorageImpl>(opts);
  if (Status s = storage->open(); !s) return s;
  *out = std::move(storage);
  return Status::ok();
}

}  // namespace espace::storage
