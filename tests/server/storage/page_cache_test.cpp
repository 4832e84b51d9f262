// The page cache layer (sqlite_page_cache.h): which truncations it skips, and
// a storage under it staying consistent through page splits and rollbacks.
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../../../server/storage/src/sqlite_page_cache.h"
#include "espace/storage/sqlite_storage.h"
#include "first_version.h"
#include "temp_db.h"

using namespace espace::storage;
using espace::storage::sqlite::PageKeyBounds;

namespace {

// Installed before main, so before anything in this test program uses SQLite.
const bool kLayerInstalled = sqlite::install_page_cache_layer();

std::string integrity(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr) == SQLITE_OK);
  std::string out;
  while (sqlite3_step(st) == SQLITE_ROW) out += reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

IndexEntry token(const std::string& param, const std::string& value) {
  IndexEntry e;
  e.param = param;
  e.kind = "token";
  e.system = "urn:test";
  e.value = value;
  return e;
}

Status create(WriteTxn& txn, const std::string& id, std::vector<IndexEntry> index) {
  return txn.put(espace::testing::first_version(txn, "Patient", id,
                                                R"({"resourceType":"Patient","id":")" + id + R"(","padding":")" +
                                                    std::string(300, 'x') + R"("})"),
                 index);
}

}  // namespace

TEST_CASE("page key bounds: a truncation is needed only when a page may lie at or past the limit", "[storage]") {
  PageKeyBounds keys;
  SECTION("pages below the limit") {
    for (unsigned k = 1; k <= 100; ++k) keys.fetched(k);
    CHECK_FALSE(keys.truncate(101));
    CHECK(keys.truncate(100));       // page 100 goes
    CHECK_FALSE(keys.truncate(100));  // and nothing at or past 100 is left
  }
  SECTION("B-tree balancing: pages renumbered through the lock-byte page and back") {
    for (unsigned k = 1; k <= 100; ++k) keys.fetched(k);
    keys.moved(50, 262145);
    keys.moved(60, 50);
    keys.moved(262145, 60);
    CHECK_FALSE(keys.truncate(101));
  }
  SECTION("a page moved past the end stays until a truncation drops it") {
    keys.fetched(10);
    keys.moved(10, 5000);
    CHECK_FALSE(keys.truncate(5001));
    CHECK(keys.truncate(5000));
    CHECK_FALSE(keys.truncate(11));
  }
  SECTION("two pages moved to one key: one moving away leaves the other") {
    keys.fetched(10);
    keys.moved(9, 500);
    keys.moved(10, 500);
    keys.moved(500, 8);
    CHECK(keys.truncate(11));
    CHECK_FALSE(keys.truncate(11));
  }
  SECTION("a clear (limit 0) is always passed on and forgets every key") {
    keys.fetched(7);
    keys.moved(7, 9000);
    CHECK(keys.truncate(0));
    CHECK_FALSE(keys.truncate(1));
  }
}

TEST_CASE("under the page cache layer, splits, rolled-back bodies and reopening keep the data whole", "[storage]") {
  REQUIRE(kLayerInstalled);
  espace::testing::TempDb db;
  std::mt19937 rng(42);
  auto random_value = [&] { return std::to_string(rng()) + "-" + std::to_string(rng()); };
  const sqlite::PageCacheLayerCounts before = sqlite::page_cache_layer_counts();
  std::vector<std::pair<std::string, std::string>> kept;  // id, identifier value
  {
    SqliteOptions opts;
    opts.path = db.path;
    opts.reader_connections = 2;
    std::unique_ptr<Storage> s;
    REQUIRE(open_sqlite(opts, &s).is_ok());
    // Random values split index pages all over the B-trees (the balancing
    // that renumbers pages); every third write also runs a body that adds
    // many pages and fails, so its savepoint is rolled back.
    for (int round = 0; round < 300; ++round) {
      std::vector<std::pair<std::string, std::string>> batch;
      for (int i = 0; i < 10; ++i) batch.emplace_back("p" + std::to_string(round) + "-" + random_value(), random_value());
      REQUIRE(s->write([&](WriteTxn& txn) -> Status {
                 for (const auto& [id, value] : batch)
                   if (Status st = create(txn, id, {token("identifier", value), token("name", random_value())}); !st)
                     return st;
                 return Status::ok();
               }).is_ok());
      kept.insert(kept.end(), batch.begin(), batch.end());
      if (round % 3 == 0) {
        Status failed = s->write([&](WriteTxn& txn) -> Status {
          for (int i = 0; i < 200; ++i)
            if (Status st = create(txn, "gone-" + std::to_string(round) + "-" + std::to_string(i),
                                   {token("identifier", random_value())});
                !st)
              return st;
          return Status::error(espace::fhir::ErrorCategory::Conflict, "conflict", "rolled back on purpose");
        });
        REQUIRE_FALSE(failed.is_ok());
      }
    }
    ResourceVersion v;
    CHECK(s->read("Patient", "gone-0-0", &v).category() == espace::fhir::ErrorCategory::NotFound);
  }
  const sqlite::PageCacheLayerCounts after = sqlite::page_cache_layer_counts();
  CHECK(after.skipped > before.skipped);      // commits that needed no walk of the cache
  CHECK(after.forwarded > before.forwarded);  // rollbacks that did drop pages
  CHECK(integrity(db.path) == "ok");

  SqliteOptions opts;
  opts.path = db.path;
  opts.reader_connections = 2;
  std::unique_ptr<Storage> s;
  REQUIRE(open_sqlite(opts, &s).is_ok());
  for (size_t i = 0; i < kept.size(); i += 37) {
    ResourceVersion v;
    REQUIRE(s->read("Patient", kept[i].first, &v).is_ok());
    std::vector<std::string> ids;
    REQUIRE(s->find_by_token("Patient", "identifier", "urn:test", kept[i].second, &ids).is_ok());
    CHECK(ids == std::vector<std::string>{kept[i].first});
  }
  ResourceVersion v;
  CHECK(s->read("Patient", "gone-3-10", &v).category() == espace::fhir::ErrorCategory::NotFound);
}
