// Behaviour of the SQLite storage: versions, history, index rows, group
// commit that undoes a failed body alone, and the commit clock.
#include <sqlite3.h>
#include <unistd.h>

// GCC 12 at -O3 reports a short string literal assigned to a
// ResourceVersion's id inside the write lambdas below as "maybe used
// uninitialized" (in std::string's small buffer), and which lambda it picks
// changes with any edit of this file. A false positive: silenced here only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "espace/storage/sqlite_storage.h"
#include "temp_db.h"

using namespace espace::storage;
using espace::fhir::ErrorCategory;

namespace {

// A database file under /tmp removed (with its WAL files) at scope exit.
using espace::testing::TempDb;

std::unique_ptr<Storage> open_db(const std::string& path, int max_batch = 256) {
  SqliteOptions opts;
  opts.path = path;
  opts.reader_connections = 4;
  opts.max_batch = max_batch;
  std::unique_ptr<Storage> s;
  Status st = open_sqlite(opts, &s);
  INFO(st.message());
  REQUIRE(st.is_ok());
  REQUIRE(s);
  return s;
}

std::string body_for(const std::string& type, const std::string& id, int64_t version) {
  return R"({"resourceType":")" + type + R"(","id":")" + id + R"(","meta":{"versionId":")" +
         std::to_string(version) + R"("}})";
}

// Writes the next version of type/id (create or update) in its own transaction.
Status put_next(Storage& s, const std::string& type, const std::string& id, std::vector<IndexEntry> index = {},
                bool deleted = false, int64_t* version_out = nullptr) {
  return s.write([&](WriteTxn& txn) -> Status {
    std::optional<ResourceVersion> cur;
    if (Status st = txn.current(type, id, &cur); !st) return st;
    ResourceVersion v;
    v.type = type;
    v.id = id;
    v.version = cur ? cur->version + 1 : 1;
    v.last_updated_us = txn.now_us();
    v.deleted = deleted;
    v.method = deleted ? "DELETE" : (cur ? "PUT" : "POST");
    if (!deleted) v.json = body_for(type, id, v.version);
    if (version_out) *version_out = v.version;
    return txn.put(v, index);
  });
}

// Built with += : GCC 12 warns falsely (-Wrestrict) on "literal" + std::string at -O3.
std::string writer_id(int i) {
  std::string id = "w";
  id += std::to_string(i);
  return id;
}

IndexEntry token(const std::string& param, const std::string& system, const std::string& value) {
  IndexEntry e;
  e.param = param;
  e.kind = "token";
  e.system = system;
  e.value = value;
  return e;
}

int64_t pragma_int(const std::string& path, const char* pragma) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, pragma, -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

// SQLite's plan for `sql`, its steps' details one per line.
std::string query_plan(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, ("EXPLAIN QUERY PLAN " + sql).c_str(), -1, &st, nullptr) == SQLITE_OK);
  std::string plan;
  while (sqlite3_step(st) == SQLITE_ROW) plan += std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 3))) + "\n";
  sqlite3_finalize(st);
  sqlite3_close(db);
  return plan;
}

void exec_raw(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
}

// A database this version writes with `patients` (id and index rows), then
// put back by `downgrade` to an older schema as that version wrote it.
void write_then_downgrade(const std::string& path,
                          const std::vector<std::pair<std::string, std::vector<IndexEntry>>>& patients,
                          const char* downgrade) {
  {
    auto s = open_db(path);
    for (const auto& [id, index] : patients) REQUIRE(put_next(*s, "Patient", id, index).is_ok());
  }
  exec_raw(path, downgrade);
}

}  // namespace

TEST_CASE("a created resource can be read and version-read", "[storage]") {
  TempDb db;
  auto s = open_db(db.path);
  REQUIRE(put_next(*s, "Patient", "p1").is_ok());

  ResourceVersion v;
  REQUIRE(s->read("Patient", "p1", &v).is_ok());
  CHECK(v.type == "Patient");
  CHECK(v.id == "p1");
  CHECK(v.version == 1);
  CHECK_FALSE(v.deleted);
  CHECK(v.method == "POST");
  CHECK(v.json == body_for("Patient", "p1", 1));
  CHECK(v.last_updated_us > 0);

  ResourceVersion v1;
  REQUIRE(s->vread("Patient", "p1", 1, &v1).is_ok());
  CHECK(v1.json == v.json);

  CHECK(s->read("Patient", "nope", &v).category() == ErrorCategory::NotFound);
  CHECK(s->read("Observation", "p1", &v).category() == ErrorCategory::NotFound);
  CHECK(s->vread("Patient", "p1", 2, &v).category() == ErrorCategory::NotFound);
  CHECK(s->read("", "p1", &v).category() == ErrorCategory::Invalid);
}

TEST_CASE("versions are immutable and numbered without gaps", "[storage]") {
  TempDb db;
  auto s = open_db(db.path);
  REQUIRE(put_next(*s, "Patient", "p1").is_ok());
  REQUIRE(put_next(*s, "Patient", "p1").is_ok());

  ResourceVersion cur;
  REQUIRE(s->read("Patient", "p1", &cur).is_ok());
  CHECK(cur.version == 2);
  CHECK(cur.method == "PUT");
  CHECK(cur.json == body_for("Patient", "p1", 2));
  ResourceVersion old;
  REQUIRE(s->vread("Patient", "p1", 1, &old).is_ok());
  CHECK(old.json == body_for("Patient", "p1", 1));

  auto put_version = [&](const std::string& id, int64_t version) {
    return s->write([&](WriteTxn& txn) {
      ResourceVersion v;
      v.type = "Patient";
      v.id = id;
      v.version = version;
      v.last_updated_us = txn.now_us();
      v.method = "PUT";
      v.json = R"({"resourceType":"Patient","overwritten":true})";
      return txn.put(v, {});
    });
  };
  CHECK(put_version("p1", 1).category() == ErrorCategory::Conflict);  // rewriting history
  CHECK(put_version("p1", 2).category() == ErrorCategory::Conflict);
  CHECK(put_version("p1", 4).category() == ErrorCategory::Conflict);  // a gap
  CHECK(put_version("p2", 2).category() == ErrorCategory::Conflict);  // a new id starts at 1

  REQUIRE(s->vread("Patient", "p1", 1, &old).is_ok());
  CHECK(old.json == body_for("Patient", "p1", 1));
  REQUIRE(s->read("Patient", "p1", &cur).is_ok());
  CHECK(cur.version == 2);
  CHECK(s->read("Patient", "p2", &cur).category() == ErrorCategory::NotFound);
}

