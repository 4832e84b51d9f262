// Searches reuse their prepared statements: the same shape of search with
// other values neither parses nor plans its SQL again.
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "../../../server/storage/src/sqlite_connection.h"
#include "../../../server/storage/src/sqlite_search.h"
#include "espace/storage/sqlite_storage.h"
#include "temp_db.h"

using namespace espace::storage;

namespace {

using espace::testing::TempDb;

IndexEntry entry(std::string param, std::string kind, std::string value, double low = 0, double high = 0) {
  IndexEntry e;
  e.param = std::move(param);
  e.kind = std::move(kind);
  e.value = std::move(value);
  e.low = low;
  e.high = high;
  return e;
}

// The storage on `path`, with one reader.
std::unique_ptr<Storage> open_store(const std::string& path) {
  SqliteOptions opts;
  opts.path = path;
  opts.reader_connections = 1;
  std::unique_ptr<Storage> store;
  REQUIRE(open_sqlite(opts, &store).is_ok());
  return store;
}

// Version 1 of Patient `id`, created in `txn`.
ResourceVersion new_patient(WriteTxn& txn, const std::string& id) {
  ResourceVersion v;
  v.type = "Patient";
  v.id = id;
  v.version = 1;
  v.last_updated_us = txn.now_us();
  v.method = "POST";
  v.json = R"({"resourceType":"Patient","id":")" + id + R"("})";
  return v;
}

// Patients p0..p19: family "fam<i % 4>", birth "date" i (a point range).
void seed(const std::string& path) {
  std::unique_ptr<Storage> store = open_store(path);
  for (int i = 0; i < 20; ++i) {
    Status s = store->write([&](WriteTxn& txn) -> Status {
      return txn.put(new_patient(txn, "p" + std::to_string(i)),
                     {entry("family", "string", "fam" + std::to_string(i % 4)), entry("birthdate", "date", "", i, i)});
    });
    REQUIRE(s.is_ok());
  }
}

// family starts with `prefix`.
Condition family_starts_with(const std::string& prefix) {
  Condition name;
  IndexTest t;
  t.param = "family";
  t.kind = "string";
  t.value_op = TextOp::StartsWith;
  t.value = prefix;
  name.any_of.push_back(t);
  return name;
}

// family starts with `family` and birthdate within [lo, hi].
SearchQuery family_born(const std::string& family, double lo, double hi) {
  SearchQuery q;
  q.type = "Patient";
  q.count = 10;
  Condition name = family_starts_with(family);
  Condition born;
  IndexTest d;
  d.param = "birthdate";
  d.kind = "date";
  Bound from, to;
  from.op = Bound::Op::Ge;
  from.number = lo;
  to.op = Bound::Op::Le;
  to.number = hi;
  d.bounds = {from, to};
  born.any_of.push_back(d);
  q.all_of = {name, born};
  return q;
}

std::vector<std::string> ids(const SearchPage& page) {
  std::vector<std::string> out;
  for (const SearchMatch& m : page.matches) out.push_back(m.resource.id);
  return out;
}

int reprepared(sqlite3* db) {
  int n = 0;
  for (sqlite3_stmt* s = sqlite3_next_stmt(db, nullptr); s; s = sqlite3_next_stmt(db, s))
    n += sqlite3_stmt_status(s, SQLITE_STMTSTATUS_REPREPARE, 0);
  return n;
}

}  // namespace

TEST_CASE("a search shape is prepared once and its statements reused with other values", "[storage][search]") {
  TempDb db;
  seed(db.path);
  sqlite::Connection c;
  REQUIRE(c.open(db.path, SQLITE_OPEN_READONLY).is_ok());

  SearchPage page;
  REQUIRE(sqlite::run_search(c, family_born("fam1", 0, 10), &page).is_ok());
  CHECK(ids(page) == std::vector<std::string>{"p1", "p5", "p9"});
  size_t shapes = c.shaped_cached();
  CHECK(shapes > 0);

  REQUIRE(sqlite::run_search(c, family_born("fam2", 5, 19), &page).is_ok());
  CHECK(ids(page) == std::vector<std::string>{"p6", "p10", "p14", "p18"});
  REQUIRE(sqlite::run_search(c, family_born("fam3", 0, 19), &page).is_ok());
  CHECK(ids(page) == std::vector<std::string>{"p3", "p7", "p11", "p15", "p19"});
  // Same shapes, new values: nothing prepared anew, nothing planned again
  // because of a bound value.
  CHECK(c.shaped_cached() == shapes);
  CHECK(reprepared(c.db()) == 0);
}

