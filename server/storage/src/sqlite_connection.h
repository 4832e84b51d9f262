// Thin RAII helpers over the SQLite C API, private to the storage library.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "espace/fhir/status.h"

namespace espace::storage::sqlite {

using fhir::Status;

// An Internal error carrying SQLite's message. SQLite messages name tables
// and constraints, never bound values, so they are safe to log.
Status error(sqlite3* db, std::string_view what);
Status error_code(int rc, std::string_view what);

class ShapedStmt;

// One connection plus its caches of prepared statements. Used by one thread
// at a time (opened with SQLITE_OPEN_NOMUTEX).
class Connection {
 public:
  Connection() = default;
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // `vfs`: the name of a registered VFS, nullptr for the default.
  Status open(const std::string& path, int flags, const char* vfs = nullptr);
  sqlite3* db() const { return db_; }

  // Runs SQL without results (pragmas, DDL). Several statements allowed.
  Status exec(std::string_view sql);
  // A cached prepared statement for `sql`; the caller resets it after use
  // (see Stmt). `sql` must be a literal or otherwise bounded set of texts.
  Status prepare(const std::string& sql, sqlite3_stmt** out);
  // A statement whose text is built from a client's request (search shapes):
  // kept in a cache bounded to kShapedCapacity texts of at most
  // kShapedMaxText bytes (longer ones, e.g. hundreds of alternatives, are
  // prepared for one use), least recently used evicted, so repeated shapes
  // skip SQLite's parser and planner. `out` holds it until reset or destroyed.
  Status prepare_shaped(const std::string& sql, ShapedStmt* out);

  static constexpr size_t kShapedCapacity = 128;
  static constexpr size_t kShapedMaxText = 8192;
  size_t shaped_cached() const { return shaped_.size(); }

 private:
  friend class ShapedStmt;
  struct Shaped {
    std::string sql;
    sqlite3_stmt* stmt = nullptr;
    bool in_use = false;
  };
  using ShapedList = std::list<Shaped>;  // most recently used first

  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;
  ShapedList shaped_;
  std::unordered_map<std::string_view, ShapedList::iterator> shaped_index_;  // views of Shaped::sql
};

// A statement from Connection::prepare_shaped, in use until reset() or
// destruction, which reset it and clear its bindings (a statement met twice
// in one use, e.g. nested, is prepared apart and finalized instead).
class ShapedStmt {
 public:
  ShapedStmt() = default;
  ~ShapedStmt() { reset(); }
  ShapedStmt(const ShapedStmt&) = delete;
  ShapedStmt& operator=(const ShapedStmt&) = delete;

  sqlite3_stmt* get() const { return s_; }
  void reset();

 private:
  friend class Connection;
  sqlite3_stmt* s_ = nullptr;
  Connection::Shaped* entry_ = nullptr;  // null: prepared apart, finalized on reset
};

// Borrowed use of a cached statement: binds by 1-based index and resets the
// statement (and clears bindings) when it goes out of scope, so a statement
// never keeps a read transaction open or blocks a savepoint rollback.
class Stmt {
 public:
  explicit Stmt(sqlite3_stmt* s) : s_(s) {}
  ~Stmt() {
    if (s_) {
      sqlite3_reset(s_);
      sqlite3_clear_bindings(s_);
    }
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  void bind(int i, std::string_view text) {
    sqlite3_bind_text(s_, i, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
  }
  void bind_blob(int i, std::string_view bytes) {
    // A zero-length blob, not NULL, so empty and absent stay distinct.
    if (bytes.empty())
      sqlite3_bind_zeroblob(s_, i, 0);
    else
      sqlite3_bind_blob(s_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC);
  }
  void bind_null(int i) { sqlite3_bind_null(s_, i); }
  void bind(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  void bind(int i, double v) { sqlite3_bind_double(s_, i, v); }
  int step() { return sqlite3_step(s_); }

  int64_t int64(int col) const { return sqlite3_column_int64(s_, col); }
  double real(int col) const { return sqlite3_column_double(s_, col); }
  std::string text(int col) const {
    const void* p = sqlite3_column_blob(s_, col);
    int n = sqlite3_column_bytes(s_, col);
    return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
  }
  sqlite3_stmt* raw() const { return s_; }

 private:
  sqlite3_stmt* s_;
};

}  // namespace espace::storage::sqlite