TEST_CASE("put rejects malformed versions", "[storage]") {
  TempDb db;
  auto s = open_db(db.path);
  auto try_put = [&](ResourceVersion v) {
    return s->write([&](WriteTxn& txn) { return txn.put(v, {}); });
  };
  ResourceVersion good;
  good.type = "Patient";
  good.id = "x";
  good.version = 1;
  good.method = "POST";
  good.json = "{}";

  ResourceVersion no_id = good;
  no_id.id.clear();
  CHECK(try_put(no_id).category() == ErrorCategory::Invalid);
  ResourceVersion delete_with_body = good;
  delete_with_body.deleted = true;
  CHECK(try_put(delete_with_body).category() == ErrorCategory::Invalid);
  ResourceVersion no_body = good;
  no_body.json.clear();
  CHECK(try_put(no_body).category() == ErrorCategory::Invalid);
  ResourceVersion no_method = good;
  no_method.method.clear();
  CHECK(try_put(no_method).category() == ErrorCategory::Invalid);
  CHECK(try_put(good).is_ok());
}

TEST_CASE("delete markers are current versions without a body", "[storage]") {
  TempDb db;
  auto s = open_db(db.path);
  REQUIRE(put_next(*s, "Patient", "p1").is_ok());
  REQUIRE(put_next(*s, "Patient", "p1", {}, /*deleted=*/true).is_ok());

  ResourceVersion v;
  REQUIRE(s->read("Patient", "p1", &v).is_ok());
  CHECK(v.deleted);
  CHECK(v.version == 2);
  CHECK(v.json.empty());
  CHECK(v.method == "DELETE");

  // A write after the delete brings it back as version 3.
  REQUIRE(put_next(*s, "Patient", "p1").is_ok());
  REQUIRE(s->read("Patient", "p1", &v).is_ok());
  CHECK_FALSE(v.deleted);
  CHECK(v.version == 3);

  HistoryPage page;
  HistoryQuery q;
  q.type = "Patient";
  q.id = "p1";
  REQUIRE(s->history(q, &page).is_ok());
  REQUIRE(page.versions.size() == 3);
  CHECK(page.versions[1].deleted);
  CHECK(page.versions[1].json.empty());
  CHECK(page.versions[1].method == "DELETE");
  CHECK_FALSE(page.versions[0].json.empty());
}

TEST_CASE("index rows follow the current version", "[storage]") {
  TempDb db;
  auto s = open_db(db.path);
  std::vector<std::string> ids;

  REQUIRE(put_next(*s, "Patient", "p1", {token("identifier", "urn:sys", "A"), token("gender", "", "female")}).is_ok());
  REQUIRE(put_next(*s, "Patient", "p2", {token("identifier", "urn:other", "A")}).is_ok());
  REQUIRE(put_next(*s, "Observation", "o1", {token("identifier", "urn:sys", "A")}).is_ok());

  REQUIRE(s->find_by_token("Patient", "identifier", "urn:sys", "A", &ids).is_ok());
  CHECK(ids == std::vector<std::string>{"p1"});
  REQUIRE(s->find_by_token("Patient", "identifier", "", "A", &ids).is_ok());
  CHECK(ids == std::vector<std::string>{"p1", "p2"});
  REQUIRE(s->find_by_token("Patient", "gender", "", "female", &ids).is_ok());
  CHECK(ids == std::vector<std::string>{"p1"});
  REQUIRE(s->find_by_token("Patient", "identifier", "urn:sys", "a", &ids).is_ok());
  CHECK(ids.empty());  // exact match: codes are case-sensitive

  // An update replaces all index rows of p1.
  REQUIRE(put_next(*s, "Patient", "p1", {token("identifier", "urn:sys", "B")}).is_ok());
  REQUIRE(s->find_by_token("Patient", "identifier", "urn:sys", "A", &ids).is_ok());
  CHECK(ids.empty());
  REQUIRE(s->find_by_token("Patient", "gender", "", "female", &ids).is_ok());
  CHECK(ids.empty());
  REQUIRE(s->find_by_token("Patient", "identifier", "urn:sys", "B", &ids).is_ok());
  CHECK(ids == std::vector<std::string>{"p1"});

  // A deleted resource is never found, even if rows were passed with the delete.
  REQUIRE(put_next(*s, "Patient", "p1", {token("identifier", "urn:sys", "B")}, /*deleted=*/true).is_ok());
  REQUIRE(s->find_by_token("Patient", "identifier", "urn:sys", "B", &ids).is_ok());
  CHECK(ids.empty());
  // Other resources are untouched.
  REQUIRE(s->find_by_token("Observation", "identifier", "urn:sys", "A", &ids).is_ok());
  CHECK(ids == std::vector<std::string>{"o1"});

  // Duplicate rows in one resource give the id once.
  REQUIRE(put_next(*s, "Patient", "p3", {token("identifier", "urn:x", "D"), token("identifier", "urn:x", "D")}).is_ok());
  REQUIRE(s->find_by_token("Patient", "identifier", "urn:x", "D", &ids).is_ok());
  CHECK(ids == std::vector<std::string>{"p3"});
}

