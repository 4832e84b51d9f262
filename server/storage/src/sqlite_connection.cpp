#include "sqlite_connection.h"

namespace espace::storage::sqlite {

using fhir::ErrorCategory;

Status error(sqlite3* db, std::string_view what) {
  std::string msg = "storage: ";
  msg += what;
  if (db) {
    msg += ": ";
    msg += sqlite3_errmsg(db);
  }
  return Status::error(ErrorCategory::Internal, "exception", msg);
}

Status error_code(int rc, std::string_view what) {
  std::string msg = "storage: ";
  msg += what;
  msg += ": ";
  msg += sqlite3_errstr(rc);
  return Status::error(ErrorCategory::Internal, "exception", msg);
}

Connection::~Connection() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  for (Shaped& e : shaped_) sqlite3_finalize(e.stmt);
  if (db_) sqlite3_close(db_);
}

Status Connection::open(const std::string& path, int flags, const char* vfs) {
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, vfs);
  if (rc != SQLITE_OK) {
    Status s = db_ ? error(db_, "cannot open database") : error_code(rc, "cannot open database");
    sqlite3_close(db_);
    db_ = nullptr;
    return s;
  }
  sqlite3_extended_result_codes(db_, 1);
  return Status::ok();
}

Status Connection::exec(std::string_view sql) {
  std::string text(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = "storage: statement failed: ";
    msg += err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return Status::error(ErrorCategory::Internal, "exception", msg);
  }
  return Status::ok();
}

Status Connection::prepare(const std::string& sql, sqlite3_stmt** out) {
  auto it = cache_.find(sql);
  if (it != cache_.end()) {
    *out = it->second;
    return Status::ok();
  }
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                              &stmt, nullptr);
  if (rc != SQLITE_OK) return error(db_, "cannot prepare statement");
  cache_.emplace(sql, stmt);
  *out = stmt;
  return Status::ok();
}

Status Connection::prepare_shaped(const std::string& sql, ShapedStmt* out) {
  out->reset();
  auto it = shaped_index_.find(sql);
  if (it != shaped_index_.end() && !it->second->in_use) {
    shaped_.splice(shaped_.begin(), shaped_, it->second);
    Shaped& e = shaped_.front();
    e.in_use = true;
    out->s_ = e.stmt;
    out->entry_ = &e;
    return Status::ok();
  }
  bool keep = it == shaped_index_.end() && sql.size() <= kShapedMaxText;
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()), keep ? SQLITE_PREPARE_PERSISTENT : 0,
                              &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return error(db_, "cannot prepare statement");
  }
  out->s_ = stmt;
  if (!keep) return Status::ok();  // too long, or the cached one is busy: finalized after use
  shaped_.push_front(Shaped{sql, stmt, true});
  shaped_index_.emplace(std::string_view(shaped_.front().sql), shaped_.begin());
  out->entry_ = &shaped_.front();
  // Evict the least recently used statements not in use.
  auto victim = shaped_.end();
  while (shaped_.size() > kShapedCapacity && victim != shaped_.begin()) {
    --victim;
    if (victim->in_use) continue;
    shaped_index_.erase(std::string_view(victim->sql));
    sqlite3_finalize(victim->stmt);
    victim = shaped_.erase(victim);
  }
  return Status::ok();
}

void ShapedStmt::reset() {
  if (!s_) return;
  if (entry_) {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
    entry_->in_use = false;
  } else {
    sqlite3_finalize(s_);
  }
  s_ = nullptr;
  entry_ = nullptr;
}

}  // namespace espace::storage::sqlite
