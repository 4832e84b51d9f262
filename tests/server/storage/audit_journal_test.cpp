// The audit journal of the SQLite storage (sqlite_audit_journal.h): records
// are durable in "<db>-audit" when acknowledged, reach the audit table in
// batches, survive kill -9 in either place, and a journal left behind is
// replayed — a torn last frame dropped, a broken earlier frame refused.
#include <sqlite3.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "espace/storage/sqlite_storage.h"
#include "first_version.h"
#include "killed_child.h"
#include "temp_db.h"

using namespace espace::storage;
using espace::fhir::ErrorCategory;
using espace::testing::first_version;
using espace::testing::KilledChild;
using espace::testing::run_until_killed;
using espace::testing::TempDb;

namespace {

constexpr int64_t kNeverUs = int64_t{3600} * 1000000;  // the table gets records only when read

SqliteOptions options(const std::string& path, int64_t table_delay_us) {
  SqliteOptions opts;
  opts.path = path;
  opts.reader_connections = 2;
  opts.audit_table_delay_us = table_delay_us;
  return opts;
}

AuditRecord make_record(const std::string& id, std::vector<std::string> patients) {
  AuditRecord r;
  r.id = id;
  r.recorded_us = 1'700'000'000'000'000;
  r.patients = std::move(patients);
  r.json = R"({"resourceType":"AuditEvent","id":")" + id + R"(","outcome":"0"})";
  return r;
}

// Appends one record alone, as the trail does for each request.
Status append_one(Storage& s, AuditRecord r) {
  std::vector<AuditRecord> one;
  one.push_back(std::move(r));
  return s.append_audit(&one);
}

// Rows of the audit table, read behind the storage's back.
int64_t table_rows(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*) FROM audit_log", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

int64_t file_size(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  return f ? static_cast<int64_t>(f.tellg()) : -1;
}

// Where the journal's end mark is: the bytes its frames take from the start.
int64_t journal_end(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f);
  int64_t at = 0;
  for (;;) {
    unsigned char b[4];
    if (!f.read(reinterpret_cast<char*>(b), 4)) return at;
    const uint32_t length = b[0] | (b[1] << 8) | (b[2] << 16) | (uint32_t{b[3]} << 24);
    if (length == 0) return at;
    f.seekg(length, std::ios::cur);
    at += 4 + length;
  }
}

// The child of the kill tests: threads that each write a Patient answered at
// commit (as a request under the audit trail does), then append the audit
// record of that request, and report "n" once both are acknowledged.
[[noreturn]] void child_main(const SqliteOptions& opts, int threads, int limit, int report_fd) {
  std::unique_ptr<Storage> s;
  if (!open_sqlite(opts, &s)) _exit(3);
  std::vector<std::thread> workers;
  std::atomic<int> next{0};
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      for (;;) {
        const int n = next.fetch_add(1);
        if (limit > 0 && n >= limit) return;
        const std::string id = "k" + std::to_string(n);
        {
          DeferFlushToNextWrite one_flush;
          Status w = s->write([&](WriteTxn& txn) {
            return txn.put(first_version(txn, "Patient", id, R"({"resourceType":"Patient","id":")" + id + "\"}"), {});
          });
          if (!w) _exit(4);
        }
        if (!append_one(*s, make_record("ev-" + id, {"p" + std::to_string(t)}))) _exit(5);
        const std::string line = std::to_string(n) + "\n";
        if (::write(report_fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(6);
      }
    });
  for (auto& w : workers) w.join();
  if (limit > 0) pause();  // wait for the kill, the journal as it is
  _exit(0);
}