TEST_CASE("index rows keep kind and numeric ranges", "[storage]") {
  TempDb db;
  auto s = open_db(db.path);
  IndexEntry date;
  date.param = "birthdate";
  date.kind = "date";
  date.low = 1.5e15;
  date.high = 1.6e15;
  REQUIRE(put_next(*s, "Patient", "p1", {date}).is_ok());
  s.reset();
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open_v2(db.path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(raw, "SELECT kind, low, high FROM search_index WHERE type='Patient' AND id='p1'", -1,
                             &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))) == "date");
  CHECK(sqlite3_column_double(st, 1) == 1.5e15);
  CHECK(sqlite3_column_double(st, 2) == 1.6e15);
  CHECK(sqlite3_step(st) == SQLITE_DONE);
  sqlite3_finalize(st);
  sqlite3_close(raw);
}

TEST_CASE("history is newest first, filtered, counted and paged", "[storage]") {
  TempDb db;
  auto s = open_db(db.path);
  // Interleaved writes: P/a v1, O/x v1, P/b v1, P/a v2, O/x v2, P/a v3 (deleted).
  struct Step {
    const char* type;
    const char* id;
    bool deleted;
  };
  std::vector<Step> steps = {{"Patient", "a", false},     {"Observation", "x", false}, {"Patient", "b", false},
                             {"Patient", "a", false},     {"Observation", "x", false}, {"Patient", "a", true}};
  std::vector<int64_t> stamps;
  for (const Step& st : steps) {
    REQUIRE(put_next(*s, st.type, st.id, {}, st.deleted).is_ok());
    ResourceVersion v;
    REQUIRE(s->read(st.type, st.id, &v).is_ok());
    stamps.push_back(v.last_updated_us);
  }

  HistoryPage page;
  HistoryQuery q;

  SECTION("instance") {
    q.type = "Patient";
    q.id = "a";
    REQUIRE(s->history(q, &page).is_ok());
    CHECK(page.total == 3);
    REQUIRE(page.versions.size() == 3);
    CHECK(page.versions[0].version == 3);
    CHECK(page.versions[0].deleted);
    CHECK(page.versions[1].version == 2);
    CHECK(page.versions[2].version == 1);
  }
  SECTION("type") {
    q.type = "Patient";
    REQUIRE(s->history(q, &page).is_ok());
    CHECK(page.total == 4);
    REQUIRE(page.versions.size() == 4);
    CHECK((page.versions[0].id == "a" && page.versions[0].version == 3));
    CHECK((page.versions[1].id == "a" && page.versions[1].version == 2));
    CHECK((page.versions[2].id == "b" && page.versions[2].version == 1));
    CHECK((page.versions[3].id == "a" && page.versions[3].version == 1));
  }
  SECTION("system") {
    REQUIRE(s->history(q, &page).is_ok());
    CHECK(page.total == 6);
    REQUIRE(page.versions.size() == 6);
    for (size_t i = 0; i < 6; ++i) {
      const Step& expected = steps[5 - i];
      CHECK(page.versions[i].type == expected.type);
      CHECK(page.versions[i].id == expected.id);
      CHECK(page.versions[i].last_updated_us == stamps[5 - i]);
    }
  }
  SECTION("since is inclusive and before is exclusive") {
    q.since_us = stamps[2];
    REQUIRE(s->history(q, &page).is_ok());
    CHECK(page.total == 4);
    REQUIRE(page.versions.size() == 4);
    CHECK(page.versions.back().last_updated_us == stamps[2]);

    q.before_us = stamps[4];
    REQUIRE(s->history(q, &page).is_ok());
    CHECK(page.total == 2);
    REQUIRE(page.versions.size() == 2);
    CHECK(page.versions[0].last_updated_us == stamps[3]);
    CHECK(page.versions[1].last_updated_us == stamps[2]);

    q = HistoryQuery{};
    q.type = "Patient";
    q.since_us = stamps[5] + 1;
    REQUIRE(s->history(q, &page).is_ok());
    CHECK(page.total == 0);
    CHECK(page.versions.empty());
    CHECK(page.last_seq == 0);
  }
  SECTION("paging with the sequence cursor visits every version once") {
    q.count = 4;
    REQUIRE(s->history(q, &page).is_ok());
    CHECK(page.total == 6);
    REQUIRE(page.versions.size() == 4);
    std::vector<std::pair<std::string, int64_t>> seen;
    for (auto& v : page.versions) seen.emplace_back(v.type + "/" + v.id, v.version);

    // A write between pages must not shift the next page.
    REQUIRE(put_next(*s, "Patient", "c").is_ok());
    q.before_seq = page.last_seq;
    REQUIRE(s->history(q, &page).is_ok());
    CHECK(page.total == 7);  // the total is not limited by the cursor
    REQUIRE(page.versions.size() == 2);
    for (auto& v : page.versions) seen.emplace_back(v.type + "/" + v.id, v.version);
    q.before_seq = page.last_seq;
    REQUIRE(s->history(q, &page).is_ok());
    CHECK(page.versions.empty());

    std::vector<std::pair<std::string, int64_t>> expected = {{"Patient/a", 3},     {"Observation/x", 2},
                                                             {"Patient/a", 2},     {"Patient/b", 1},
                                                             {"Observation/x", 1}, {"Patient/a", 1}};
    CHECK(seen == expected);
  }
  SECTION("count 0 gives only the total") {
    q.type = "Observation";
    q.count = 0;
    REQUIRE(s->history(q, &page).is_ok());
    CHECK(page.total == 2);
    CHECK(page.versions.empty());
  }
  SECTION("bad queries are rejected") {
    q.id = "a";  // no type
    CHECK(s->history(q, &page).category() == ErrorCategory::Invalid);
    q = HistoryQuery{};
    q.count = -1;
    CHECK(s->history(q, &page).category() == ErrorCategory::Invalid);
    q.count = kMaxHistoryCount + 1;
    CHECK(s->history(q, &page).category() == ErrorCategory::Invalid);
  }
}

