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
  if (db_) sqlite3_close(db_);
}

Status Connection::open(const std::string& path, int flags) {
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr);
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

}  // namespace espace::storage::sqlite
