// Connection::prepare_shaped: the bounded cache of statements whose text
// follows a client's request (search shapes).
#include <catch2/catch.hpp>

#include <string>

#include "../../../server/storage/src/sqlite_connection.h"

using espace::storage::sqlite::Connection;
using espace::storage::sqlite::ShapedStmt;

namespace {

Connection& memory_db(Connection& c) {
  REQUIRE(c.open(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE).is_ok());
  REQUIRE(c.exec("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES(1),(2),(3);").is_ok());
  return c;
}

int64_t single(ShapedStmt& st) {
  REQUIRE(sqlite3_step(st.get()) == SQLITE_ROW);
  return sqlite3_column_int64(st.get(), 0);
}

}  // namespace

TEST_CASE("a shaped statement is prepared once and reused, reset between uses") {
  Connection c;
  memory_db(c);
  sqlite3_stmt* first = nullptr;
  {
    ShapedStmt st;
    REQUIRE(c.prepare_shaped("SELECT count(*) FROM t WHERE x >= ?1", &st).is_ok());
    sqlite3_bind_int64(st.get(), 1, 2);
    CHECK(single(st) == 2);
    first = st.get();
  }
  ShapedStmt st;
  REQUIRE(c.prepare_shaped("SELECT count(*) FROM t WHERE x >= ?1", &st).is_ok());
  CHECK(st.get() == first);
  // Bindings were cleared: an unbound parameter is NULL, which no row passes.
  CHECK(single(st) == 0);
  CHECK(c.shaped_cached() == 1);
}

TEST_CASE("a shaped statement in use is not handed out twice") {
  Connection c;
  memory_db(c);
  ShapedStmt outer, inner;
  REQUIRE(c.prepare_shaped("SELECT x FROM t ORDER BY x", &outer).is_ok());
  REQUIRE(sqlite3_step(outer.get()) == SQLITE_ROW);
  REQUIRE(c.prepare_shaped("SELECT x FROM t ORDER BY x", &inner).is_ok());
  CHECK(inner.get() != outer.get());
  // Each walks its own rows.
  CHECK(single(inner) == 1);
  REQUIRE(sqlite3_step(outer.get()) == SQLITE_ROW);
  CHECK(sqlite3_column_int64(outer.get(), 0) == 2);
  inner.reset();  // the extra one is finalized, not cached
  CHECK(c.shaped_cached() == 1);
}

TEST_CASE("the shaped cache keeps at most its capacity, evicting the least recently used") {
  Connection c;
  memory_db(c);
  auto text = [](size_t i) { return "SELECT " + std::to_string(i) + " FROM t LIMIT 1"; };
  sqlite3_stmt* kept = nullptr;
  {
    ShapedStmt st;
    REQUIRE(c.prepare_shaped(text(0), &st).is_ok());
    kept = st.get();
  }
  for (size_t i = 1; i < Connection::kShapedCapacity + 20; ++i) {
    ShapedStmt st;
    REQUIRE(c.prepare_shaped(text(i), &st).is_ok());
    CHECK(single(st) == static_cast<int64_t>(i));
    if (i % 8 == 0) {  // keep text(0) recently used
      ShapedStmt again;
      REQUIRE(c.prepare_shaped(text(0), &again).is_ok());
      CHECK(again.get() == kept);
    }
  }
  CHECK(c.shaped_cached() == Connection::kShapedCapacity);
  ShapedStmt st;
  REQUIRE(c.prepare_shaped(text(0), &st).is_ok());
  CHECK(st.get() == kept);
}

TEST_CASE("statements in use survive eviction") {
  Connection c;
  memory_db(c);
  ShapedStmt held;
  REQUIRE(c.prepare_shaped("SELECT x FROM t ORDER BY x", &held).is_ok());
  REQUIRE(sqlite3_step(held.get()) == SQLITE_ROW);
  for (size_t i = 0; i < Connection::kShapedCapacity + 5; ++i) {
    ShapedStmt st;
    REQUIRE(c.prepare_shaped("SELECT " + std::to_string(i), &st).is_ok());
  }
  CHECK(c.shaped_cached() == Connection::kShapedCapacity);
  REQUIRE(sqlite3_step(held.get()) == SQLITE_ROW);
  CHECK(sqlite3_column_int64(held.get(), 0) == 2);
}

TEST_CASE("a shaped statement that does not parse is an error and is not cached") {
  Connection c;
  memory_db(c);
  ShapedStmt st;
  CHECK_FALSE(c.prepare_shaped("SELEC nonsense", &st).is_ok());
  CHECK(st.get() == nullptr);
  CHECK(c.shaped_cached() == 0);
}

TEST_CASE("a shaped statement longer than the cache's bound is prepared for one use only") {
  Connection c;
  memory_db(c);
  std::string sql = "SELECT count(*) FROM t WHERE x IN (";
  for (int i = 0; sql.size() <= Connection::kShapedMaxText; ++i) sql += std::to_string(i) + ", ";
  sql += "-1)";
  ShapedStmt st;
  REQUIRE(c.prepare_shaped(sql, &st).is_ok());
  CHECK(single(st) == 3);
  st.reset();
  CHECK(c.shaped_cached() == 0);
}