TEST_CASE("a failing body leaves nothing behind", "[storage]") {
  TempDb db;
  auto s = open_db(db.path);
  Status st = s->write([](WriteTxn& txn) -> Status {
    ResourceVersion v;
    v.type = "Patient";
    v.id = "ghost";
    v.version = 1;
    v.method = "POST";
    v.json = "{}";
    v.last_updated_us = txn.now_us();
    if (Status p = txn.put(v, {token("identifier", "s", "ghost")}); !p) return p;
    return Status::error(ErrorCategory::Unprocessable, "business-rule", "refused after writing");
  });
  CHECK(st.category() == ErrorCategory::Unprocessable);
  ResourceVersion v;
  CHECK(s->read("Patient", "ghost", &v).category() == ErrorCategory::NotFound);
  std::vector<std::string> ids;
  REQUIRE(s->find_by_token("Patient", "identifier", "s", "ghost", &ids).is_ok());
  CHECK(ids.empty());
  HistoryPage page;
  REQUIRE(s->history(HistoryQuery{}, &page).is_ok());
  CHECK(page.total == 0);
}

TEST_CASE("bodies batched into one commit are isolated: a failed body is undone alone", "[storage]") {
  TempDb db;
  SqliteOptions opts;
  opts.path = db.path;
  opts.reader_connections = 2;
  std::unique_ptr<Storage> base;
  REQUIRE(open_sqlite(opts, &base).is_ok());
  auto* s = dynamic_cast<SqliteStorage*>(base.get());
  REQUIRE(s != nullptr);

  // A gate body holds the writer thread until all other writers have queued,
  // so they are guaranteed to share the next commit.
  constexpr int kWriters = 48;
  std::atomic<bool> gate_timed_out{false};
  std::atomic<bool> gate_running{false};
  std::thread gate([&] {
    Status st = s->write([&](WriteTxn&) {
      gate_running = true;
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (s->pending_writes() < kWriters) {
        if (std::chrono::steady_clock::now() > deadline) {
          gate_timed_out = true;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      return Status::ok();
    });
    CHECK(st.is_ok());
  });
  while (!gate_running) std::this_thread::yield();

  std::vector<Status> results(kWriters);
  std::vector<int64_t> stamps(kWriters, 0);
  std::vector<std::thread> writers;
  for (int i = 0; i < kWriters; ++i) {
    writers.emplace_back([&, i] {
      results[i] = s->write([&, i](WriteTxn& txn) -> Status {
        stamps[i] = txn.now_us();
        ResourceVersion v;
        v.type = "Patient";
        v.id = writer_id(i);
        v.version = 1;
        v.method = "POST";
        v.json = body_for("Patient", v.id, 1);
        v.last_updated_us = txn.now_us();
        if (Status p = txn.put(v, {token("identifier", "batch", v.id)}); !p) return p;
        switch (i % 4) {
          case 1:
            return Status::error(ErrorCategory::Unprocessable, "business-rule", "refused");
          case 2:
            throw std::runtime_error("body failure");
          default:
            return Status::ok();
        }
      });
    });
  }
  for (auto& t : writers) t.join();
  gate.join();
  REQUIRE_FALSE(gate_timed_out);

  WriteStats stats = s->write_stats();
  // The gate's own commit plus exactly one commit for all the writers.
  CHECK(stats.batches == 2);
  CHECK(stats.bodies == kWriters + 1);
  CHECK(stats.largest_batch == kWriters);
  CHECK(stats.failed_bodies == kWriters / 2);
  // The bodies first ran without savepoints; the first failure rolled the
  // commit back and the batch ran once more, each body in its own savepoint.
  CHECK(stats.rerun_batches == 1);

  for (int i = 0; i < kWriters; ++i) {
    INFO("writer " << i);
    ResourceVersion v;
    std::vector<std::string> ids;
    std::string id = writer_id(i);
    REQUIRE(s->find_by_token("Patient", "identifier", "batch", id, &ids).is_ok());
    CHECK(stamps[i] == stamps[0]);  // one batch, one commit time
    switch (i % 4) {
      case 1:
        CHECK(results[i].category() == ErrorCategory::Unprocessable);
        CHECK(s->read("Patient", id, &v).category() == ErrorCategory::NotFound);
        CHECK(ids.empty());
        break;
      case 2:
        CHECK(results[i].category() == ErrorCategory::Internal);
        CHECK(s->read("Patient", id, &v).category() == ErrorCategory::NotFound);
        CHECK(ids.empty());
        break;
      default:
        CHECK(results[i].is_ok());
        REQUIRE(s->read("Patient", id, &v).is_ok());
        CHECK(v.json == body_for("Patient", id, 1));
        CHECK(ids == std::vector<std::string>{id});
    }
  }
  // The writer survived the exceptions, and a commit without failures runs once.
  CHECK(put_next(*s, "Patient", "after").is_ok());
  CHECK(s->write_stats().rerun_batches == 1);
}

TEST_CASE("concurrent updates of one resource get consecutive versions", "[storage]") {
  TempDb db;
  auto s = open_db(db.path, 8);
  constexpr int kThreads = 12;
  constexpr int kPerThread = 25;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i)
        if (!put_next(*s, "Patient", "shared")) ++failures;
    });
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  ResourceVersion v;
  REQUIRE(s->read("Patient", "shared", &v).is_ok());
  CHECK(v.version == kThreads * kPerThread);
  HistoryQuery q;
  q.type = "Patient";
  q.id = "shared";
  q.count = kMaxHistoryCount;
  HistoryPage page;
  REQUIRE(s->history(q, &page).is_ok());
  CHECK(page.total == kThreads * kPerThread);
  REQUIRE(page.versions.size() == static_cast<size_t>(kThreads * kPerThread));
  for (size_t i = 0; i < page.versions.size(); ++i) {
    CHECK(page.versions[i].version == static_cast<int64_t>(page.versions.size() - i));
    if (i > 0) CHECK(page.versions[i].last_updated_us <= page.versions[i - 1].last_updated_us);
  }
}