TEST_CASE("a page read from index rows lists each match once, in creation order, forwards and backwards",
          "[storage][search]") {
  TempDb db;
  std::unique_ptr<Storage> store = open_store(db.path);
  // Ten patients, each with two names starting "mar" (two matching rows per
  // resource); every third one is deleted afterwards, p4 updated.
  auto put = [&](int i, int version, bool deleted) {
    return store->write([&](WriteTxn& txn) -> Status {
      ResourceVersion v;
      v.type = "Patient";
      v.id = "p" + std::to_string(i);
      v.version = version;
      v.last_updated_us = txn.now_us();
      v.deleted = deleted;
      v.method = deleted ? "DELETE" : version == 1 ? "POST" : "PUT";
      if (!deleted) v.json = R"({"resourceType":"Patient","id":")" + v.id + R"(","v":)" + std::to_string(version) + "}";
      std::vector<IndexEntry> rows;
      if (!deleted) rows = {entry("family", "string", "martin"), entry("family", "string", "marty")};
      return txn.put(v, rows);
    });
  };
  for (int i = 0; i < 10; ++i) REQUIRE(put(i, 1, false).is_ok());
  for (int i = 0; i < 10; i += 3) REQUIRE(put(i, 2, true).is_ok());
  REQUIRE(put(4, 2, false).is_ok());
  sqlite::Connection c;
  REQUIRE(c.open(db.path, SQLITE_OPEN_READONLY).is_ok());

  SearchQuery q;
  q.type = "Patient";
  q.count = 3;
  q.all_of = {family_starts_with("mar")};

  std::vector<std::string> seen;
  std::vector<int64_t> first_keys;
  SearchPage page;
  for (int n = 0; n < 5; ++n) {
    REQUIRE(sqlite::run_search(c, q, &page).is_ok());
    for (const SearchMatch& m : page.matches) seen.push_back(m.resource.id);
    if (n == 1) first_keys = {page.matches.front().key};
    if (!page.more) break;
    q.after_key = page.matches.back().key;
  }
  CHECK(seen == std::vector<std::string>{"p1", "p2", "p4", "p5", "p7", "p8"});

  // The page before the second one.
  q.after_key = 0;
  q.before_key = first_keys[0];
  REQUIRE(sqlite::run_search(c, q, &page).is_ok());
  CHECK(ids(page) == std::vector<std::string>{"p1", "p2", "p4"});
  CHECK_FALSE(page.more);
  // The updated one is read at its current version.
  CHECK(page.matches[2].resource.version == 2);
  CHECK(page.matches[2].resource.json.find(R"("v":2)") != std::string::npos);
}

TEST_CASE("conditions of every size pick the right matches: a common one counted first, a small range after it",
          "[storage][search]") {
  // 1,300 Patients, all named "fam...": the name matches more rows than the
  // planner's first bound of counts (1,024), and also more than its small
  // driver (64) while the birth range matches 100, or every Patient.
  TempDb db;
  std::unique_ptr<Storage> store = open_store(db.path);
  REQUIRE(store->write([&](WriteTxn& txn) -> Status {
             for (int i = 0; i < 1300; ++i)
               if (Status s = txn.put(new_patient(txn, "p" + std::to_string(i)),
                                      {entry("family", "string", "fam" + std::to_string(i % 2)),
                                       entry("birthdate", "date", "", i, i)});
                   !s)
                 return s;
             return Status::ok();
           }).is_ok());
  sqlite::Connection c;
  REQUIRE(c.open(db.path, SQLITE_OPEN_READONLY).is_ok());
  SearchPage page;
  // Born 500..599 (100) and named fam1 (650): the range drives.
  SearchQuery q = family_born("fam1", 500, 599);
  REQUIRE(sqlite::run_search(c, q, &page).is_ok());
  CHECK(ids(page) == std::vector<std::string>{"p501", "p503", "p505", "p507", "p509", "p511", "p513", "p515", "p517",
                                              "p519"});
  CHECK(page.more);
  // Every condition matches more than the first bound: counted on, then paged.
  q = family_born("fam", 0, 1299);
  REQUIRE(sqlite::run_search(c, q, &page).is_ok());
  CHECK(ids(page) == std::vector<std::string>{"p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"});
  // The same with the conditions the other way round.
  std::swap(q.all_of[0], q.all_of[1]);
  REQUIRE(sqlite::run_search(c, q, &page).is_ok());
  CHECK(ids(page) == std::vector<std::string>{"p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"});
  q = family_born("fam0", 1200, 1299);
  std::swap(q.all_of[0], q.all_of[1]);
  REQUIRE(sqlite::run_search(c, q, &page).is_ok());
  CHECK(ids(page) == std::vector<std::string>{"p1200", "p1202", "p1204", "p1206", "p1208", "p1210", "p1212", "p1214",
                                              "p1216", "p1218"});
}
