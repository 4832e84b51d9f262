// The WAL-gathering VFS (sqlite_wal_gather.h): when it writes out what it
// holds, and a database written through it staying whole for readers that
// use the default VFS, through spills, large transactions, rollbacks and
// reopening.
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../../../server/storage/src/sqlite_wal_gather.h"
#include "temp_db.h"

using espace::storage::sqlite::wal_gather_counts;
using espace::storage::sqlite::wal_gathering_vfs;
using espace::storage::sqlite::WalWriteGather;
using espace::testing::TempDb;

namespace {

// A WAL frame header for `page`, with the database size after the commit
// when it ends a transaction (0 otherwise).
std::string frame_header(uint32_t page, uint32_t commit_size) {
  std::string h(WalWriteGather::kFrameHeaderBytes, '\0');
  for (int i = 0; i < 4; ++i) {
    h[static_cast<size_t>(i)] = static_cast<char>(page >> (24 - 8 * i));
    h[static_cast<size_t>(4 + i)] = static_cast<char>(commit_size >> (24 - 8 * i));
  }
  return h;
}

sqlite3* open(const std::string& path, const char* vfs) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs) == SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  return db;
}

void exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  INFO(sql << ": " << (err ? err : ""));
  sqlite3_free(err);
  REQUIRE(rc == SQLITE_OK);
}

int64_t single_int(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

std::string single_text(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
  std::string out;
  while (sqlite3_step(st) == SQLITE_ROW) out += reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  return out;
}

}  // namespace

TEST_CASE("the gather holds adjacent writes until a commit frame's page", "[storage][wal]") {
  WalWriteGather g;
  const std::string page(4096, 'p');
  CHECK(g.adjacent(1000));  // empty: anything starts it
  std::string h = frame_header(7, 0);
  CHECK(g.append(h.data(), h.size(), 32) == WalWriteGather::Next::kKeep);
  CHECK(g.append(page.data(), page.size(), 56) == WalWriteGather::Next::kKeep);
  CHECK(g.adjacent(56 + 4096));
  CHECK_FALSE(g.adjacent(32));  // a rewrite of an earlier frame
  CHECK_FALSE(g.adjacent(56 + 4096 + 1));
  h = frame_header(9, 120);  // ends a transaction of a 120-page database
  CHECK(g.append(h.data(), h.size(), 56 + 4096) == WalWriteGather::Next::kKeep);
  CHECK(g.append(page.data(), page.size(), 56 + 4096 + 24) == WalWriteGather::Next::kFlush);
  CHECK(g.start() == 32);
  CHECK(g.bytes().size() == 2 * (24 + 4096));
  CHECK(g.bytes().substr(24, 4096) == page);
  g.clear();
  CHECK(g.empty());
  // A full buffer asks to be written out too.
  const std::string big(WalWriteGather::kMaxBytes / 2, 'b');
  CHECK(g.append(big.data(), big.size(), 32) == WalWriteGather::Next::kKeep);
  CHECK(g.append(big.data(), big.size(), 32 + static_cast<int64_t>(big.size())) == WalWriteGather::Next::kFlush);
}

TEST_CASE("a database written through the gathering VFS stays whole for readers of the default VFS", "[storage][wal]") {
  REQUIRE(wal_gathering_vfs() != nullptr);
  TempDb db("espace-wal-gather");
  sqlite3* writer = open(db.path, wal_gathering_vfs());
  exec(writer, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=300;");
  exec(writer, "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT NOT NULL); CREATE INDEX t_v ON t(v);");
  sqlite3* reader = open(db.path, nullptr);
  const auto before = wal_gather_counts();

  std::mt19937 rng(7);
  auto value = [&] { return std::to_string(rng()) + std::string(200, 'x'); };
  int64_t committed = 0;
  for (int round = 0; round < 200; ++round) {
    exec(writer, "BEGIN IMMEDIATE");
    for (int i = 0; i < 20; ++i) exec(writer, "INSERT INTO t(v) VALUES('" + value() + "')");
    if (round % 10 == 9) {
      exec(writer, "ROLLBACK");
    } else {
      exec(writer, "COMMIT");
      committed += 20;
    }
    // What a commit published is in the file: the reader sees all of it.
    REQUIRE(single_int(reader, "SELECT count(*) FROM t") == committed);
  }
  {
    const auto after = wal_gather_counts();
    const int64_t offered = after.writes_offered - before.writes_offered;
    const int64_t issued = after.writes_issued - before.writes_issued;
    INFO(offered << " writes offered, " << issued << " issued");
    CHECK(offered > 1000);
    CHECK(issued * 5 < offered);  // about one per commit; a checkpoint or a rollback adds some
  }
  // A transaction larger than the gather's buffer, under a cache small
  // enough that it spills pages to the log (and reads them back) before it
  // commits.
  exec(writer, "PRAGMA cache_size=50");
  exec(writer, "BEGIN IMMEDIATE");
  const std::string blob(8000, 'z');
  for (int i = 0; i < 3000; ++i) exec(writer, "INSERT INTO t(v) VALUES('" + std::to_string(i) + blob + "')");
  exec(writer, "UPDATE t SET v = 'u' || v WHERE k % 7 = 0");
  exec(writer, "COMMIT");
  committed += 3000;
  CHECK(single_int(reader, "SELECT count(*) FROM t") == committed);
  CHECK(single_int(reader, "SELECT count(*) FROM t WHERE v LIKE 'u%'") == committed / 7);

  CHECK(single_text(reader, "PRAGMA integrity_check") == "ok");
  sqlite3_close(reader);
  sqlite3_close(writer);

  // Reopened by the default VFS alone (the log replayed from the file).
  sqlite3* again = open(db.path, nullptr);
  CHECK(single_int(again, "SELECT count(*) FROM t") == committed);
  CHECK(single_text(again, "PRAGMA integrity_check") == "ok");
  sqlite3_close(again);
}