TEST_CASE("the commit clock increases strictly, also across reopen", "[storage]") {
  TempDb db;
  std::vector<int64_t> stamps;
  {
    auto s = open_db(db.path);
    for (int i = 0; i < 50; ++i) {
      REQUIRE(s->write([&](WriteTxn& txn) {
                 int64_t first = txn.now_us();
                 if (txn.now_us() != first) return Status::error(ErrorCategory::Internal, "exception", "moved");
                 stamps.push_back(first);
                 return Status::ok();
               }).is_ok());
    }
  }
  for (size_t i = 1; i < stamps.size(); ++i) CHECK(stamps[i] > stamps[i - 1]);

  // A stored commit time far in the future (a clock that later went back)
  // still bounds the next commit.
  const int64_t future = stamps.back() + int64_t{3600} * 1000 * 1000;
  exec_raw(db.path, ("UPDATE storage_meta SET value = " + std::to_string(future) + " WHERE key='last_commit_us'").c_str());
  auto s = open_db(db.path);
  int64_t next = 0;
  REQUIRE(s->write([&](WriteTxn& txn) {
             next = txn.now_us();
             return Status::ok();
           }).is_ok());
  CHECK(next > future);
}

TEST_CASE("uncommitted writes are invisible to readers", "[storage]") {
  TempDb db;
  auto s = open_db(db.path);
  REQUIRE(put_next(*s, "Patient", "p1").is_ok());
  Status seen_new, seen_old;
  ResourceVersion old_view;
  REQUIRE(s->write([&](WriteTxn& txn) -> Status {
             ResourceVersion v;
             v.type = "Patient";
             v.id = "p2";
             v.version = 1;
             v.method = "POST";
             v.json = "{}";
             v.last_updated_us = txn.now_us();
             if (Status p = txn.put(v, {}); !p) return p;
             v.id = "p1";
             v.version = 2;
             v.method = "PUT";
             if (Status p = txn.put(v, {}); !p) return p;
             // The writer's own transaction sees its writes; readers do not yet.
             std::optional<ResourceVersion> in_txn;
             if (Status c = txn.current("Patient", "p2", &in_txn); !c || !in_txn) return c;
             ResourceVersion r;
             seen_new = s->read("Patient", "p2", &r);
             seen_old = s->read("Patient", "p1", &old_view);
             return Status::ok();
           }).is_ok());
  CHECK(seen_new.category() == ErrorCategory::NotFound);
  REQUIRE(seen_old.is_ok());
  CHECK(old_view.version == 1);
  ResourceVersion after;
  REQUIRE(s->read("Patient", "p2", &after).is_ok());
  REQUIRE(s->read("Patient", "p1", &after).is_ok());
  CHECK(after.version == 2);
}

TEST_CASE("misuse of the write API is an error, not a hang", "[storage]") {
  TempDb db;
  auto s = open_db(db.path);
  Status nested;
  REQUIRE(s->write([&](WriteTxn&) {
             nested = s->write([](WriteTxn&) { return Status::ok(); });
             return Status::ok();
           }).is_ok());
  CHECK(nested.category() == ErrorCategory::Internal);

  // Catching a Conflict from put and going on is allowed: nothing was written by it.
  REQUIRE(put_next(*s, "Patient", "p1").is_ok());
  REQUIRE(s->write([&](WriteTxn& txn) {
             ResourceVersion v;
             v.type = "Patient";
             v.id = "p1";
             v.version = 7;
             v.method = "PUT";
             v.json = "{}";
             v.last_updated_us = txn.now_us();
             Status conflict = txn.put(v, {});
             if (conflict.category() != ErrorCategory::Conflict) return Status::error(ErrorCategory::Internal, "exception", "expected a conflict");
             v.version = 2;
             return txn.put(v, {});
           }).is_ok());
  ResourceVersion v;
  REQUIRE(s->read("Patient", "p1", &v).is_ok());
  CHECK(v.version == 2);
}

TEST_CASE("data and schema survive reopening", "[storage]") {
  TempDb db;
  {
    auto s = open_db(db.path);
    REQUIRE(put_next(*s, "Patient", "p1", {token("identifier", "s", "v")}).is_ok());
    REQUIRE(put_next(*s, "Patient", "p1", {token("identifier", "s", "v2")}).is_ok());
  }
  CHECK(pragma_int(db.path, "PRAGMA user_version") == kSqliteSchemaVersion);
  auto s = open_db(db.path);
  ResourceVersion v;
  REQUIRE(s->read("Patient", "p1", &v).is_ok());
  CHECK(v.version == 2);
  std::vector<std::string> ids;
  REQUIRE(s->find_by_token("Patient", "identifier", "s", "v2", &ids).is_ok());
  CHECK(ids == std::vector<std::string>{"p1"});
  REQUIRE(put_next(*s, "Patient", "p1").is_ok());
  REQUIRE(s->read("Patient", "p1", &v).is_ok());
  CHECK(v.version == 3);
}