// Runs child_main in a child process, kills it once `kill_after` appends
// were reported (plus a random delay when `jitter`) and returns every
// reported number.
std::vector<int> run_and_kill(const SqliteOptions& opts, int threads, int limit, int kill_after, std::mt19937* jitter) {
  KilledChild child =
      run_until_killed([&](int report_fd) { child_main(opts, threads, limit, report_fd); }, kill_after, jitter);
  REQUIRE(child.enough);
  REQUIRE(child.killed);  // our kill, not an early exit of the child
  std::vector<int> acked;
  for (const std::string& line : child.lines) acked.push_back(std::stoi(line));
  return acked;
}

}  // namespace

TEST_CASE("audit records wait in the journal until the table is read or their time is up", "[audit][journal]") {
  TempDb db;
  {
    auto opts = options(db.path, kNeverUs);
    std::unique_ptr<Storage> s;
    REQUIRE(open_sqlite(opts, &s).is_ok());
    for (int i = 0; i < 3; ++i) {
      std::vector<AuditRecord> one{make_record("w" + std::to_string(i), {"p1"})};
      REQUIRE(s->append_audit(&one).is_ok());
      CHECK(one[0].seq == i + 1);
    }
    CHECK(table_rows(db.path) == 0);
    CHECK(journal_end(db.path + "-audit") > 0);
    // A reader of the table brings it up to date first.
    AuditQuery q;
    q.patient = "p1";
    AuditPage page;
    REQUIRE(s->search_audit(q, &page).is_ok());
    CHECK(page.records.size() == 3);
    CHECK(table_rows(db.path) == 3);
  }
  // Closed: everything is in the table and the journal is empty (its blocks are kept).
  CHECK(table_rows(db.path) == 3);
  CHECK(journal_end(db.path + "-audit") == 0);
  CHECK(file_size(db.path + "-audit") > 0);
  {
    auto opts = options(db.path, 20'000);
    std::unique_ptr<Storage> s;
    REQUIRE(open_sqlite(opts, &s).is_ok());
    std::vector<AuditRecord> one{make_record("w3", {})};
    REQUIRE(s->append_audit(&one).is_ok());
    CHECK(one[0].seq == 4);
    // Nobody reads: the record still reaches the table once its delay is over.
    int64_t rows = 0;
    for (int i = 0; i < 100 && rows < 4; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      rows = table_rows(db.path);
    }
    CHECK(rows == 4);
  }
}

TEST_CASE("under steady appends the table still gets records once per delay, not at every flush", "[audit][journal]") {
  // Appends that keep arriving while a hand-over runs used to date the next
  // hand-over from the first record ever waiting: from then on every flush
  // handed its few records over, a commit each.
  TempDb db;
  constexpr int64_t kDelayUs = 100'000;
  auto opts = options(db.path, kDelayUs);
  std::unique_ptr<Storage> s;
  REQUIRE(open_sqlite(opts, &s).is_ok());
  auto* sqlite = dynamic_cast<SqliteStorage*>(s.get());
  REQUIRE(sqlite != nullptr);
  const int64_t batches_before = sqlite->write_stats().batches;
  std::atomic<bool> stop{false};
  std::atomic<int> appended{0}, failed{0};
  std::vector<std::thread> appenders;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < 4; ++t)
    appenders.emplace_back([&, t] {
      for (int n = 0; !stop.load(); ++n) {
        if (append_one(*s, make_record("s" + std::to_string(t) + "-" + std::to_string(n), {"p" + std::to_string(n % 50)})).is_ok())
          ++appended;
        else
          ++failed;
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  stop = true;
  for (auto& a : appenders) a.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t handovers = sqlite->write_stats().batches - batches_before;
  INFO(appended.load() << " records in " << seconds << " s, " << handovers << " hand-overs");
  CHECK(failed == 0);
  REQUIRE(appended > 200);  // enough flushes for a hand-over per flush to show
  // One hand-over per delay (and the odd one a full batch starts), with room for a slow machine.
  CHECK(handovers <= static_cast<int64_t>(seconds * 1e6 / kDelayUs) + 5);
  CHECK(handovers >= 1);
}

TEST_CASE("a table that refuses hand-overs is retried once a second, not in a loop", "[audit][journal]") {
  // A full disk, say: every hand-over fails. Retrying at once after each
  // failure kept the writer thread busy for as long as it lasted.
  TempDb db;
  auto opts = options(db.path, 0);  // records are due in the table at once
  std::unique_ptr<Storage> s;
  REQUIRE(open_sqlite(opts, &s).is_ok());
  auto* sqlite = dynamic_cast<SqliteStorage*>(s.get());
  REQUIRE(sqlite != nullptr);
  {
    sqlite3* side = nullptr;
    REQUIRE(sqlite3_open_v2(db.path.c_str(), &side, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
    sqlite3_busy_timeout(side, 5000);
    CHECK(sqlite3_exec(side, "CREATE TRIGGER refuse BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'refused'); END;",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(side);
  }
  const int64_t batches_before = sqlite->write_stats().batches;
  // Acknowledged all the same: the journal holds them durably.
  for (int n = 0; n < 20; ++n) REQUIRE(append_one(*s, make_record("r" + std::to_string(n), {"p1"})).is_ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const int64_t handovers = sqlite->write_stats().batches - batches_before;
  INFO(handovers << " hand-overs in 1.5 s");
  CHECK(handovers >= 1);
  CHECK(handovers <= 4);  // the first, then about one a second (and a spare for a slow machine)
  CHECK(table_rows(db.path) == 0);
}

TEST_CASE("an id the table holds is refused whether it is its largest or not, before and after reopening",
          "[audit][journal]") {
  // The journal looks an id up in the table only when it is no larger than
  // the table's largest id; the bound must follow every hand-over and be read
  // again at start.
  TempDb db;
  auto append = [](Storage& s, const std::string& id) { return append_one(s, make_record(id, {"p1"})); };
  auto into_table = [](Storage& s) {
    AuditQuery q;
    AuditPage page;
    REQUIRE(s.search_audit(q, &page).is_ok());  // a reader of the table brings it up to date
  };
  {
    std::unique_ptr<Storage> s;
    REQUIRE(open_sqlite(options(db.path, kNeverUs), &s).is_ok());
    for (const char* id : {"m1", "m5", "m9"}) REQUIRE(append(*s, id).is_ok());
    into_table(*s);
    REQUIRE(table_rows(db.path) == 3);
    for (const char* id : {"m9", "m1", "m5"}) CHECK(append(*s, id).category() == ErrorCategory::Conflict);
    CHECK(append(*s, "m95").is_ok());  // beyond the largest
    CHECK(append(*s, "m0").is_ok());   // below it, and new
    CHECK(append(*s, "m95").category() == ErrorCategory::Conflict);  // waiting for the table
    into_table(*s);
    CHECK(append(*s, "m95").category() == ErrorCategory::Conflict);  // now the table's largest
  }
  std::unique_ptr<Storage> s;
  REQUIRE(open_sqlite(options(db.path, kNeverUs), &s).is_ok());
  for (const char* id : {"m95", "m9", "m0", "m1"}) CHECK(append(*s, id).category() == ErrorCategory::Conflict);
  CHECK(append(*s, "n1").is_ok());
  CHECK(table_rows(db.path) == 5);
}

TEST_CASE("acknowledged audit records and the writes before them survive kill -9", "[audit][journal][durability]") {
  TempDb db;
  std::random_device rd;
  const unsigned seed = rd();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  const bool overlap_fsync = GENERATE(true, false);
  // Records only in the journal at the kill, or some already in the table.
  const int64_t delay_us = GENERATE(kNeverUs, int64_t{2000});
  INFO("overlap_fsync " << overlap_fsync << ", table delay " << delay_us << " us");
  auto opts = options(db.path, delay_us);
  opts.overlap_fsync = overlap_fsync;
  const int kill_after = std::uniform_int_distribution<int>(1, 400)(rng);
  std::vector<int> acked = run_and_kill(opts, 4, 0, kill_after, &rng);

  std::unique_ptr<Storage> s;
  Status opened = open_sqlite(options(db.path, kNeverUs), &s);
  INFO(opened.message());
  REQUIRE(opened.is_ok());
  size_t missing_writes = 0, missing_records = 0;
  for (int n : acked) {
    ResourceVersion v;
    if (!s->read("Patient", "k" + std::to_string(n), &v)) ++missing_writes;
    AuditRecord r;
    if (!s->read_audit("ev-k" + std::to_string(n), &r)) ++missing_records;
  }
  CHECK(missing_writes == 0);
  CHECK(missing_records == 0);
  AuditVerification v;
  REQUIRE(verify_audit_chain(*s, &v).is_ok());
  INFO(v.problem);
  CHECK(v.intact);
  CHECK(v.records >= static_cast<int64_t>(acked.size()));
  // The chain goes on after the replayed records.
  std::vector<AuditRecord> next{make_record("after-kill", {})};
  REQUIRE(s->append_audit(&next).is_ok());
  CHECK(next[0].seq == v.records + 1);
}

TEST_CASE("a journal left by a crash: a torn last frame is dropped, a broken frame stops the opening",
          "[audit][journal]") {
  TempDb db;
  // 20 acknowledged records in the journal only, then the kill.
  run_and_kill(options(db.path, kNeverUs), 1, 20, 20, nullptr);
  REQUIRE(table_rows(db.path) == 0);
  const std::string journal = db.path + "-audit";
  const int64_t size = file_size(journal);
  const int64_t end = journal_end(journal);
  REQUIRE(end > 0);

  SECTION("a last frame cut short, or of full length but not flushed (a write the crash interrupted)") {
    {
      // Over the end mark, where the next batch would have gone.
      std::fstream f(journal, std::ios::binary | std::ios::in | std::ios::out);
      f.seekp(end);
      if (GENERATE(true, false)) {
        // Says 100 bytes follow, 3 of which were written (the zeros after are not a frame).
        const char torn[] = {'\x64', 0, 0, 0, 'x', 'x', 'x'};
        f.write(torn, sizeof torn);
      } else {
        const std::string zeros(60, '\0');  // says 56 bytes follow, all zero
        f.write("\x38\0\0\0", 4);
        f.write(zeros.data(), 56);
      }
    }
    std::unique_ptr<Storage> s;
    Status opened = open_sqlite(options(db.path, kNeverUs), &s);
    INFO(opened.message());
    REQUIRE(opened.is_ok());
    CHECK(table_rows(db.path) == 20);  // replayed before anything else
    AuditVerification v;
    REQUIRE(verify_audit_chain(*s, &v).is_ok());
    CHECK(v.intact);
    CHECK(v.records == 20);
    std::vector<AuditRecord> next{make_record("after-torn", {})};
    REQUIRE(s->append_audit(&next).is_ok());
    CHECK(next[0].seq == 21);
  }
  SECTION("a byte changed in the first record") {
    {
      std::fstream f(journal, std::ios::binary | std::ios::in | std::ios::out);
      f.seekp(40);  // inside the first frame: its id or body
      f.put('#');
    }
    std::unique_ptr<Storage> s;
    Status opened = open_sqlite(options(db.path, kNeverUs), &s);
    CHECK_FALSE(opened.is_ok());
    CHECK(opened.message().find("audit journal") != std::string::npos);
    CHECK(table_rows(db.path) == 0);  // nothing of it was replayed
    CHECK(file_size(journal) == size);  // and the evidence is kept
  }
}

TEST_CASE("a journal's older frames, past its end mark, are never replayed", "[audit][journal]") {
  TempDb db;
  {
    std::unique_ptr<Storage> s;
    REQUIRE(open_sqlite(options(db.path, kNeverUs), &s).is_ok());
    for (int i = 0; i < 5; ++i) {
      AuditRecord r = make_record("old" + std::to_string(i), {"p1"});
      r.json.insert(r.json.size() - 1, ",\"note\":\"" + std::string(2000, 'o') + "\"");
      REQUIRE(append_one(*s, std::move(r)).is_ok());
    }
  }  // closed: all five in the table, the journal emptied by an end mark, their frames still behind it
  REQUIRE(table_rows(db.path) == 5);
  REQUIRE(file_size(db.path + "-audit") > 5 * 2000);
  // Two short records over the start of the old ones, then a crash.
  run_and_kill(options(db.path, kNeverUs), 1, 2, 2, nullptr);
  std::unique_ptr<Storage> s;
  Status opened = open_sqlite(options(db.path, kNeverUs), &s);
  INFO(opened.message());
  REQUIRE(opened.is_ok());
  CHECK(table_rows(db.path) == 7);
  AuditVerification v;
  REQUIRE(verify_audit_chain(*s, &v).is_ok());
  CHECK(v.intact);
  CHECK(v.records == 7);
}

TEST_CASE("a second storage on a database whose journal another one holds reads the table and appends nothing",
          "[audit][journal]") {
  TempDb db;
  std::unique_ptr<Storage> owner, other;
  REQUIRE(open_sqlite(options(db.path, kNeverUs), &owner).is_ok());
  std::vector<AuditRecord> first{make_record("o1", {"p1"})};
  REQUIRE(owner->append_audit(&first).is_ok());
  AuditHead head;
  REQUIRE(owner->audit_head(&head).is_ok());  // brings the table up to date
  CHECK(head.seq == 1);

  REQUIRE(open_sqlite(options(db.path, kNeverUs), &other).is_ok());
  CHECK(dynamic_cast<SqliteStorage&>(*owner).owns_audit_journal());
  CHECK_FALSE(dynamic_cast<SqliteStorage&>(*other).owns_audit_journal());
  AuditRecord r;
  REQUIRE(other->read_audit("o1", &r).is_ok());
  std::vector<AuditRecord> refused{make_record("x1", {})};
  Status st = other->append_audit(&refused);
  CHECK(st.category() == ErrorCategory::Unavailable);
  CHECK(refused[0].seq == 0);
  other.reset();

  std::vector<AuditRecord> second{make_record("o2", {"p1"})};
  REQUIRE(owner->append_audit(&second).is_ok());
  CHECK(second[0].seq == 2);
  owner.reset();
  // The next opener takes the journal over and continues the chain.
  REQUIRE(open_sqlite(options(db.path, kNeverUs), &other).is_ok());
  std::vector<AuditRecord> third{make_record("o3", {})};
  REQUIRE(other->append_audit(&third).is_ok());
  CHECK(third[0].seq == 3);
}

TEST_CASE("records reach the table whole and in order while hand-overs and catch-ups race with appends",
          "[audit][journal]") {
  TempDb db;
  auto opts = options(db.path, 0);  // hand over after every batch
  opts.audit_table_batch = 1;
  std::unique_ptr<Storage> s;
  REQUIRE(open_sqlite(opts, &s).is_ok());
  constexpr int kThreads = 4, kEach = 300;
  std::atomic<int> failures{0};
  std::atomic<bool> appending{true};
  std::thread reader([&] {
    while (appending.load()) {
      AuditHead head;
      if (!s->audit_head(&head)) failures.fetch_add(1);
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t)
    writers.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        if (!append_one(*s, make_record("r" + std::to_string(t) + "-" + std::to_string(i), {"p1"}))) failures.fetch_add(1);
      }
    });
  for (auto& w : writers) w.join();
  appending = false;
  reader.join();
  CHECK(failures.load() == 0);
  AuditHead head;
  REQUIRE(s->audit_head(&head).is_ok());
  CHECK(head.seq == kThreads * kEach);
  AuditVerification v;
  REQUIRE(verify_audit_chain(*s, &v).is_ok());
  CHECK(v.intact);
  CHECK(v.records == kThreads * kEach);
}