TEST_CASE("a version 4 database is migrated: the range index's WHERE becomes ORs", "[storage]") {
  TempDb db;
  {
    auto s = open_db(db.path);
    REQUIRE(put_next(*s, "Patient", "p1", {token("identifier", "s", "v")}).is_ok());
  }
  // Back to version 4 as it was written: the partial index with `kind IN (...)`.
  exec_raw(db.path,
           "DROP INDEX search_index_by_range;"
           "CREATE INDEX search_index_by_range ON search_index(type, param, low, high, id, kind)"
           "  WHERE kind IN ('date', 'number', 'quantity', 'composite');"
           "PRAGMA user_version=4;");
  auto s = open_db(db.path);
  CHECK(pragma_int(db.path, "PRAGMA user_version") == kSqliteSchemaVersion);
  CHECK(pragma_int(db.path,
                   "SELECT count(*) FROM sqlite_schema WHERE name = 'search_index_by_range' AND sql LIKE '%kind IN%'") == 0);
  CHECK(pragma_int(db.path,
                   "SELECT count(*) FROM sqlite_schema WHERE name = 'search_index_by_range' AND sql LIKE '%OR kind%'") == 1);
  std::vector<std::string> ids;
  REQUIRE(s->find_by_token("Patient", "identifier", "s", "v", &ids).is_ok());
  CHECK(ids == std::vector<std::string>{"p1"});
}

TEST_CASE("a version 5 database is migrated: the value index ends with res_key", "[storage]") {
  TempDb db;
  // Back to version 5 as it was written: the value index without res_key.
  write_then_downgrade(db.path, {{"p1", {token("identifier", "s", "v")}}, {"p2", {token("identifier", "s", "v")}}},
                       "DROP INDEX search_index_by_value;"
                       "CREATE INDEX search_index_by_value ON search_index(type, param, value, system);"
                       "PRAGMA user_version=5;");
  auto s = open_db(db.path);
  CHECK(pragma_int(db.path, "PRAGMA user_version") == kSqliteSchemaVersion);
  CHECK(pragma_int(db.path, "SELECT count(*) FROM pragma_index_info('search_index_by_value') WHERE name = 'res_key'") ==
        1);
  std::vector<std::string> ids;
  REQUIRE(s->find_by_token("Patient", "identifier", "s", "v", &ids).is_ok());
  std::sort(ids.begin(), ids.end());
  CHECK(ids == std::vector<std::string>{"p1", "p2"});
  REQUIRE(put_next(*s, "Patient", "p3", {token("identifier", "s", "v")}).is_ok());
  REQUIRE(s->find_by_token("Patient", "identifier", "s", "v", &ids).is_ok());
  CHECK(ids.size() == 3);
}

TEST_CASE("a version 6 database is migrated: the value index ends with kind", "[storage]") {
  TempDb db;
  // Back to version 6 as it was written: the value index without kind.
  write_then_downgrade(db.path, {{"p1", {token("identifier", "s", "v")}}, {"p2", {token("identifier", "s", "w")}}},
                       "DROP INDEX search_index_by_value;"
                       "CREATE INDEX search_index_by_value ON search_index(type, param, value, system, res_key);"
                       "PRAGMA user_version=6;");
  auto s = open_db(db.path);
  CHECK(pragma_int(db.path, "PRAGMA user_version") == kSqliteSchemaVersion);
  CHECK(pragma_int(db.path, "SELECT seqno FROM pragma_index_info('search_index_by_value') WHERE name = 'kind'") == 5);
  CHECK(pragma_int(db.path, "SELECT count(*) FROM pragma_index_info('search_index_by_value')") == 6);
  // A test on value and kind reads the index alone, no table row.
  CHECK_THAT(query_plan(db.path, "SELECT res_key FROM search_index WHERE type = 'Patient' AND param = 'identifier' "
                                 "AND value = 'v' AND kind = 'token'"),
             Catch::Matchers::Contains("COVERING INDEX search_index_by_value"));
  std::vector<std::string> ids;
  REQUIRE(s->find_by_token("Patient", "identifier", "s", "v", &ids).is_ok());
  CHECK(ids == std::vector<std::string>{"p1"});
  REQUIRE(put_next(*s, "Patient", "p3", {token("identifier", "s", "v")}).is_ok());
  REQUIRE(s->find_by_token("Patient", "identifier", "s", "v", &ids).is_ok());
  std::sort(ids.begin(), ids.end());
  CHECK(ids == std::vector<std::string>{"p1", "p3"});
}

TEST_CASE("a version 7 database is migrated: a resource's rows are tested in the index alone", "[storage]") {
  TempDb db;
  // Back to version 7 as it was written: the per-resource index on res_key alone.
  write_then_downgrade(db.path,
                       {{"p1", {token("identifier", "s", "v"), token("gender", "g", "female")}},
                        {"p2", {token("identifier", "s", "v"), token("gender", "g", "male")}}},
                       "DROP INDEX search_index_by_resource;"
                       "CREATE INDEX search_index_by_resource ON search_index(res_key);"
                       "PRAGMA user_version=7;");
  auto s = open_db(db.path);
  CHECK(pragma_int(db.path, "PRAGMA user_version") == kSqliteSchemaVersion);
  CHECK(pragma_int(db.path, "SELECT count(*) FROM pragma_index_info('search_index_by_resource')") == 5);
  CHECK_THAT(query_plan(db.path, "SELECT 1 FROM search_index WHERE res_key = 1 AND param = 'gender' AND kind = 'token' "
                                 "AND value = 'female'"),
             Catch::Matchers::Contains("COVERING INDEX search_index_by_resource"));
  // Rows still follow their resource: an update replaces them.
  REQUIRE(put_next(*s, "Patient", "p2", {token("identifier", "s", "w")}).is_ok());
  std::vector<std::string> ids;
  REQUIRE(s->find_by_token("Patient", "identifier", "s", "v", &ids).is_ok());
  CHECK(ids == std::vector<std::string>{"p1"});
  REQUIRE(s->find_by_token("Patient", "gender", "g", "male", &ids).is_ok());
  CHECK(ids.empty());
}

TEST_CASE("a version 8 database is migrated: a date range gives its keys from the index", "[storage]") {
  TempDb db;
  IndexEntry born;
  born.param = "birthdate";
  born.kind = "date";
  born.low = 100;
  born.high = 199;
  IndexEntry later = born;
  later.low = 300;
  later.high = 399;
  // Back to version 8 as it was written: the range index without res_key.
  write_then_downgrade(db.path, {{"p1", {born}}, {"p2", {later}}},
                       "DROP INDEX search_index_by_range;"
                       "CREATE INDEX search_index_by_range ON search_index(type, param, low, high, id, kind)"
                       "  WHERE kind = 'date' OR kind = 'number' OR kind = 'quantity' OR kind = 'composite';"
                       "PRAGMA user_version=8;");
  auto s = open_db(db.path);
  CHECK(pragma_int(db.path, "PRAGMA user_version") == 9);
  CHECK(pragma_int(db.path, "SELECT seqno FROM pragma_index_info('search_index_by_range') WHERE name = 'res_key'") == 6);
  CHECK_THAT(query_plan(db.path, "SELECT DISTINCT res_key FROM search_index WHERE type = 'Patient' AND param = "
                                 "'birthdate' AND kind = 'date' AND (kind = 'date' OR kind = 'number' OR kind = "
                                 "'quantity' OR kind = 'composite') AND low >= 0 AND low <= 250"),
             Catch::Matchers::Contains("COVERING INDEX search_index_by_range"));
  CHECK(pragma_int(db.path, "SELECT count(*) FROM search_index WHERE param = 'birthdate' AND (kind = 'date' OR kind = "
                            "'number' OR kind = 'quantity' OR kind = 'composite') AND low >= 0 AND low <= 250") == 1);
}

TEST_CASE("open refuses foreign and newer databases and bad options", "[storage]") {
  std::unique_ptr<Storage> s;
  SqliteOptions opts;

  SECTION("a newer schema") {
    TempDb db;
    { open_db(db.path); }
    exec_raw(db.path, "PRAGMA user_version=99");
    opts.path = db.path;
    Status st = open_sqlite(opts, &s);
    CHECK(st.category() == ErrorCategory::Internal);
    CHECK(st.message().find("99") != std::string::npos);
    CHECK_FALSE(s);
  }
  SECTION("a database of something else") {
    TempDb db;
    exec_raw(db.path, "CREATE TABLE unrelated(x)");
    opts.path = db.path;
    CHECK_FALSE(open_sqlite(opts, &s).is_ok());
    CHECK_FALSE(s);
  }
  SECTION("a path that cannot be created") {
    opts.path = "/nonexistent-dir-for-espace/x.db";
    CHECK_FALSE(open_sqlite(opts, &s).is_ok());
  }
  SECTION("options") {
    TempDb db;
    opts.path = db.path;
    opts.reader_connections = 0;
    CHECK(open_sqlite(opts, &s).category() == ErrorCategory::Invalid);
    opts.reader_connections = 2;
    opts.max_batch = 0;
    CHECK(open_sqlite(opts, &s).category() == ErrorCategory::Invalid);
    opts.max_batch = 1;
    opts.path.clear();
    CHECK(open_sqlite(opts, &s).category() == ErrorCategory::Invalid);
  }
}

TEST_CASE("the database file is in WAL mode", "[storage]") {
  TempDb db;
  SqliteOptions opts;
  opts.path = db.path;
  std::unique_ptr<Storage> s;
  REQUIRE(open_sqlite(opts, &s).is_ok());
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open_v2(db.path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))) == "wal");
  sqlite3_finalize(st);
  sqlite3_close(raw);
}

TEST_CASE("each sync mode acknowledges writes and counts its flushes", "[storage]") {
  struct Mode {
    bool full, overlap;
  };
  for (Mode mode : {Mode{true, true}, Mode{true, false}, Mode{false, true}}) {
    INFO("synchronous_full " << mode.full << ", overlap_fsync " << mode.overlap);
    TempDb db;
    SqliteOptions opts;
    opts.path = db.path;
    opts.reader_connections = 2;
    opts.synchronous_full = mode.full;
    opts.overlap_fsync = mode.overlap;
    std::unique_ptr<Storage> base;
    REQUIRE(open_sqlite(opts, &base).is_ok());
    auto* s = dynamic_cast<SqliteStorage*>(base.get());
    REQUIRE(s != nullptr);
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < 8; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < 10; ++i)
          if (!put_next(*s, "Patient", writer_id(t * 100 + i))) ++failures;
      });
    for (auto& t : threads) t.join();
    CHECK(failures == 0);
    WriteStats stats = s->write_stats();
    CHECK(stats.bodies == 80);
    if (mode.full && mode.overlap) {
      // Every commit is covered by a flush, and one flush may cover several.
      CHECK(stats.fsyncs >= 1);
      CHECK(stats.fsyncs <= stats.batches);
    } else {
      CHECK(stats.fsyncs == 0);
    }
    base.reset();  // shutdown acknowledges everything and closes cleanly
    auto again = open_db(db.path);
    ResourceVersion v;
    for (int t = 0; t < 8; ++t)
      for (int i = 0; i < 10; ++i) CHECK(again->read("Patient", writer_id(t * 100 + i), &v).is_ok());
  }
}

TEST_CASE("a growing log is checkpointed in the background", "[storage]") {
  TempDb db;
  SqliteOptions opts;
  opts.path = db.path;
  opts.reader_connections = 2;
  opts.synchronous_full = false;  // no fsync per commit: this test is about volume
  std::unique_ptr<Storage> base;
  REQUIRE(open_sqlite(opts, &base).is_ok());
  auto* s = dynamic_cast<SqliteStorage*>(base.get());
  REQUIRE(s != nullptr);
  // Each commit writes at least a few pages; 1500 commits pass the
  // background checkpointer's threshold of 1000 log pages.
  std::string body = R"({"resourceType":"Binary","data":")";
  body.append(3000, 'x');
  body += "\"}";
  for (int i = 0; i < 1500; ++i) {
    ResourceVersion v;
    v.type = "Binary";
    v.id = writer_id(i);
    v.version = 1;
    v.method = "POST";
    v.json = body;
    std::vector<IndexEntry> index = {token("identifier", "urn:ck", v.id)};
    REQUIRE(s->write([&](WriteTxn& txn) {
               v.last_updated_us = txn.now_us();
               return txn.put(v, index);
             }).is_ok());
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (s->write_stats().checkpoints == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(s->write_stats().checkpoints > 0);
  ResourceVersion v;
  REQUIRE(s->read("Binary", writer_id(0), &v).is_ok());
  REQUIRE(s->read("Binary", writer_id(1499), &v).is_ok());
  base.reset();
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open_v2(db.path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(raw, "PRAGMA integrity_check", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))) == "ok");
  sqlite3_finalize(st);
  sqlite3_close(raw);
}

TEST_CASE("write generations change with each committed write of the type, before it is acknowledged", "[sqlite]") {
  TempDb db;
  auto s = open_db(db.path);
  uint64_t patient0 = 0, consent0 = 0;
  REQUIRE(s->write_generation("Patient", &patient0));
  REQUIRE(s->write_generation("Consent", &consent0));
  auto put = [&](const std::string& type, const std::string& id, int64_t version) {
    return s->write([&](WriteTxn& txn) {
      ResourceVersion v;
      v.type = type;
      v.id = id;
      v.version = version;
      v.method = "PUT";
      v.last_updated_us = txn.now_us();
      v.json = R"({"resourceType":")" + type + R"("})";
      return txn.put(v, {});
    });
  };
  REQUIRE(put("Patient", "g1", 1).is_ok());
  uint64_t patient1 = 0, consent1 = 0;
  REQUIRE(s->write_generation("Patient", &patient1));
  REQUIRE(s->write_generation("Consent", &consent1));
  CHECK(patient1 != patient0);
  REQUIRE(put("Consent", "c1", 1).is_ok());
  uint64_t consent2 = 0;
  REQUIRE(s->write_generation("Consent", &consent2));
  CHECK(consent2 != consent1);
  // Reads and failed bodies that wrote nothing leave them alone.
  uint64_t before_read = 0, patient2 = 0;
  REQUIRE(s->write_generation("Patient", &before_read));
  ResourceVersion read_back;
  REQUIRE(s->read("Patient", "g1", &read_back).is_ok());
  CHECK(read_back.version == 1);
  CHECK_FALSE(s->write([](WriteTxn&) { return Status::error(espace::fhir::ErrorCategory::Invalid, "invalid", "no"); }));
  REQUIRE(s->write_generation("Patient", &patient2));
  CHECK(patient2 == before_read);

  // Another storage never reports the same numbers.
  TempDb other_db;
  auto other = open_db(other_db.path);
  uint64_t other_patient = 0;
  REQUIRE(other->write_generation("Patient", &other_patient));
  CHECK(other_patient != patient0);
  CHECK(other_patient != patient2);
}

TEST_CASE("expunge erases every version and the index rows of one resource", "[storage]") {
  TempDb db;
  auto s = open_db(db.path);
  std::vector<std::string> ids;
  REQUIRE(put_next(*s, "Observation", "gone", {token("code", "http://loinc.org", "2339-0")}).is_ok());
  REQUIRE(put_next(*s, "Observation", "gone", {token("code", "http://loinc.org", "2339-0")}).is_ok());
  REQUIRE(put_next(*s, "Observation", "kept", {token("code", "http://loinc.org", "2339-0")}).is_ok());

  REQUIRE(s->write([](WriteTxn& txn) { return txn.expunge("Observation", "gone"); }).is_ok());

  ResourceVersion v;
  CHECK(s->read("Observation", "gone", &v).category() == ErrorCategory::NotFound);
  CHECK(s->vread("Observation", "gone", 1, &v).category() == ErrorCategory::NotFound);
  HistoryQuery hq;
  hq.type = "Observation";
  hq.id = "gone";
  HistoryPage page;
  REQUIRE(s->history(hq, &page).is_ok());
  CHECK(page.versions.empty());
  CHECK(page.total == 0);
  REQUIRE(s->find_by_token("Observation", "code", "http://loinc.org", "2339-0", &ids).is_ok());
  CHECK(ids == std::vector<std::string>{"kept"});
  REQUIRE(s->read("Observation", "kept", &v).is_ok());

  // The id is unknown again: a new resource under it starts at version 1.
  int64_t version = 0;
  REQUIRE(put_next(*s, "Observation", "gone", {}, false, &version).is_ok());
  CHECK(version == 1);

  // Nothing to erase, and the audit trail is never erased.
  CHECK(s->write([](WriteTxn& txn) { return txn.expunge("Observation", "never"); }).category() ==
        ErrorCategory::NotFound);
  CHECK(s->write([](WriteTxn& txn) { return txn.expunge("AuditEvent", "a1"); }).category() ==
        ErrorCategory::NotAllowed);
}
